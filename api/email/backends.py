"""Where messages go: the console (logged, the local default) or an SMTP server.

`EmailDeliveryError.permanent` tells the caller what to do with a failure: a permanent
one (the server refused the recipient or the message with a 5xx reply) is a bounce and
must not be retried; a temporary one (4xx, timeout, connection, authentication) is
worth retrying later.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
from collections.abc import MutableMapping
from email.message import EmailMessage
from email.policy import EmailPolicy, Policy
from email.utils import getaddresses
from functools import lru_cache
from typing import Any, Protocol, cast
from urllib.parse import unquote, urlsplit

import aiosmtplib
import structlog

from api.config import Settings

logger = structlog.get_logger("api.email")


class EmailDeliveryError(Exception):
    """A message that did not reach the server; `permanent` means do not retry."""

    def __init__(self, reason: str, *, permanent: bool, code: int | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.permanent = permanent
        self.code = code


class EmailBackend(Protocol):
    async def send(self, message: EmailMessage) -> None: ...

    async def close(self) -> None: ...


def _envelope(message: EmailMessage) -> tuple[str, list[str]]:
    # From the stored values (message.raw_items), not the parsed headers: getaddresses
    # parses them anyway, and a header object costs a full RFC 5322 parse per read.
    fields: dict[str, list[str]] = {}
    for name, value in message.raw_items():
        fields.setdefault(name.lower(), []).append(str(value))
    senders = getaddresses(fields.get("sender") or fields.get("from") or [""])
    recipients = [
        addr
        for _name, addr in getaddresses(
            [value for field in ("to", "cc", "bcc") for value in fields.get(field, [])]
        )
        if addr
    ]
    if not senders or not senders[0][1]:
        raise ValueError("the message has no From address")
    if not recipients:
        raise ValueError("the message has no recipient")
    return senders[0][1], recipients


class ConsoleBackend:
    """Logs each message instead of sending it: the default for local use."""

    async def send(self, message: EmailMessage) -> None:
        body = message.get_body(preferencelist=("plain",))
        logger.info(
            "email.console",
            to=str(message["To"]),
            reply_to=str(message["Reply-To"] or ""),
            subject=str(message["Subject"]),
            message_id=str(message["Message-ID"]),
            text=body.get_content() if isinstance(body, EmailMessage) else "",
        )

    async def close(self) -> None:
        return None


class SmtpBackend:
    """Sends through SMTP connections kept open and reused across messages: one by
    default, up to `connections` when many messages are sent at once.

    A connection carries one message at a time (an SMTP session has one transaction at a
    time); a connection the server dropped is replaced, and a message is resent on a fresh
    connection only when the failure happened before DATA, so it cannot arrive twice."""

    def __init__(
        self,
        *,
        hostname: str,
        port: int,
        implicit_tls: bool = False,
        username: str | None = None,
        password: str | None = None,
        timeout: float = 10.0,
        verify_tls: bool = True,
        local_hostname: str | None = None,
        connections: int = 1,
    ) -> None:
        self.hostname = hostname
        self.port = port
        self.implicit_tls = implicit_tls
        self.username = username
        self.password = password
        self.timeout = timeout
        self.verify_tls = verify_tls
        self.local_hostname = local_hostname
        self.connections = max(1, connections)
        # Open connections not carrying a message right now.
        self._idle: list[aiosmtplib.SMTP] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._gate: asyncio.Semaphore | None = None
        self._tls: ssl.SSLContext | None = None
        self.connections_opened = 0

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        timeout: float = 10.0,
        verify_tls: bool = True,
        local_hostname: str | None = None,
        connections: int = 1,
    ) -> SmtpBackend:
        """`smtp://[user:pass@]host[:port]` (STARTTLS when offered) or `smtps://…` (TLS)."""
        parts = urlsplit(url)
        if parts.scheme not in ("smtp", "smtps") or not parts.hostname:
            raise ValueError("REBOUND_SMTP_URL must look like smtp://host:port or smtps://host")
        implicit_tls = parts.scheme == "smtps"
        return cls(
            hostname=parts.hostname,
            port=parts.port or (465 if implicit_tls else 25),
            implicit_tls=implicit_tls,
            username=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password is not None else None,
            timeout=timeout,
            verify_tls=verify_tls,
            local_hostname=local_hostname,
            connections=connections,
        )

    def _tls_context(self) -> ssl.SSLContext:
        # Built once: loading the system's CA certificates costs milliseconds.
        if self._tls is None:
            context = ssl.create_default_context()
            if not self.verify_tls:
                context.check_hostname = False
                context.verify_mode = ssl.CERT_NONE
            self._tls = context
        return self._tls

    def _guard(self) -> asyncio.Semaphore:
        # Connections and the gate belong to one event loop; a backend used from a new
        # loop (asyncio.run called again) starts afresh instead of touching the dead ones.
        loop = asyncio.get_running_loop()
        if self._loop is not loop or self._gate is None:
            while self._idle:
                self._drop(self._idle.pop())
            self._loop = loop
            self._gate = asyncio.Semaphore(self.connections)
        return self._gate

    async def _connected(self) -> tuple[aiosmtplib.SMTP, bool]:
        """An idle open connection (and True), or a new one (and False)."""
        while self._idle:
            client = self._idle.pop()
            if client.is_connected:
                return client, True
            self._drop(client)
        client = aiosmtplib.SMTP(
            hostname=self.hostname,
            port=self.port,
            username=self.username,
            password=self.password,
            timeout=self.timeout,
            use_tls=self.implicit_tls,
            start_tls=False if self.implicit_tls else None,
            tls_context=self._tls_context(),
            local_hostname=self.local_hostname,
        )
        try:
            await client.connect()
            if client.is_ehlo_or_helo_needed:
                await client.ehlo()
        except aiosmtplib.SMTPAuthenticationError as exc:
            client.close()
            raise EmailDeliveryError(
                f"SMTP login refused: {exc.code} {exc.message}", permanent=False, code=exc.code
            ) from exc
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
            client.close()
            raise EmailDeliveryError(
                f"cannot reach the SMTP server {self.hostname}:{self.port}: {exc}",
                permanent=False,
            ) from exc
        self.connections_opened += 1
        return client, False

    def _drop(self, client: aiosmtplib.SMTP) -> None:
        transport = client.transport
        try:
            client.close()
        except RuntimeError:
            # Its event loop is closed (the backend outlived an asyncio.run without
            # close()): end the TCP session now; the descriptor is freed with the transport.
            sock = transport.get_extra_info("socket") if transport is not None else None
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)

    async def send(self, message: EmailMessage) -> None:
        """Deliver `message` to the server, or raise `EmailDeliveryError`."""
        sender, recipients = _envelope(message)
        async with self._guard():
            for _attempt in range(2):
                client, reused = await self._connected()
                try:
                    await self._transaction(client, sender, recipients, message)
                except EmailDeliveryError:
                    self._release(client)  # the session is reset (or was dropped)
                    raise
                except _StaleConnection as exc:
                    self._drop(client)
                    if not reused:
                        raise EmailDeliveryError(
                            f"the SMTP server closed the connection: {exc.__cause__}",
                            permanent=False,
                        ) from exc
                    # A reused connection the server had quietly closed: try a fresh one.
                    continue
                except BaseException:
                    self._drop(client)  # in an unknown state (cancelled mid-transaction)
                    raise
                self._release(client)
                return

    def _release(self, client: aiosmtplib.SMTP) -> None:
        if client.is_connected:
            self._idle.append(client)

    async def _transaction(
        self,
        client: aiosmtplib.SMTP,
        sender: str,
        recipients: list[str],
        message: EmailMessage,
    ) -> None:
        utf8 = not (sender + "".join(recipients)).isascii()
        if utf8 and not client.supports_extension("smtputf8"):
            raise EmailDeliveryError(
                "the address needs SMTPUTF8, which the server does not offer", permanent=True
            )
        options = ["SMTPUTF8"] if utf8 else []
        data = message.as_bytes(policy=_wire_policy(message.policy, utf8=utf8))
        encoding = "utf-8" if utf8 else "ascii"

        # Before DATA nothing has been delivered, so a dropped connection is safe to retry.
        try:
            await client.mail(sender, options=options, encoding=encoding)
            refused: list[aiosmtplib.SMTPRecipientRefused] = []
            for recipient in recipients:
                try:
                    await client.rcpt(recipient, encoding=encoding)
                except aiosmtplib.SMTPRecipientRefused as exc:
                    refused.append(exc)
        except (aiosmtplib.SMTPServerDisconnected, ConnectionError) as exc:
            raise _StaleConnection from exc
        except aiosmtplib.SMTPResponseException as exc:
            await self._reset(client)
            if exc.code == 421:  # the server is closing this session
                raise _StaleConnection from exc
            raise EmailDeliveryError(
                f"the SMTP server refused the sender: {exc.code} {exc.message}",
                permanent=False,
                code=exc.code,
            ) from exc
        except (aiosmtplib.SMTPException, TimeoutError) as exc:
            self._drop(client)
            raise EmailDeliveryError(f"SMTP failure: {exc}", permanent=False) from exc

        if len(refused) == len(recipients):
            await self._reset(client)
            worst = refused[0]
            raise EmailDeliveryError(
                f"the SMTP server refused {worst.recipient}: {worst.code} {worst.message}",
                permanent=all(r.code >= 500 for r in refused),
                code=worst.code,
            )
        for partial in refused:
            logger.warning(
                "email.recipient_refused",
                recipient=partial.recipient,
                code=partial.code,
                reason=partial.message,
            )

        try:
            await client.data(data)
        except aiosmtplib.SMTPResponseException as exc:
            await self._reset(client)
            raise EmailDeliveryError(
                f"the SMTP server refused the message: {exc.code} {exc.message}",
                permanent=exc.code >= 500,
                code=exc.code,
            ) from exc
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
            # The server may or may not have taken the message; do not resend it here.
            self._drop(client)
            raise EmailDeliveryError(
                f"the SMTP connection failed during DATA: {exc}", permanent=False
            ) from exc

    async def _reset(self, client: aiosmtplib.SMTP) -> None:
        try:
            await client.rset()
        except (aiosmtplib.SMTPException, OSError, TimeoutError):
            self._drop(client)

    async def close(self) -> None:
        """Say goodbye to the server (QUIT) and close the connections."""
        current = self._loop is asyncio.get_running_loop()
        while self._idle:
            client = self._idle.pop()
            if current and client.is_connected:
                try:
                    await client.quit()
                except (aiosmtplib.SMTPException, OSError, TimeoutError):
                    pass
            self._drop(client)


@lru_cache(maxsize=8)
def _wire_policy(policy: Policy, *, utf8: bool) -> Policy:
    """The message's own policy, with CRLF line ends (and UTF-8 headers for SMTPUTF8)."""
    if isinstance(policy, EmailPolicy):
        return policy.clone(linesep="\r\n", utf8=utf8)
    return policy.clone(linesep="\r\n")


class _StaleConnection(Exception):
    """The connection went away before the message was handed over."""


def email_backend(settings: Settings, *, connections: int = 1) -> EmailBackend:
    """The backend REBOUND_EMAIL_BACKEND names, configured from the settings; an SMTP
    backend opens up to `connections` connections when sending several messages at once."""
    if settings.email_backend == "console":
        return ConsoleBackend()
    if not settings.smtp_url:
        raise ValueError("REBOUND_EMAIL_BACKEND=smtp needs REBOUND_SMTP_URL")
    return SmtpBackend.from_url(
        settings.smtp_url,
        timeout=settings.smtp_timeout,
        verify_tls=settings.smtp_tls_verify,
        local_hostname=urlsplit(settings.base_url).hostname or None,
        connections=connections,
    )


SHARED_BACKEND_KEY = "email_backend"
# A worker hands a batch of messages over at once: while the server takes one on one
# connection, the worker writes the next on another. Few, so as not to look like a flood.
SHARED_CONNECTIONS = 4


def shared_email_backend(services: MutableMapping[str, Any], settings: Settings) -> EmailBackend:
    """The one backend a long-lived holder (a worker's `ctx.services`) keeps for all its
    messages, so its SMTP connections are reused; do not close it after each message."""
    backend = services.get(SHARED_BACKEND_KEY)
    if backend is None:
        backend = services[SHARED_BACKEND_KEY] = email_backend(
            settings, connections=SHARED_CONNECTIONS
        )
    return cast(EmailBackend, backend)


async def close_shared_email_backend(services: MutableMapping[str, Any]) -> None:
    """Close (QUIT) the backend `shared_email_backend` made, if any: when the worker stops."""
    backend = services.pop(SHARED_BACKEND_KEY, None)
    if backend is not None:
        await backend.close()
