"""Nothing acknowledged is ever lost: SIGKILL the server in the middle of a stream of
POSTs carrying Idempotency-Keys, restart it, retry what was not acknowledged."""

from __future__ import annotations

import random
import threading
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from sqlalchemy import func
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from api.models import Rejection
from tests.factories import PASSWORD
from tests.faults.server import running_server

pytestmark = pytest.mark.slow

REQUESTS = 120


def _body(n: int) -> dict[str, object]:
    return {"company": f"Company {n}", "role_title": "Engineer", "rejected_on": "2026-11-01"}


def test_acknowledged_posts_survive_a_crash_exactly_once(database_url: str, engine: Engine) -> None:
    acknowledged: dict[int, str] = {}
    lock = threading.Lock()
    kill_after = random.randint(20, 60)

    with running_server(database_url) as server:
        with httpx.Client(base_url=server.url, timeout=10) as http:
            assert (
                http.post(
                    "/v1/auth/register", json={"email": "crash@example.com", "password": PASSWORD}
                ).status_code
                == 201
            )
            token = http.post(
                "/v1/auth/token", data={"username": "crash@example.com", "password": PASSWORD}
            ).json()["access_token"]
        headers = {"Authorization": f"Bearer {token}"}

        def send(n: int) -> None:
            try:
                response = httpx.post(
                    f"{server.url}/v1/rejections",
                    json=_body(n),
                    headers={**headers, "Idempotency-Key": f"key-{n}"},
                    timeout=10,
                )
            except httpx.TransportError:
                return  # not acknowledged: the client will retry
            if response.status_code == 201:
                with lock:
                    acknowledged[n] = response.json()["id"]
                    if len(acknowledged) == kill_after:
                        server.kill()

        with ThreadPoolExecutor(max_workers=8) as pool:
            list(pool.map(send, range(REQUESTS)))

    assert kill_after <= len(acknowledged) < REQUESTS, "the crash happened mid-stream"

    with (
        running_server(database_url) as server,
        httpx.Client(base_url=server.url, timeout=10) as http,
    ):
        for n in range(REQUESTS):
            response = http.post(
                "/v1/rejections", json=_body(n), headers={**headers, "Idempotency-Key": f"key-{n}"}
            )
            assert response.status_code == 201, response.text
            if n in acknowledged:
                # A retry of an acknowledged request replays the first answer.
                assert response.json()["id"] == acknowledged[n]
                assert response.headers.get("Idempotency-Replayed") == "true"

    with Session(engine) as session:
        rows = session.exec(
            select(Rejection.company, func.count()).group_by(col(Rejection.company))
        ).all()
    counts = dict(rows)
    assert len(counts) == REQUESTS
    assert set(counts.values()) == {1}
    with Session(engine) as session:
        stored = set(session.exec(select(Rejection.id)).all())
    assert set(acknowledged.values()) <= stored
