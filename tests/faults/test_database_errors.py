"""A database that goes away is a 503 the client may retry, wherever the error surfaces.

The restart test (test_database_restart.py) shows it end to end on PostgreSQL, but some
of its paths are a matter of timing (a connection cut while the session closes, after the
route's own error handling). Here each kind of error is raised on purpose from a route, on
either engine: the handlers in api/errors.py must answer 503 problem+json with
Retry-After, and any other database error stays a logged 500.
"""

from __future__ import annotations

from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError


class _DriverError(Exception):
    """Stands for the driver's own exception that SQLAlchemy wraps."""


CUT = _DriverError("server closed the connection unexpectedly")

UNREACHABLE = [
    pytest.param(OperationalError("SELECT 1", {}, CUT), id="operational"),
    pytest.param(
        DBAPIError("ROLLBACK", {}, CUT, connection_invalidated=True), id="connection-invalidated"
    ),
    pytest.param(PoolTimeoutError("QueuePool limit reached"), id="pool-timeout"),
]


def _client_raising(app: FastAPI, error: Exception) -> TestClient:
    def fail() -> Any:
        raise error

    app.add_api_route("/test-database-error", fail, methods=["GET"])
    return TestClient(app, raise_server_exceptions=False)


@pytest.mark.parametrize("error", UNREACHABLE)
def test_lost_database_is_503(app: FastAPI, error: Exception) -> None:
    with _client_raising(app, error) as client:
        response = client.get("/test-database-error")
    assert response.status_code == 503
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.headers["retry-after"] == "1"
    assert response.json()["status"] == 503


def test_other_database_errors_stay_500(app: FastAPI) -> None:
    error = IntegrityError("INSERT", {}, _DriverError("duplicate key"))
    with _client_raising(app, error) as client:
        response = client.get("/test-database-error")
    assert response.status_code == 500
    assert response.headers["content-type"].startswith("application/problem+json")
