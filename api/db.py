"""Engine, metadata naming convention, column types and the request's session."""

from __future__ import annotations

import collections
import functools
import secrets
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import orjson
import psycopg
from fastapi import Depends, Request
from psycopg.pq import TransactionStatus
from psycopg.rows import namedtuple_row
from sqlalchemy import JSON, DateTime, TypeDecorator, event, make_url
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Dialect, Engine
from sqlalchemy.exc import DBAPIError
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.expression import Select
from sqlmodel import Session, SQLModel, create_engine

from api.config import Settings
from api.errors import ServiceUnavailable

SQLModel.metadata.naming_convention = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> datetime:
    return datetime.now(UTC)


def new_id() -> str:
    """A UUIDv7 string: random, yet ordered by creation time, so ids make keyset cursors."""
    millis = time.time_ns() // 1_000_000
    value = (millis & ((1 << 48) - 1)) << 80
    value |= 0x7 << 76
    value |= secrets.randbits(12) << 64
    value |= 0b10 << 62
    value |= secrets.randbits(62)
    return str(uuid.UUID(int=value))


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every engine (SQLite stores them naive)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, _dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


# JSON on SQLite, JSONB on PostgreSQL.
JSONType = JSON().with_variant(JSONB(), "postgresql")


def make_engine(settings: Settings) -> Engine:
    url = settings.database_url
    if url.startswith("sqlite"):
        path = url.split("///", 1)[1] if "///" in url else ""
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        file_pool = {"pool_size": 20, "max_overflow": 30, "pool_timeout": 5}
        engine = create_engine(
            url,
            json_deserializer=orjson.loads,
            connect_args={"check_same_thread": False, "timeout": 30},
            **(file_pool if path and path != ":memory:" else {}),
        )
        _configure_sqlite(engine)
        return engine
    # More connections than the thread pool has threads (40), so a request never waits
    # for a connection that a thread holds. No pre-ping (a round trip at every checkout):
    # when the server went away, the first request to find out answers 503 and SQLAlchemy
    # drops every pooled connection at once, so the next ones reconnect
    # (tests/faults/test_database_restart.py).
    return create_engine(
        url,
        json_deserializer=orjson.loads,
        pool_size=20,
        max_overflow=30,
        pool_timeout=5,
        connect_args={"connect_timeout": 5},
    )


def _configure_sqlite(engine: Engine) -> None:
    """WAL, foreign keys, a busy timeout, and explicit BEGIN so writers can take the lock up front."""

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # we issue BEGIN ourselves
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        # A writing transaction takes SQLite's write lock at BEGIN: writers queue on the
        # busy timeout instead of failing when a read lock cannot be upgraded.
        # Straight to the driver: the statement needs none of SQLAlchemy's execution work.
        mode = connection.get_execution_options().get("sqlite_begin", "DEFERRED")
        connection.connection.driver_connection.execute(f"BEGIN {mode}")


def open_session(engine: Engine, *, write: bool = True) -> Session:
    """A session whose transaction is ready to write (on SQLite: BEGIN IMMEDIATE).

    A read-only session on PostgreSQL runs each statement on its own (autocommit): at
    READ COMMITTED, PostgreSQL's level, the statements of one transaction do not share a
    snapshot anyway, so the BEGIN and ROLLBACK would be two round trips for nothing. On
    SQLite a read keeps its transaction, which there is one snapshot for all its reads.
    """
    if not write and engine.dialect.name == "postgresql":
        return Session(_autocommit(engine), expire_on_commit=False, autoflush=True)
    session = Session(engine, expire_on_commit=False, autoflush=True)
    if write and engine.dialect.name == "sqlite":
        session.connection(execution_options={"sqlite_begin": "IMMEDIATE"})
    return session


@functools.cache
def _autocommit(engine: Engine) -> Engine:
    return engine.execution_options(isolation_level="AUTOCOMMIT")


def request_session(request: Request) -> Session:
    """The request's session; `api.http.transaction.TransactionalRoute` commits or rolls it back."""
    session: Session | None = getattr(request.state, "session", None)
    if session is None:
        raise RuntimeError("the route is not a TransactionalRoute")
    return session


async def get_session(request: Request) -> Session:
    """`request_session`, as a dependency."""
    return request_session(request)


SessionDep = Annotated[Session, Depends(get_session)]


# --- reads awaited on the event loop (PostgreSQL) -------------------------------------
#
# A read-only route runs inline on the event loop (api/http/transaction.py). On SQLite a
# statement is a call into the same process; on PostgreSQL it is a network round trip,
# during which a sync driver blocks the loop and the process serves nobody. The hottest
# reads await their statements instead, on async psycopg connections in autocommit (as
# every read-only session here), so the loop serves other requests while PostgreSQL
# works. On SQLite, and in an app whose lifespan has not run, the same call runs the
# statement on a pooled driver connection of the engine.


class ReadConnections:
    """Async psycopg connections for awaited reads: an idle one is reused, else one is
    opened. How many are in use is bounded by the transaction gate.

    Nothing runs in the background and nothing backs off, as with the engine's pool:
    while PostgreSQL is down a read fails at once (503), and once it is back the next
    read connects. A lost connection drops every idle one, which would fail the same way.
    """

    KEEP_IDLE = 20

    def __init__(self, conninfo: str) -> None:
        self.conninfo = conninfo
        self.idle: list[psycopg.AsyncConnection[Any]] = []

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
        if self.idle:
            connection = self.idle.pop()
        else:
            connection = await psycopg.AsyncConnection.connect(
                self.conninfo, autocommit=True, row_factory=namedtuple_row, connect_timeout=5
            )
        try:
            yield connection
        except psycopg.OperationalError:
            await self.close()
            raise
        finally:
            idle = connection.info.transaction_status == TransactionStatus.IDLE
            if idle and len(self.idle) < self.KEEP_IDLE:
                self.idle.append(connection)
            else:
                await connection.close()

    async def close(self) -> None:
        idle, self.idle = self.idle, []
        for connection in idle:
            await connection.close()


def read_connections(settings: Settings) -> ReadConnections | None:
    """The connections of awaited reads on PostgreSQL; None on SQLite."""
    if settings.is_sqlite:
        return None
    url = make_url(settings.database_url).set(drivername="postgresql")
    return ReadConnections(url.render_as_string(hide_password=False))


async def fetch_all(request: Request, statement: Select[Any], values: dict[str, Any]) -> list[Any]:
    """The rows of `statement` with `values` bound: awaited on PostgreSQL; on SQLite run
    straight on a pooled driver connection, one statement in its own implicit transaction
    (no ORM session, no BEGIN and ROLLBACK: a quarter of the list's time in process).
    Rows are named tuples of the selected columns, with no SQLAlchemy type processing:
    for statements of plain text and number columns and plain values (`_sql_for` refuses
    any other)."""
    reads: ReadConnections | None = getattr(request.app.state, "read_connections", None)
    engine: Engine = request.app.state.engine
    sql, compiled = _sql_for(statement, engine.dialect)
    if reads is None:
        return _fetch_on_driver(engine, sql, compiled, values)
    try:
        async with reads.connection() as connection:
            cursor = await connection.execute(sql, compiled.construct_params(values))
            return await cursor.fetchall()
    except psycopg.OperationalError as exc:
        raise ServiceUnavailable(
            "The database is not reachable right now; try again shortly.",
            headers={"Retry-After": "1"},
        ) from exc


def _fetch_on_driver(
    engine: Engine, sql: str, compiled: SQLCompiler, values: dict[str, Any]
) -> list[Any]:
    params = compiled.construct_params(values)
    positional = [params[name] for name in compiled.positiontup or ()]
    driver_error = engine.dialect.loaded_dbapi.Error
    connection = engine.raw_connection()
    try:
        cursor = connection.cursor()
        cursor.execute(sql, positional)
        row = _row_type(tuple(column[0] for column in cursor.description))
        return [row._make(found) for found in cursor.fetchall()]
    except driver_error as exc:
        # As SQLAlchemy would have wrapped it: the app's handlers answer a lost database
        # (OperationalError) with 503 and any other database error with 500.
        raise DBAPIError.instance(sql, positional, exc, driver_error) from exc
    finally:
        connection.close()


@functools.lru_cache(maxsize=64)
def _row_type(names: tuple[str, ...]) -> Any:
    return collections.namedtuple("Row", names)


# Keyed by the statement object: callers pass statements built once (module constants,
# cached builders); the bound keeps a statement built per request from growing it forever.
@functools.lru_cache(maxsize=256)
def _sql_for(statement: Select[Any], dialect: Dialect) -> tuple[str, SQLCompiler]:
    compiled = statement.compile(dialect=dialect)
    processed = [
        name for name, bind in compiled.binds.items() if bind.type.bind_processor(dialect)
    ] + [
        column.name
        for column in getattr(statement, "selected_columns", ())
        if column.type.result_processor(dialect, None)
    ]
    if processed:
        raise TypeError(f"values that need SQLAlchemy's type processing: {processed}")
    return str(compiled), compiled
