"""Safe retries: a POST with an `Idempotency-Key` runs once per principal and key.

A retry with the same key and body gets the first response again (with
`Idempotency-Replayed: true`) and changes nothing; the same key with another body is 422.
The same key while the first request is still running is 409 where the request holds a
session (an advisory lock on PostgreSQL); a write that opens none (`writes_on_driver`)
waits for the first instead and is answered as a retry (api/http/transaction.py). Records
are written in the request's own transaction, so a response is replayable exactly when
its change committed.
Keys are kept for `RETENTION`; the worker prunes older ones. Stored responses are
encrypted with a key derived from REBOUND_SECRET_KEY: some carry a secret shown once (an
API key, a webhook secret, a calendar-feed URL) that must not rest in the clear.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass
from datetime import timedelta
from functools import lru_cache

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from fastapi import Request, Response
from sqlalchemy import text
from sqlalchemy.engine import Engine
from sqlmodel import Session, select
from starlette.concurrency import run_in_threadpool

from api.config import Settings
from api.db import open_session
from api.errors import Conflict, Unprocessable
from api.models import IdempotencyRecord

HEADER = "Idempotency-Key"
RETENTION = timedelta(hours=48)
_REPLAYED_HEADERS = ("location", "etag", "content-type")


@dataclass
class IdempotentRequest:
    key: str
    request_hash: str
    principal: str | None = None
    user_id: str | None = None


@lru_cache(maxsize=8)
def _cipher(keys: tuple[str, ...]) -> MultiFernet:
    """Encrypts with the current secret key; decrypts with it or a previous one."""
    return MultiFernet(
        [
            Fernet(
                base64.urlsafe_b64encode(
                    hashlib.sha256(b"rebound-idempotency:" + k.encode()).digest()
                )
            )
            for k in keys
        ]
    )


def _cipher_for(settings: Settings) -> MultiFernet:
    return _cipher((settings.secret_key, *settings.previous_secret_keys))


class IdempotentReplay(Exception):
    """Raised to answer a retry with the stored response; handled in api.main."""

    def __init__(self, record: IdempotencyRecord, body: bytes) -> None:
        super().__init__(record.key)
        self.record = record
        self.body = body

    def response(self) -> Response:
        headers = dict(self.record.response_headers)
        headers["Idempotency-Replayed"] = "true"
        return Response(content=self.body, status_code=self.record.status_code, headers=headers)


async def begin_idempotent_request(request: Request) -> None:
    """Note the key and a digest of the request; the principal is checked once known."""
    key = request.headers.get(HEADER)
    if request.method != "POST" or key is None:
        return
    if not 1 <= len(key) <= 255 or not key.isprintable():
        raise Unprocessable(
            "Idempotency-Key must be 1 to 255 printable characters.",
            loc=["header", HEADER],
        )
    body = await request.body()
    digest = hashlib.sha256()
    digest.update(request.method.encode() + b" " + request.url.path.encode() + b"\n")
    digest.update(request.url.query.encode() + b"\n")
    digest.update(body)
    request.state.idempotency = IdempotentRequest(key=key, request_hash=digest.hexdigest())


def check_idempotency(
    request: Request, session: Session, *, principal: str, user_id: str | None
) -> None:
    """Called by authentication once it knows who is asking: replay, refuse, or go on."""
    intent = _intent_of(request, principal=principal, user_id=user_id)
    if intent is None:
        return
    if session.get_bind().dialect.name == "postgresql":
        # Held until the transaction ends: a concurrent request with this key is a 409.
        locked = session.execute(
            text("SELECT pg_try_advisory_xact_lock(hashtextextended(:k, 0))"),
            {"k": f"{principal} {intent.key}"},
        ).scalar_one()
        if not locked:
            raise still_running()
    _answer_if_seen(request, intent, _find_record(session, principal, intent.key))


async def check_idempotency_awaited(request: Request, *, principal: str, user_id: str) -> None:
    """`check_idempotency` for a write that opens no session (`writes_on_driver`): the
    record is looked up on a thread. A concurrent request with the same key meets the
    first's record when it inserts its own (`api.http.transaction.insert_with_response`)."""
    intent = _intent_of(request, principal=principal, user_id=user_id)
    if intent is None:
        return
    record = await run_in_threadpool(
        _find_in_new_session, request.app.state.engine, principal, intent.key
    )
    _answer_if_seen(request, intent, record)


def _intent_of(
    request: Request, *, principal: str, user_id: str | None
) -> IdempotentRequest | None:
    intent: IdempotentRequest | None = getattr(request.state, "idempotency", None)
    if intent is not None:
        intent.principal, intent.user_id = principal, user_id
    return intent


def _find_record(session: Session, principal: str, key: str) -> IdempotencyRecord | None:
    return session.exec(
        select(IdempotencyRecord).where(
            IdempotencyRecord.principal == principal, IdempotencyRecord.key == key
        )
    ).first()


def _find_in_new_session(engine: Engine, principal: str, key: str) -> IdempotencyRecord | None:
    with open_session(engine, write=False) as session:
        return _find_record(session, principal, key)


def _answer_if_seen(
    request: Request, intent: IdempotentRequest, record: IdempotencyRecord | None
) -> None:
    if record is None:
        return
    if record.request_hash != intent.request_hash:
        raise Unprocessable(
            "This Idempotency-Key was already used with a different request.",
            loc=["header", HEADER],
            error_type="idempotency_key_reused",
        )
    try:
        body = _cipher_for(request.app.state.settings).decrypt(record.response_body.encode())
    except InvalidToken:
        return  # sealed with a key no longer configured: treat the key as unused
    raise IdempotentReplay(record, body)


def still_running() -> Conflict:
    """The answer while another request with the same principal and key is running."""
    return Conflict(
        "A request with this Idempotency-Key is still being processed; retry later.",
        headers={"Retry-After": "1"},
    )


def store_idempotent_response(request: Request, session: Session, response: Response) -> None:
    record = idempotency_record(request, response)
    if record is not None:
        session.add(record)


def idempotency_record(request: Request, response: Response) -> IdempotencyRecord | None:
    """The record that replays `response` to a retry with the request's key, if it has
    one; stored in the request's transaction."""
    intent: IdempotentRequest | None = getattr(request.state, "idempotency", None)
    if intent is None or intent.principal is None or response.status_code >= 500:
        return None
    body = bytes(response.body) if hasattr(response, "body") else b""
    return IdempotencyRecord(
        principal=intent.principal,
        key=intent.key,
        user_id=intent.user_id,
        method=request.method,
        path=request.url.path,
        request_hash=intent.request_hash,
        status_code=response.status_code,
        response_body=_cipher_for(request.app.state.settings).encrypt(body).decode(),
        response_headers={
            name: value for name, value in response.headers.items() if name in _REPLAYED_HEADERS
        },
    )
