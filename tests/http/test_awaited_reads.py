"""Reads awaited on the event loop (api/db.py `fetch_all`, `AsyncConnections`), and their
SQLite twin on a driver connection."""

from __future__ import annotations

import sqlite3
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, select, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Dialect

from api.db import AsyncConnections, _sql_for
from api.models import Rejection
from tests.factories import make_rejection, make_user


@pytest.mark.parametrize(
    "dialect", [postgresql.dialect(), sqlite.dialect()], ids=["postgresql", "sqlite"]
)
def test_a_statement_that_needs_type_processing_is_refused(dialect: Dialect) -> None:
    """Rows of `fetch_all` skip SQLAlchemy's type processing, on both engines, so a column
    that needs it (a UTC timestamp) must be refused when the statement is first compiled,
    not read wrong."""
    with pytest.raises(TypeError, match="created_at"):
        _sql_for(select(Rejection.created_at), dialect)


def _async_connections(client: TestClient) -> AsyncConnections:
    reads = client.app.state.async_connections  # type: ignore[attr-defined]
    if reads is None:
        pytest.skip("SQLite answers in-process: its reads are not awaited")
    assert isinstance(reads, AsyncConnections)
    return reads


def _backend_pid(reads: AsyncConnections) -> int:
    return int(reads.idle[-1].info.backend_pid)


def test_connections_are_reused_and_a_lost_one_is_a_503_then_recovered(
    client: TestClient, engine: Engine
) -> None:
    user = make_user(client)
    make_rejection(user)
    reads = _async_connections(client)
    assert client.get("/v1/rejections", headers=user.headers).status_code == 200
    first = _backend_pid(reads)
    assert client.get("/v1/rejections", headers=user.headers).status_code == 200
    assert _backend_pid(reads) == first  # the idle connection was used again
    assert len(reads.idle) == 1

    # The server ends that connection, as a PostgreSQL restart would.
    with engine.connect() as admin:
        admin.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": first})
    lost = client.get("/v1/rejections", headers=user.headers)
    assert lost.status_code == 503
    assert lost.headers["content-type"] == "application/problem+json"
    assert lost.headers["retry-after"] == "1"
    assert reads.idle == []  # dropped: the others would fail the same way

    again = client.get("/v1/rejections", headers=user.headers)
    assert again.status_code == 200
    assert len(again.json()["items"]) == 1
    assert _backend_pid(reads) != first


class _FailingDriverConnection:
    """A pooled SQLite connection whose next statement fails in the driver."""

    def __init__(self, real: Any, error: Exception) -> None:
        self.real, self.error = real, error

    def cursor(self) -> Any:
        error = self.error

        class Cursor:
            def execute(self, *_args: Any) -> None:
                raise error

        return Cursor()

    def close(self) -> None:
        self.real.close()


@pytest.mark.parametrize(
    ("error", "status"),
    [
        pytest.param(sqlite3.OperationalError("disk I/O error"), 503, id="operational"),
        pytest.param(sqlite3.DatabaseError("database disk image is malformed"), 500, id="other"),
    ],
)
def test_a_driver_error_of_the_sqlite_read_is_answered_like_any_database_error(
    client: TestClient,
    engine: Engine,
    monkeypatch: pytest.MonkeyPatch,
    error: Exception,
    status: int,
) -> None:
    """SQLite's list reads on a driver connection; its errors still reach the app's
    handlers as SQLAlchemy's: a lost database is a 503 to retry, anything else a 500."""
    if engine.dialect.name != "sqlite":
        pytest.skip("PostgreSQL's list is awaited (the connection test above)")
    user = make_user(client)
    make_rejection(user)
    app_engine = client.app.state.engine  # type: ignore[attr-defined]
    connect = app_engine.raw_connection
    monkeypatch.setattr(
        app_engine, "raw_connection", lambda: _FailingDriverConnection(connect(), error)
    )
    with TestClient(client.app, raise_server_exceptions=False) as answering:
        response = answering.get("/v1/rejections", headers=user.headers)
    assert response.status_code == status
    assert response.headers["content-type"].startswith("application/problem+json")
    if status == 503:
        assert response.headers["retry-after"] == "1"
    monkeypatch.undo()
    assert client.get("/v1/rejections", headers=user.headers).status_code == 200
