"""Rows inserted on the driver (api/db.py `insert_owned_rows`), as the create does: one
transaction that claims the owner's change numbers only while the owner's session is
open, and that waits for locks without holding up the server."""

from __future__ import annotations

import time
from types import SimpleNamespace

import httpx
from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

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
