"""A real server for the concurrency tests (fixture `server_url`): the test app under uvicorn on loopback.

TestClient runs one request at a time through a portal; these tests need requests that
truly overlap, each on its own connection and database transaction.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi import FastAPI
from sqlalchemy import text
from sqlalchemy.engine import Engine

from api.cli import SERVER_OPTIONS


class _ThreadedServer(uvicorn.Server):
    def install_signal_handlers(self) -> None:  # the main thread keeps its own
        return None


@pytest.fixture
def server_url(app: FastAPI) -> Iterator[str]:
    """The base URL of the test app served by uvicorn in a thread, for one test."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    # No lifespan: the `client` fixture of the same test runs the app's lifespan.
    config = uvicorn.Config(
        app, lifespan="off", log_level="warning", access_log=False, loop=SERVER_OPTIONS["loop"]
    )
    server = _ThreadedServer(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the server did not start"
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=15)
        sock.close()


def send_together(
    requests: list[Callable[[httpx.Client], httpx.Response]],
) -> Future[list[httpx.Response]]:
    """Start the requests at once, each from its own thread and connection."""
    barrier = threading.Barrier(len(requests))

    def run(request: Callable[[httpx.Client], httpx.Response]) -> httpx.Response:
        with httpx.Client(timeout=60) as http:
            barrier.wait()
            return request(http)

    def run_all() -> list[httpx.Response]:
        with ThreadPoolExecutor(len(requests)) as pool:
            return list(pool.map(run, requests))

    outer = ThreadPoolExecutor(1)
    future = outer.submit(run_all)
    outer.shutdown(wait=False)
    return future


class HeldLock:
    """A database lock held by the test, so that requests queue behind it together.

    On PostgreSQL: a row lock (`SELECT … FOR UPDATE`) on the rows `statement` selects;
    `waiters()` counts the requests blocked on it. On SQLite: the database write lock.
    """

    def __init__(self, engine: Engine, statement: str, params: dict[str, Any]) -> None:
        self.engine = engine
        self.postgres = engine.dialect.name == "postgresql"
        # On SQLite the engine begins with BEGIN IMMEDIATE: the write lock, taken up front.
        self.connection = engine.connect().execution_options(sqlite_begin="IMMEDIATE")
        self.connection.execute(text(statement if self.postgres else "SELECT 1"), params)

    def waiters(self) -> int:
        if not self.postgres:
            return 0
        with self.engine.connect() as probe:
            return int(
                probe.execute(
                    text(
                        "SELECT count(*) FROM pg_stat_activity "
                        "WHERE datname = current_database() AND wait_event_type = 'Lock'"
                    )
                ).scalar_one()
            )

    def wait_for(self, count: int, timeout: float = 15) -> None:
        """Until `count` requests wait on the lock (on SQLite: a moment for them to queue)."""
        if not self.postgres:
            time.sleep(0.5)
            return
        deadline = time.monotonic() + timeout
        while self.waiters() < count:
            assert time.monotonic() < deadline, "the requests never reached the lock"
            time.sleep(0.02)

    def release(self) -> None:
        self.connection.commit()
        self.connection.close()
