"""A real webhook receiver on loopback, and helpers to set organisations up through the API."""

from __future__ import annotations

import asyncio
import datetime
import json
import socket
import ssl
import threading
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import update
from sqlalchemy.engine import Engine
from sqlmodel import col

from api.config import Settings
from api.db import open_session, utcnow
from api.models import Job
from api.worker.registry import WorkerContext
from api.worker.runner import run_until_idle
from tests.factories import UserHandle


@pytest.fixture
def private_targets() -> bool:
    """Whether the app and worker may call loopback receivers; SSRF tests say False."""
    return True


@pytest.fixture
def settings(settings: Settings, private_targets: bool) -> Settings:
    return settings.model_copy(update={"webhook_allow_private_targets": private_targets})


@dataclass
class ReceivedWebhook:
    path: str
    headers: dict[str, str]
    body: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def webhook_id(self) -> str:
        return self.headers["webhook-id"]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class Receiver:
    """An HTTP server on 127.0.0.1 that records every POST and answers as it is told."""

    def __init__(self, port: int | None = None, *, tls: ssl.SSLContext | None = None) -> None:
        self.port = port or free_port()
        self.tls = tls
        self.received: list[ReceivedWebhook] = []
        self.status = 204
        self.queued: deque[int] = deque()
        self.location: str | None = None
        self.delay = 0.0
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}/hook"

    def answer(self, *statuses: int) -> None:
        """Answer the next requests with these statuses, then with `self.status`."""
        self.queued.extend(statuses)

    def start(self) -> Receiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length)
                with receiver._lock:
                    receiver.received.append(
                        ReceivedWebhook(
                            path=self.path,
                            headers={k.lower(): v for k, v in self.headers.items()},
                            body=body,
                        )
                    )
                    status = receiver.queued.popleft() if receiver.queued else receiver.status
                if receiver.delay:
                    time.sleep(receiver.delay)
                self.send_response(status)
                if 300 <= status < 400:
                    self.send_header("Location", receiver.location or "/elsewhere")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        server.daemon_threads = True
        if self.tls is not None:
            server.socket = self.tls.wrap_socket(server.socket, server_side=True)
        self._server = server
        threading.Thread(target=server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver().start()
    yield server
    server.stop()


def self_signed_certificate(directory: Path, dns_name: str) -> tuple[Path, Path]:
    """A certificate (and its key) valid for `dns_name` only: no IP address in it."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, dns_name)])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(dns_name)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "receiver-cert.pem", directory / "receiver-key.pem"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


def run_worker(engine: Engine, settings: Settings, worker_id: str = "t") -> int:
    """Everything the worker has due now."""
    context = WorkerContext(engine=engine, settings=settings, worker_id=worker_id)
    return asyncio.run(run_until_idle(context))


def make_due(engine: Engine) -> None:
    """Bring every waiting job forward to now, instead of waiting minutes for a retry."""
    with open_session(engine) as session:
        session.execute(update(Job).where(col(Job.status) == "pending").values(run_at=utcnow()))
        session.commit()


# Organisations, grants and subscriptions, set up through the API


def make_org(client: TestClient, owner: UserHandle, name: str = "Careers Service") -> str:
    response = client.post("/v1/orgs", json={"name": name}, headers=owner.headers)
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def grant(client: TestClient, user: UserHandle, org_id: str, *scopes: str) -> str:
    response = client.post(
        "/v1/me/grants",
        json={"org_id": org_id, "scopes": list(scopes) or ["rejections:read"]},
        headers=user.headers,
    )
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def revoke(client: TestClient, user: UserHandle, grant_id: str) -> None:
    response = client.delete(f"/v1/me/grants/{grant_id}", headers=user.headers)
    assert response.status_code == 204, response.text


def subscribe(
    client: TestClient, owner: UserHandle, org_id: str, url: str, *events: str
) -> dict[str, Any]:
    response = client.post(
        f"/v1/orgs/{org_id}/webhooks",
        json={"url": url, "events": list(events) or ["rejection.created"]},
        headers=owner.headers,
    )
    assert response.status_code == 201, response.text
    return dict(response.json())


def deliveries(
    client: TestClient, owner: UserHandle, org_id: str, hook_id: str
) -> list[dict[str, Any]]:
    response = client.get(
        f"/v1/orgs/{org_id}/webhooks/{hook_id}/deliveries?limit=100", headers=owner.headers
    )
    assert response.status_code == 200, response.text
    return list(response.json()["items"])
