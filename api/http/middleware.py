"""ASGI middleware every response passes through: request ids, the request log and
metrics, security headers, and the body size limit.

All of it is plain ASGI (no `BaseHTTPMiddleware`): each layer is one function call and a
`send` wrapper, so the hot path pays microseconds, not a task and a queue per request.
"""

from __future__ import annotations

import os
import re
import time
from typing import Any

import orjson
import structlog
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.errors import PROBLEM_JSON
from api.http.metrics import observe_request

MAX_BODY_BYTES = 1024 * 1024
REQUEST_ID_HEADER = "x-request-id"
_SANE_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,128}$")

# HTML pages (the recipient's feedback form) load only a stylesheet from this origin, run
# no script, post only to this origin and cannot be framed. A page may send a policy of
# its own instead.
HTML_CONTENT_SECURITY_POLICY = (
    "default-src 'none'; style-src 'self'; form-action 'self'; "
    "frame-ancestors 'none'; base-uri 'none'"
)
# Swagger UI and ReDoc load their script from a CDN; they keep the browser's defaults.
DOCS_PATHS = frozenset({"/docs", "/docs/oauth2-redirect", "/redoc"})


def _problem(status: int, title: str, detail: str) -> bytes:
    return orjson.dumps({"type": "about:blank", "title": title, "status": status, "detail": detail})


async def send_problem(
    send: Send,
    status: int,
    title: str,
    detail: str,
    headers: tuple[tuple[bytes, bytes], ...] = (),
) -> None:
    """Answer with an RFC 9457 problem straight from middleware."""
    body = _problem(status, title, detail)
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", PROBLEM_JSON.encode()),
                (b"content-length", str(len(body)).encode()),
                *headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


class RequestIdMiddleware:
    """Echo a sane `X-Request-ID`, or make one; it is on every response and log line."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = ""
        for name, value in scope["headers"]:
            if name == b"x-request-id":
                incoming = value.decode("latin-1")
                break
        request_id = incoming if _SANE_REQUEST_ID.match(incoming) else os.urandom(16).hex()
        scope.setdefault("state", {})["request_id"] = request_id
        encoded = request_id.encode()

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", ()), (b"x-request-id", encoded)]
            await send(message)

        tokens = structlog.contextvars.bind_contextvars(request_id=request_id)
        try:
            await self.app(scope, receive, send_with_id)
        finally:
            structlog.contextvars.reset_contextvars(**tokens)


class AccessLogMiddleware:
    """One JSON log line and the Prometheus series for every request.

    The line names the route template (`/v1/rejections/{rejection_id}`), never the raw
    path or query, so capability tokens in URLs (`/f/{token}`) never reach the logs; and
    no header or body is logged. An unhandled error is answered here with a 500 problem,
    so that it too carries the request id and is counted.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.log = structlog.get_logger("rebound.request")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500
        response_started = False

        async def observed_send(message: Message) -> None:
            nonlocal status, response_started
            if message["type"] == "http.response.start":
                status = message["status"]
                response_started = True
            await send(message)

        try:
            await self.app(scope, receive, observed_send)
        except Exception:
            status = 500
            # Logged here, where the request id is still bound to the line.
            route = scope.get("route")
            self.log.exception("request_failed", route=getattr(route, "path", None))
            if not response_started:
                await send_problem(
                    observed_send,
                    500,
                    "Internal Server Error",
                    "Something went wrong on our side; it has been logged.",
                )
            raise
        finally:
            elapsed = time.perf_counter() - started
            route = scope.get("route")
            template = getattr(route, "path", None) if route is not None else None
            method = scope["method"]
            observe_request(method, template, status, elapsed)
            state: dict[str, Any] = scope.get("state") or {}
            self.log.info(
                "request",
                method=method,
                route=template,
                status=status,
                duration_ms=round(elapsed * 1000, 2),
                user_id=state.get("user_id"),
                principal=state.get("principal"),
            )


class SecurityHeadersMiddleware:
    """`nosniff` everywhere; `no-store` on authenticated answers; a strict CSP on HTML."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        authenticated = False
        for name, _value in scope["headers"]:
            if name == b"authorization":
                authenticated = True
                break
        docs_page = scope["path"] in DOCS_PATHS

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                # Each is a default: a response that sets its own keeps it.
                headers = MutableHeaders(scope=message)
                headers.setdefault("X-Content-Type-Options", "nosniff")
                if authenticated:
                    headers.setdefault("Cache-Control", "no-store")
                content_type = headers.get("content-type", "")
                if content_type.startswith("text/html") and not docs_page:
                    headers.setdefault("Content-Security-Policy", HTML_CONTENT_SECURITY_POLICY)
                    headers.setdefault("Referrer-Policy", "no-referrer")
                    headers.setdefault("X-Frame-Options", "DENY")
            await send(message)

        await self.app(scope, receive, send_with_headers)


class BodySizeLimitMiddleware:
    """413 for a body over 1 MiB, whether it declares its length or streams."""

    def __init__(self, app: ASGIApp, max_bytes: int = MAX_BODY_BYTES) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope["headers"]:
            if name == b"content-length":
                if not value.isdigit() or int(value) > self.max_bytes:
                    await self._refuse(send)
                    return
        received = 0
        response_started = False

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise _BodyTooLarge
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal response_started
            if message["type"] == "http.response.start":
                response_started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except _BodyTooLarge:
            if not response_started:
                await self._refuse(send)

    async def _refuse(self, send: Send) -> None:
        await send_problem(
            send, 413, "Content Too Large", f"The request body is over {self.max_bytes} bytes."
        )


class _BodyTooLarge(Exception):
    pass
