"""Rows inserted on the driver (api/db.py `insert_owned_rows`), as the create does: one
transaction that claims the owner's change numbers only while the owner's session is
open, and that waits for locks without holding up the server."""

from __future__ import annotations

import time
from pathlib import Path
from types import SimpleNamespace

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

import api.db
from api.db import insert_owned_rows
from api.models import Rejection, User
from api.rejections.schemas import RejectionCreate
from api.rejections.service import new_rejection
from tests.factories import make_user, rejection_body
from tests.http.live import HeldLock, send_together


def _insert(client: TestClient, user_id: str, session_version: int) -> tuple[bool, str]:
    new = new_rejection(
        owner_id=user_id,
        timezone="UTC",
        data=RejectionCreate.model_validate(rejection_body()),
    )

    async def insert() -> bool:
        request = SimpleNamespace(app=client.app)
        return await insert_owned_rows(
            request,  # type: ignore[arg-type]
            user_id=user_id,
            session_version=session_version,
            rows=new.rows,
        )

    assert client.portal is not None
    return client.portal.call(insert), new.read.id


def test_rows_are_inserted_only_while_the_session_is_open(client: TestClient, db: Session) -> None:
    user = make_user(client)
    counter = db.exec(select(User.sync_seq).where(User.id == user.id)).one()

    # The session ended (a logout everywhere bumps the version): nothing is written,
    # not even the claim on the counter.
    written, rejection_id = _insert(client, user.id, session_version=2)
    assert written is False
    db.rollback()
    assert db.get(Rejection, rejection_id) is None
    assert db.exec(select(User.sync_seq).where(User.id == user.id)).one() == counter

    written, rejection_id = _insert(client, user.id, session_version=1)
    assert written is True
    db.rollback()
    stored = db.get(Rejection, rejection_id)
    assert stored is not None and stored.sync_seq == counter + 1
    assert db.exec(select(User.sync_seq).where(User.id == user.id)).one() == counter + 2


def test_a_create_waiting_for_a_lock_leaves_the_server_answering(
    client: TestClient, engine: Engine, server_url: str, db: Session
) -> None:
    """On SQLite the create waits for the write lock asleep on the event loop; on
    PostgreSQL its statement waits for the user's row, awaited. Either way the same
    process answers other requests meanwhile, and the create goes through after."""
    user = make_user(client)

    def create(http: httpx.Client) -> httpx.Response:
        return http.post(f"{server_url}/v1/rejections", json=rejection_body(), headers=user.headers)

    held = HeldLock(engine, "SELECT id FROM users WHERE id = :id FOR UPDATE", {"id": user.id})
    try:
        pending = send_together([create])
        held.wait_for(1)
        with httpx.Client(timeout=5) as http:
            started = time.monotonic()
            listed = http.get(f"{server_url}/v1/rejections", headers=user.headers)
            assert listed.status_code == 200, listed.text
            assert listed.json()["items"] == []
            assert time.monotonic() - started < 2
        assert not pending.done()
    finally:
        held.release()
    [created] = pending.result(timeout=30)
    assert created.status_code == 201, created.text
    db.rollback()
    assert db.get(Rejection, created.json()["id"]) is not None


def test_sqlite_writer_checkpoints_the_log_and_it_starts_over(
    client: TestClient, engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The writer runs SQLite's checkpoints itself, off the event loop (SQLite's own would
    run inside a COMMIT on it): every CHECKPOINT_EVERY commits it copies the whole log
    into the database, so the next write starts the log over instead of growing it."""
    writer = client.app.state.sqlite_writer  # type: ignore[attr-defined]
    if writer is None:
        pytest.skip("PostgreSQL writes no log of SQLite's kind")
    monkeypatch.setattr(api.db, "CHECKPOINT_EVERY", 3)
    user = make_user(client)
    log = Path(str(engine.url.database) + "-wal")

    def starts() -> int:  # the log header's checkpoint sequence: +1 each time it starts over
        return int.from_bytes(log.read_bytes()[12:16], "big")

    def create() -> None:
        response = client.post("/v1/rejections", json=rejection_body(), headers=user.headers)
        assert response.status_code == 201, response.text

    before = starts()
    for _ in range(3):
        create()
    deadline = time.monotonic() + 10
    while writer.checkpointing is not None and time.monotonic() < deadline:
        time.sleep(0.01)
    assert writer.checkpointing is None
    create()
    assert starts() == before + 1
    assert len(client.get("/v1/rejections", headers=user.headers).json()["items"]) == 4
