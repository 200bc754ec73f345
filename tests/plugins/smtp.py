"""Fixtures for a real SMTP server on loopback (aiosmtpd).

    def test_sends(smtp_server, smtp_settings):
        ...  # send through email_backend(smtp_settings)
        smtp_server.wait_for(1)
        assert smtp_server.messages[0]["To"] == "hr@example.com"

`smtp_server` speaks plain SMTP; `smtp_server_starttls` offers STARTTLS, `smtps_server`
is TLS from the first byte and `smtp_server_auth` is STARTTLS plus a required login, all
three with a self-signed certificate (so use `smtp_tls_verify=False`, as
`smtp_settings_for(settings, server)` does). `server.refuse(address)` makes the server
answer 550 to that recipient (a bounce); `refuse(address, code=450)` is a temporary
refusal; `reply_to_data("554 …")` refuses every message body.
"""

from __future__ import annotations

import asyncio
import datetime
import email
import email.policy
import ipaddress
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from api.config import Settings


@dataclass(frozen=True)
class ReceivedEnvelope:
    mail_from: str
    rcpt_tos: list[str]
    content: bytes
    # The client's address and port: one value per SMTP connection.
    peer: Any
    tls: bool


@dataclass
class _Recorder:
    """The aiosmtpd handler: records what arrives and refuses what it is told to."""

    envelopes: list[ReceivedEnvelope] = field(default_factory=list)
    messages: list[EmailMessage] = field(default_factory=list)
    refusals: dict[str, tuple[int, str]] = field(default_factory=dict)
    data_reply: str | None = None
    # DATA is answered only once this many messages are in DATA at the same time (or,
    # after `hold_timeout`, refused with 451): shows what a sender has in flight at once.
    hold_until_together: int = 0
    hold_timeout: float = 5.0
    in_data: int = 0
    changed: threading.Condition = field(default_factory=threading.Condition)

    async def handle_RCPT(
        self,
        _server: SMTP,
        _session: Session,
        envelope: Envelope,
        address: str,
        _rcpt_options: list[str],
    ) -> str:
        refusal = self.refusals.get(address.lower())
        if refusal is not None:
            code, text = refusal
            return f"{code} {text}"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        if self.data_reply is not None:
            return self.data_reply
        if self.hold_until_together and not await self._together():
            return "451 Held too long waiting for other messages"
        content = envelope.original_content or envelope.content or b""
        if isinstance(content, str):
            content = content.encode()
        message = email.message_from_bytes(content, policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        with self.changed:
            self.envelopes.append(
                ReceivedEnvelope(
                    mail_from=envelope.mail_from or "",
                    rcpt_tos=list(envelope.rcpt_tos),
                    content=content,
                    peer=session.peer,
                    tls=_is_tls(server, session),
                )
            )
            self.messages.append(message)
            self.changed.notify_all()
        return "250 Message accepted for delivery"

    async def _together(self) -> bool:
        """Wait until `hold_until_together` messages are in DATA at once (or ever were)."""
        self.in_data += 1
        try:
            deadline = asyncio.get_running_loop().time() + self.hold_timeout
            while self.in_data < self.hold_until_together:
                if asyncio.get_running_loop().time() > deadline:
                    return False
                await asyncio.sleep(0.01)
            self.hold_until_together = 0  # reached: let every message through from now on
            return True
        finally:
            self.in_data -= 1


def _is_tls(server: SMTP, session: Session) -> bool:
    """True after STARTTLS, and on an implicit-TLS (smtps) connection."""
    if session.ssl is not None:
        return True
    transport = server.transport
    return transport is not None and transport.get_extra_info("ssl_object") is not None


class SmtpTestServer:
    """A running aiosmtpd server and everything it received."""

    def __init__(
        self,
        *,
        starttls: ssl.SSLContext | None = None,
        implicit_tls: ssl.SSLContext | None = None,
        credentials: tuple[str, str] | None = None,
    ) -> None:
        self.host = "127.0.0.1"
        self.credentials = credentials
        self.scheme = "smtps" if implicit_tls else "smtp"
        self._recorder = _Recorder()
        self._starttls = starttls
        self._implicit_tls = implicit_tls
        self.port = 0
        self._controller: Controller | None = None

    # -- lifecycle -------------------------------------------------------------------
    def start(self) -> None:
        last_error: Exception | None = None
        for _attempt in range(5):
            port = self.port or _free_port()
            kwargs: dict[str, Any] = {"enable_SMTPUTF8": True}
            if self._starttls is not None:
                kwargs.update(tls_context=self._starttls, require_starttls=False)
            if self.credentials is not None:
                kwargs.update(
                    authenticator=_Authenticator(*self.credentials),
                    auth_required=True,
                    auth_require_tls=True,
                )
            controller = Controller(
                self._recorder,
                hostname=self.host,
                port=port,
                ssl_context=self._implicit_tls,
                ready_timeout=10,
                **kwargs,
            )
            try:
                controller.start()
            except (OSError, RuntimeError) as exc:  # the port was taken meanwhile
                last_error = exc
                if self.port:
                    time.sleep(0.2)
                continue
            self.port = port
            self._controller = controller
            return
        raise RuntimeError(f"could not start the SMTP test server: {last_error}")

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    def restart(self) -> None:
        """Stop and start again on the same port: every open connection is cut."""
        self.stop()
        self.start()

    # -- what arrived ------------------------------------------------------------------
    @property
    def url(self) -> str:
        """`smtp://127.0.0.1:PORT` (`smtps://…`; with `user:password@` when auth is on)."""
        login = ""
        if self.credentials is not None:
            login = "{}:{}@".format(*(quote(part, safe="") for part in self.credentials))
        return f"{self.scheme}://{login}{self.host}:{self.port}"

    @property
    def messages(self) -> list[EmailMessage]:
        """Every message received, parsed with email.policy.default, oldest first."""
        return self._recorder.messages

    @property
    def envelopes(self) -> list[ReceivedEnvelope]:
        """The SMTP envelopes (mail_from, rcpt_tos, raw content, peer), oldest first."""
        return self._recorder.envelopes

    @property
    def connections(self) -> int:
        """How many distinct SMTP connections delivered at least one message."""
        return len({envelope.peer for envelope in self._recorder.envelopes})

    def wait_for(self, count: int, timeout: float = 5.0) -> list[EmailMessage]:
        """Block until at least `count` messages have arrived; fail after `timeout` s."""
        deadline = time.monotonic() + timeout
        with self._recorder.changed:
            while len(self._recorder.messages) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(
                        f"expected {count} message(s) at the SMTP server, "
                        f"got {len(self._recorder.messages)} within {timeout} s"
                    )
                self._recorder.changed.wait(left)
            return list(self._recorder.messages)

    def clear(self) -> None:
        with self._recorder.changed:
            self._recorder.messages.clear()
            self._recorder.envelopes.clear()

    # -- misbehaving on purpose --------------------------------------------------------
    def refuse(self, address: str, code: int = 550, text: str | None = None) -> None:
        """Answer RCPT TO for `address` with `code` (550: no such user, a bounce)."""
        default = "5.1.1 No such user here" if code >= 500 else "4.2.1 Try again later"
        self._recorder.refusals[address.lower()] = (code, text or default)

    def hold_data_until_together(self, count: int, timeout: float = 5.0) -> None:
        """Answer DATA only once `count` messages are being sent at the same time; a
        message still alone after `timeout` seconds is refused with 451 (try later)."""
        self._recorder.hold_timeout = timeout
        self._recorder.hold_until_together = count

    def reply_to_data(self, reply: str | None) -> None:
        """Answer every DATA with `reply` (for example "554 5.7.1 Rejected as spam");
        None accepts messages again."""
        self._recorder.data_reply = reply


class _Authenticator:
    """Accepts exactly one user name and password (AUTH PLAIN or LOGIN, after TLS)."""

    def __init__(self, username: str, password: str) -> None:
        self.expected = (username.encode(), password.encode())

    def __call__(
        self, _server: SMTP, _session: Session, _envelope: Envelope, _mechanism: str, data: Any
    ) -> AuthResult:
        ok = isinstance(data, LoginPassword) and (data.login, data.password) == self.expected
        # handled=False: aiosmtpd answers 535 itself.
        return AuthResult(success=ok, handled=False)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _self_signed_certificate(directory: Path) -> tuple[Path, Path]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    cert_path = directory / "smtp-cert.pem"
    key_path = directory / "smtp-key.pem"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


@pytest.fixture(scope="session")
def smtp_tls_certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate and key (PEM files) for 127.0.0.1 and localhost."""
    return _self_signed_certificate(tmp_path_factory.mktemp("smtp-tls"))


def _server_tls_context(certificate: tuple[Path, Path]) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(*certificate)
    return context


def _running(server: SmtpTestServer) -> Iterator[SmtpTestServer]:
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def smtp_server() -> Iterator[SmtpTestServer]:
    """A plain SMTP server on 127.0.0.1 (no STARTTLS offered)."""
    yield from _running(SmtpTestServer())


@pytest.fixture
def smtp_server_starttls(smtp_tls_certificate: tuple[Path, Path]) -> Iterator[SmtpTestServer]:
    """An SMTP server that offers STARTTLS with a self-signed certificate."""
    yield from _running(SmtpTestServer(starttls=_server_tls_context(smtp_tls_certificate)))


@pytest.fixture
def smtps_server(smtp_tls_certificate: tuple[Path, Path]) -> Iterator[SmtpTestServer]:
    """An SMTP server behind implicit TLS (smtps://) with a self-signed certificate."""
    yield from _running(SmtpTestServer(implicit_tls=_server_tls_context(smtp_tls_certificate)))


@pytest.fixture
def smtp_server_auth(smtp_tls_certificate: tuple[Path, Path]) -> Iterator[SmtpTestServer]:
    """STARTTLS and a required login: user `rebound`, password `s3cret:p@ss`
    (`.url` carries them, quoted)."""
    yield from _running(
        SmtpTestServer(
            starttls=_server_tls_context(smtp_tls_certificate),
            credentials=("rebound", "s3cret:p@ss"),
        )
    )


def smtp_settings_for(settings: Settings, server: SmtpTestServer) -> Settings:
    """`settings` with the SMTP backend pointed at `server` (certificate not verified)."""
    return settings.model_copy(
        update={
            "email_backend": "smtp",
            "smtp_url": server.url,
            "smtp_tls_verify": False,
            "smtp_timeout": 5.0,
        }
    )


@pytest.fixture
def smtp_settings(settings: Settings, smtp_server: SmtpTestServer) -> Settings:
    """The test settings with REBOUND_EMAIL_BACKEND=smtp aimed at `smtp_server`."""
    return smtp_settings_for(settings, smtp_server)
