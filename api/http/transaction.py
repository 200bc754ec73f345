"""One request, one transaction: the route class every router uses.

The session is opened before the endpoint runs and is committed after it returned its
response, before that response is sent; any exception rolls it back. A POST carrying an
`Idempotency-Key` has its response stored in the same transaction (see idempotency.py).

Where the work runs: a write may wait for a lock (SQLite's write lock, a PostgreSQL row
lock), so writes run on the thread pool. Reads never wait for locks, so a read-only route's
sync endpoint runs inline on the event loop: no thread hop on the hot path. The hottest
read (the rejections list) goes one step further on PostgreSQL and awaits its statement
(`api.db.fetch_all`), so the loop is not blocked for the round trip.

The busiest write (logging a rejection) opens no session at all: it is marked
`writes_on_driver`, and inserts its rows with `insert_with_response`, one transaction on
the driver (`api.db.insert_owned_rows`) that also stores its Idempotency-Key record.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
from collections.abc import AsyncIterator, Callable, Coroutine, Sequence
from contextlib import asynccontextmanager
from typing import Any

import structlog
from fastapi import Request, Response
from fastapi.routing import APIRoute
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from sqlmodel import Session
from starlette.concurrency import run_in_threadpool

from api.db import NewRow, insert_owned_rows, open_session
from api.errors import Problem, ServiceUnavailable
from api.http.idempotency import (
    begin_idempotent_request,
    check_idempotency_awaited,
    idempotency_record,
    still_running,
    store_idempotent_response,
)
from api.models import IdempotencyRecord
from api.models.base import table_of

log = structlog.get_logger("rebound.transaction")

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


class TransactionGate:
    """How many transactions may be open at once in this process.

    An open transaction holds a pool connection (on SQLite, a writer also holds the write
    lock) while it waits for the event loop or a pool thread. Admitting more than there are
    connections and threads deadlocks: each connection held by a request that waits for a
    thread, a thread or the loop blocked waiting for a connection or the lock. So requests
    queue here, on the event loop, holding nothing; one that waits too long gets 503.
    SQLite takes one writer at a time anyway, so its writers queue here, not in SQLite.
    """

    WAIT_SECONDS = 10.0

    def __init__(self, *, sqlite: bool) -> None:
        # Below the pool (50 connections) and the thread pool (40 threads), leaving room
        # for the embedded worker's connections.
        self.open = asyncio.Semaphore(30)
        self.writes = asyncio.Semaphore(1 if sqlite else 20)

    @asynccontextmanager
    async def admitted(self, *, write: bool) -> AsyncIterator[None]:
        taken: list[asyncio.Semaphore] = []
        try:
            for gate in (self.open, self.writes) if write else (self.open,):
                if gate.locked():
                    await asyncio.wait_for(gate.acquire(), self.WAIT_SECONDS)
                else:  # free: taken at once, without the task that wait_for would start
                    await gate.acquire()
                taken.append(gate)
        except TimeoutError:
            for gate in taken:
                gate.release()
            raise ServiceUnavailable(
                "The service is busy right now; try again shortly.",
                headers={"Retry-After": "1"},
            ) from None
        try:
            yield
        finally:
            for gate in reversed(taken):
                gate.release()


_DRIVER_WRITES: set[Callable[..., Any]] = set()


def writes_on_driver(endpoint: Callable[..., Any]) -> Callable[..., Any]:
    """Mark an async endpoint that writes with `insert_with_response`: its route opens no
    session (it still queues at the transaction gate as a write)."""
    _DRIVER_WRITES.add(endpoint)
    return endpoint


async def insert_with_response(
    request: Request,
    response: Response,
    *,
    user_id: str,
    session_version: int,
    rows: Sequence[NewRow],
) -> bool:
    """A `writes_on_driver` endpoint's commit: its new rows and, with an Idempotency-Key,
    the record that replays `response`, in one transaction; False (nothing written) when
    the user's session has ended.

    A concurrent request with the same key waits for the first (both claim the user's
    row), then finds the key taken when it inserts its record, and is answered as a retry
    would be: the first response replayed, or 422 for another body.
    """
    record = idempotency_record(request, response)
    if record is not None:
        rows = [*rows, (table_of(IdempotencyRecord), record.model_dump())]
    try:
        return await insert_owned_rows(
            request, user_id=user_id, session_version=session_version, rows=rows
        )
    except IntegrityError as exc:
        if record is None:
            raise
        await check_idempotency_awaited(request, principal=record.principal, user_id=user_id)
        raise still_running() from exc  # the other request's record is gone again


def _run_inline(endpoint: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(endpoint)
    async def inline(*args: Any, **kwargs: Any) -> Any:
        return endpoint(*args, **kwargs)

    return inline


def _commit_and_close(session: Session) -> None:
    """Commit and give the connection back: one trip to the thread pool, not two."""
    try:
        session.commit()
    finally:
        session.close()


def _close(session: Session) -> None:
    """Give the connection back. One that died meanwhile is logged, not raised: the
    request's own outcome (its answer, or its error) stands."""
    try:
        session.close()
    except DBAPIError:
        log.warning("session_close_failed", exc_info=True)


class TransactionalRoute(APIRoute):
    def __init__(self, path: str, endpoint: Callable[..., Any], **kwargs: Any) -> None:
        # The endpoint's one-line docstring is its OpenAPI summary.
        if kwargs.get("summary") is None and endpoint.__doc__:
            kwargs["summary"] = endpoint.__doc__.strip().splitlines()[0]
        methods = set(kwargs.get("methods") or ["GET"])
        self.opens_session = endpoint not in _DRIVER_WRITES
        if methods <= SAFE_METHODS and not inspect.iscoroutinefunction(endpoint):
            endpoint = _run_inline(endpoint)
        super().__init__(path, endpoint, **kwargs)

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def run_in_transaction(request: Request) -> Response:
            write = request.method not in SAFE_METHODS
            await begin_idempotent_request(request)
            gate: TransactionGate = request.app.state.transaction_gate
            async with gate.admitted(write=write):
                if not self.opens_session:
                    return await handler(request)
                return await _run(request, write=write)

        async def _run(request: Request, *, write: bool) -> Response:
            engine = request.app.state.engine
            try:
                session = (
                    # SQLite's BEGIN IMMEDIATE, at once, may wait for the write lock.
                    await run_in_threadpool(open_session, engine, write=True)
                    if write and engine.dialect.name == "sqlite"
                    else open_session(engine, write=write)  # connects lazily, never waits
                )
            except (OperationalError, PoolTimeoutError) as exc:
                raise ServiceUnavailable(
                    "The database is not reachable right now; try again shortly.",
                    headers={"Retry-After": "1"},
                ) from exc
            request.state.session = session
            finished = False
            try:
                response = await handler(request)
                if write:
                    store_idempotent_response(request, session, response)
                    await run_in_threadpool(_commit_and_close, session)
                    finished = True
                return response
            except Problem as exc:
                if exc.keep_changes:
                    await run_in_threadpool(_commit_and_close, session)
                    finished = True
                raise
            except DBAPIError as exc:
                if exc.connection_invalidated or isinstance(exc, OperationalError):
                    raise ServiceUnavailable(
                        "The database is not reachable right now; try again shortly.",
                        headers={"Retry-After": "1"},
                    ) from exc
                raise
            finally:
                if not finished:
                    if write:
                        await run_in_threadpool(_close, session)
                    else:
                        _close(session)

        return run_in_transaction
