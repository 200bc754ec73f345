"""Engine, metadata naming convention, column types and the request's session."""

from __future__ import annotations

import asyncio
import collections
import functools
import itertools
import secrets
import sqlite3
import time
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import orjson
import psycopg
import structlog
from fastapi import Depends, Request
from psycopg import AsyncRawCursor
from psycopg.pq import TransactionStatus
from psycopg.rows import namedtuple_row
from sqlalchemy import (
    JSON,
    DateTime,
    Table,
    TypeDecorator,
    bindparam,
    event,
    insert,
    literal_column,
    make_url,
    select,
    union_all,
    update,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.dialects.postgresql.psycopg import PGDialect_psycopg
from sqlalchemy.engine import Dialect, Engine
from sqlalchemy.exc import DBAPIError
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.expression import Select, Update
from sqlmodel import Session, SQLModel, create_engine

from api.config import Settings
from api.errors import ServiceUnavailable

log = structlog.get_logger("rebound.db")

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


# How long a SQLite writer waits for the write lock before giving up.
SQLITE_BUSY_TIMEOUT_MS = 30_000


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
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
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


# --- statements awaited on the event loop (PostgreSQL) --------------------------------
#
# A read-only route runs inline on the event loop (api/http/transaction.py). On SQLite a
# statement is a call into the same process; on PostgreSQL it is a network round trip,
# during which a sync driver blocks the loop and the process serves nobody. The hottest
# reads await their statements instead, on async psycopg connections in autocommit (as
# every read-only session here), so the loop serves other requests while PostgreSQL
# works. On SQLite, and in an app whose lifespan has not run, the same call runs the
# statement on a pooled driver connection of the engine.


class AsyncConnections:
    """Async psycopg connections in autocommit, for awaited reads and `insert_owned_rows`:
    an idle one is reused, else one is opened. How many are in use is bounded by the
    transaction gate.

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


def async_connections(settings: Settings) -> AsyncConnections | None:
    """The connections of awaited statements on PostgreSQL; None on SQLite."""
    if settings.is_sqlite:
        return None
    url = make_url(settings.database_url).set(drivername="postgresql")
    return AsyncConnections(url.render_as_string(hide_password=False))


async def fetch_all(request: Request, statement: Select[Any], values: dict[str, Any]) -> list[Any]:
    """The rows of `statement` with `values` bound: awaited on PostgreSQL; on SQLite run
    straight on a pooled driver connection, one statement in its own implicit transaction
    (no ORM session, no BEGIN and ROLLBACK: a quarter of the list's time in process).
    Rows are named tuples of the selected columns, with no SQLAlchemy type processing:
    for statements of plain text and number columns and plain values (`_sql_for` refuses
    any other)."""
    reads: AsyncConnections | None = getattr(request.app.state, "async_connections", None)
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
def _sql_for(statement: Select[Any] | Update, dialect: Dialect) -> tuple[str, SQLCompiler]:
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


# --- new rows of a user's data, inserted on the driver ---------------------------------
#
# The busiest write, logging a rejection, is eleven new rows and no reads. Through a
# session it cost three thread hops and six statements through SQLAlchemy's execution,
# three times the work of the rows themselves. Here the rows go straight to the driver,
# on the event loop: on SQLite as plain INSERTs between BEGIN IMMEDIATE and COMMIT (the
# write lock waited for without blocking the loop); on PostgreSQL as one statement, its
# INSERTs in data-modifying CTEs, in one round trip. Either way it is one transaction
# that claims the owner's change numbers while the owner's session is open, as
# `api.models.base.claim_sync_numbers` does for a session.

# A row to insert: its table and its columns' values as the model holds them (aware
# datetimes, JSON as Python objects); columns left out take their defaults.
NewRow = tuple[Table, dict[str, Any]]


async def insert_owned_rows(
    request: Request, *, user_id: str, session_version: int, rows: Sequence[NewRow]
) -> bool:
    """Insert `rows`, in order, in one transaction, if the user's session is still open.

    Each row of a tracked table (one with `sync_seq`) takes the next number of the user's
    change counter, in the order given; the caller sets the rest of the bookkeeping
    (version 1, `updated_at`). Returns False, having written nothing, when the session
    has ended. A lost database raises SQLAlchemy's OperationalError (the app answers 503),
    a broken constraint its IntegrityError.
    """
    writer: SqliteWriter | None = request.app.state.sqlite_writer
    if writer is not None:
        return await _insert_on_sqlite(writer, user_id, session_version, rows)
    connections: AsyncConnections = request.app.state.async_connections
    engine: Engine = request.app.state.engine
    return await _insert_on_postgres(connections, engine.dialect, user_id, session_version, rows)


def tracked(table: Table) -> bool:
    """Whether the table's rows are numbered on their owner's change counter."""
    return "sync_seq" in table.columns


def _users() -> Table:
    return SQLModel.metadata.tables["users"]


@functools.cache
def _claim() -> Update:
    """Claim `claimed` numbers of the user's counter while the token's session is open."""
    users = _users()
    return (
        update(users)
        .where(
            users.c.id == bindparam("user_id"),
            users.c.session_version == bindparam("session_version"),
        )
        .values(sync_seq=users.c.sync_seq + bindparam("claimed"))
        .returning(users.c.sync_seq)
    )


@functools.cache
def _columns(
    table: Table, dialect: Dialect
) -> list[tuple[str, Callable[[], Any], Callable[[Any], Any] | None]]:
    """Each column of the table, in order: its key, its default as a call (its callable,
    its scalar, or None), and its bind processor (datetimes to the driver's form, JSON
    to text ...)."""
    found: list[tuple[str, Callable[[], Any], Callable[[Any], Any] | None]] = []
    for column in table.columns:
        default: Any = column.default
        if default is None:
            make: Callable[[], Any] = functools.partial(lambda: None)
        elif default.is_callable:
            make = functools.partial(default.arg, None)
        else:
            make = functools.partial(lambda value: value, default.arg)
        processor = column.type.dialect_impl(dialect).bind_processor(dialect)
        found.append((column.key, make, processor))
    return found


def _driver_row(
    table: Table, values: dict[str, Any], dialect: Dialect, seen: dict[Any, Any]
) -> list[Any]:
    """The row's values in column order, as the driver takes them: a missing column takes
    its default. The rows of one write share a few timestamps; each is processed once
    (`seen`, one per write)."""
    row = []
    for key, default, processor in _columns(table, dialect):
        value = values[key] if key in values else default()
        if processor is not None:
            if isinstance(value, datetime):
                if (processor, value) not in seen:
                    seen[processor, value] = processor(value)
                value = seen[processor, value]
            else:
                value = processor(value)
        row.append(value)
    return row


# SQLite: the statements one by one on the app's one writer connection, on the loop.


# The writer's commits between its checkpoints. SQLite's own checkpoint (after the
# commit that takes the log past 1,000 pages) would run inside that COMMIT, on the loop,
# and every request would wait while it copies and syncs (up to tens of milliseconds).
CHECKPOINT_EVERY = 64


class SqliteWriter:
    """The one connection of a SQLite app's driver writes, used on the event loop (SQLite
    has one writer at a time, and so does the transaction gate). It waits for the write
    lock asleep on the loop (`_begin_immediate`), and keeps its page cache warm.

    It checkpoints the log itself: every CHECKPOINT_EVERY commits, on a thread, while it
    holds the writer, so that the checkpoint copies the whole log (a checkpoint beside a
    busy writer never catches up) and the next write starts the log over. Meanwhile the
    loop serves everything else, and the next driver write waits for it asleep."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.pooled: Any = None
        self.in_use = asyncio.Lock()
        self.commits = 0
        self.checkpointing: asyncio.Task[None] | None = None

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[Any]:
        async with self.in_use:
            if self.pooled is None:  # a connection of the pool, kept, and configured anew
                self.pooled = self.engine.raw_connection()
                self.pooled.driver_connection.execute("PRAGMA busy_timeout=0")
                self.pooled.driver_connection.execute("PRAGMA wal_autocheckpoint=0")
            yield self.pooled.driver_connection

    def committed(self) -> None:
        """Count a commit; start a checkpoint when one is due."""
        self.commits += 1
        if self.commits >= CHECKPOINT_EVERY and self.checkpointing is None:
            self.commits = 0
            self.checkpointing = asyncio.create_task(self._checkpoint())

    async def _checkpoint(self) -> None:
        try:
            async with self.in_use:
                await asyncio.to_thread(_passive_checkpoint, self.engine)
        except Exception:  # the next one tries again; other writers still checkpoint
            log.exception("sqlite_checkpoint_failed")
        finally:
            self.checkpointing = None

    def close(self) -> None:
        """Close the connection (not back to the pool: it is configured for this alone)."""
        if self.pooled is not None:
            self.pooled.invalidate()
            self.pooled = None


def _passive_checkpoint(engine: Engine) -> None:
    """Copy the log into the database, on a connection of the pool (not the writer's, which
    the loop may close at shutdown while this runs)."""
    connection = engine.raw_connection()
    try:
        cursor = connection.cursor()
        cursor.execute("PRAGMA wal_checkpoint(PASSIVE)")
        cursor.fetchall()
        cursor.close()
    finally:
        connection.close()


def sqlite_writer(settings: Settings, engine: Engine) -> SqliteWriter | None:
    """The writer of driver writes on SQLite; None on PostgreSQL."""
    return SqliteWriter(engine) if settings.is_sqlite else None


async def _insert_on_sqlite(
    writer: SqliteWriter, user_id: str, session_version: int, rows: Sequence[NewRow]
) -> bool:
    dialect = writer.engine.dialect
    driver_error = dialect.loaded_dbapi.Error
    claim_sql, claim = _sql_for(_claim(), dialect)
    claim_params = claim.construct_params(
        {
            "user_id": user_id,
            "session_version": session_version,
            "claimed": sum(tracked(table) for table, _ in rows),
        }
    )
    try:
        async with writer.connection() as connection:
            await _begin_immediate(connection)
            try:
                found = connection.execute(
                    claim_sql, [claim_params[name] for name in claim.positiontup or ()]
                ).fetchone()
                if found is None:
                    return False
                number_tracked_rows(rows, int(found[0]))
                seen: dict[Any, Any] = {}
                for table, group in itertools.groupby(rows, key=lambda row: row[0]):
                    connection.executemany(
                        _sqlite_insert(table, dialect),
                        [_driver_row(table, values, dialect, seen) for _, values in group],
                    )
                connection.execute("COMMIT")
                writer.committed()
            finally:
                if connection.in_transaction:
                    connection.execute("ROLLBACK")
        return True
    except driver_error as exc:
        raise DBAPIError.instance("INSERT (new rows)", None, exc, driver_error) from exc


async def _begin_immediate(connection: Any) -> None:
    """BEGIN IMMEDIATE, waiting for SQLite's write lock as the busy timeout would, but
    asleep on the event loop instead of blocking it."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + SQLITE_BUSY_TIMEOUT_MS / 1000
    pause = 0.001
    while True:
        try:
            connection.execute("BEGIN IMMEDIATE")
            return
        except sqlite3.OperationalError as exc:
            busy = getattr(exc, "sqlite_errorcode", None) == sqlite3.SQLITE_BUSY
            if not busy or loop.time() + pause > deadline:
                raise
        await asyncio.sleep(pause)
        pause = min(pause * 2, 0.05)


def number_tracked_rows(rows: Sequence[NewRow], last: int) -> None:
    """Give the tracked rows their claimed numbers, in order; `last` is the counter's new
    value (the last number claimed)."""
    numbered = [row for table, row in rows if tracked(table)]
    for number, row in enumerate(numbered, start=last - len(numbered) + 1):
        row["sync_seq"] = number


@functools.cache
def _sqlite_insert(table: Table, dialect: Dialect) -> str:
    """The table's INSERT of every column, its values bound in column order."""
    keys = list(table.columns.keys())
    compiled = insert(table).compile(dialect=dialect, column_keys=keys)
    assert list(compiled.positiontup or ()) == keys
    return str(compiled)


# PostgreSQL: one statement, the claim and every INSERT, awaited.


async def _insert_on_postgres(
    connections: AsyncConnections,
    dialect: Dialect,
    user_id: str,
    session_version: int,
    rows: Sequence[NewRow],
) -> bool:
    shape = tuple(
        (table, len(list(group)))
        for table, group in itertools.groupby(rows, key=lambda row: row[0])
    )
    sql, names = _postgres_insert(shape)
    values: dict[str, Any] = {
        "user_id": user_id,
        "session_version": session_version,
        "claimed": sum(tracked(table) for table, _ in rows),
    }
    seen: dict[Any, Any] = {}
    for index, (table, row) in enumerate(rows):
        for key, value in zip(
            table.columns.keys(), _driver_row(table, row, dialect, seen), strict=True
        ):
            values[f"r{index}_{key}"] = value
    params = [values[name] for name in names]
    try:
        async with connections.connection() as connection:
            # A raw cursor: the statement is long, and psycopg would parse it for its
            # placeholders on every execution (it caches only short ones).
            cursor = AsyncRawCursor(connection)
            await cursor.execute(sql, params)
            return await cursor.fetchone() is not None
    except psycopg.Error as exc:
        raise DBAPIError.instance(sql, params, exc, psycopg.Error) from exc


# The statement's placeholders as PostgreSQL writes them ($1, $2 ...), for a raw cursor.
_POSTGRES_NUMBERED = PGDialect_psycopg(paramstyle="numeric_dollar")  # type: ignore[no-untyped-call]


@functools.lru_cache(maxsize=32)
def _postgres_insert(shape: tuple[tuple[Table, int], ...]) -> tuple[str, list[str]]:
    """WITH owner AS (UPDATE users ... RETURNING sync_seq), rows_0 AS (INSERT ... SELECT
    ... FROM owner), ... SELECT sync_seq FROM owner: the claim and every row in one
    statement. With the session ended, `owner` is empty and so is every INSERT.
    """
    owner = _claim().cte("owner")
    claimed = sum(count for table, count in shape if tracked(table))
    inserts = []
    index = numbered = 0
    for position, (table, count) in enumerate(shape):
        selects = []
        for _ in range(count):
            values: list[Any] = []
            for column in table.columns:
                if column.key == "sync_seq" and tracked(table):
                    values.append(owner.c.sync_seq - literal_column(str(claimed - 1 - numbered)))
                else:  # bound with its type, as the driver renders it: %(r0_id)s::VARCHAR
                    values.append(bindparam(f"r{index}_{column.key}", type_=column.type))
            if tracked(table):
                numbered += 1
            selects.append(select(*values).select_from(owner))
            index += 1
        rows = selects[0] if count == 1 else union_all(*selects)
        inserts.append(
            insert(table).from_select(list(table.columns.keys()), rows).cte(f"rows_{position}")
        )
    compiled = select(owner.c.sync_seq).add_cte(*inserts).compile(dialect=_POSTGRES_NUMBERED)
    return str(compiled), list(compiled.positiontup or ())
