"""Safe retries: a POST with an Idempotency-Key runs once per user and key."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import httpx
from fastapi.testclient import TestClient
from sqlalchemy import func, update
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from api.config import Settings
from api.db import open_session, utcnow
from api.http.idempotency import RETENTION
from api.models import IdempotencyRecord, Reflection, Rejection
from api.worker.maintenance import prune
from api.worker.registry import WorkerContext
from tests.factories import UserHandle, make_user, rejection_body
from tests.http.live import HeldLock, send_together


def _count(db: Session, user: UserHandle) -> int:
    db.rollback()  # a fresh snapshot: the requests committed since the last look
    return db.exec(
        select(func.count()).select_from(Rejection).where(Rejection.user_id == user.id)
    ).one()


def _post(client: TestClient, user: UserHandle, key: str, **fields: object) -> httpx.Response:
    return client.post(
        "/v1/rejections",
        json=rejection_body(**fields),
        headers={**user.headers, "Idempotency-Key": key},
    )


def test_a_retry_replays_the_first_response_and_creates_nothing(
    client: TestClient, db: Session
) -> None:
    user = make_user(client)
    first = _post(client, user, "create-acme-1")
    assert first.status_code == 201
    assert "Idempotency-Replayed" not in first.headers
    again = _post(client, user, "create-acme-1")
    assert again.status_code == 201
    assert again.json() == first.json()
    assert again.headers["Idempotency-Replayed"] == "true"
    assert again.headers["Location"] == first.headers["Location"]
    assert again.headers["ETag"] == first.headers["ETag"]
    assert again.headers["content-type"] == "application/json"
    assert again.headers["X-Request-ID"] != first.headers["X-Request-ID"]
    assert _count(db, user) == 1
    assert db.exec(select(func.count()).select_from(Reflection)).one() == 1
    # Replayed even after the object changed: it is the first response, not the object now.
    client.patch(first.headers["Location"], json={"notes": "later"}, headers=user.headers)
    assert _post(client, user, "create-acme-1").json()["notes"] is None
    # Without a key, every POST creates.
    client.post("/v1/rejections", json=rejection_body(), headers=user.headers)
    assert _count(db, user) == 2


def test_the_same_key_with_another_request_is_422(client: TestClient, db: Session) -> None:
    user = make_user(client)
    assert _post(client, user, "k1", company="Acme").status_code == 201
    other_body = _post(client, user, "k1", company="Globex")
    assert other_body.status_code == 422
    assert other_body.headers["content-type"] == "application/problem+json"
    assert other_body.json()["errors"][0]["loc"] == ["header", "Idempotency-Key"]
    assert other_body.json()["errors"][0]["type"] == "idempotency_key_reused"
    other_path = client.put(
        "/v1/me/profile",
        json={"goals": [], "values": [], "target_roles": []},
        headers={**user.headers, "Idempotency-Key": "k1"},
    )
    assert other_path.status_code == 200  # keys are for POST; other methods ignore them
    assert _count(db, user) == 1


def test_keys_belong_to_one_user(client: TestClient, db: Session) -> None:
    alice, bob = make_user(client), make_user(client)
    from_alice = _post(client, alice, "shared-key")
    from_bob = _post(client, bob, "shared-key")
    assert from_alice.status_code == from_bob.status_code == 201
    assert from_alice.json()["id"] != from_bob.json()["id"]
    assert "Idempotency-Replayed" not in from_bob.headers
    assert _count(db, alice) == _count(db, bob) == 1


def test_a_failed_request_stores_nothing_and_can_be_retried(
    client: TestClient, db: Session
) -> None:
    user = make_user(client)
    invalid = _post(client, user, "retry-me", stage="lunch")  # schema error
    assert invalid.status_code == 422
    future = _post(client, user, "retry-me", rejected_on="2999-01-01")  # a rule in the service
    assert future.status_code == 422
    db.rollback()
    assert db.exec(select(IdempotencyRecord)).all() == []
    fixed = _post(client, user, "retry-me")
    assert fixed.status_code == 201
    assert _count(db, user) == 1
    unauthenticated = client.post(
        "/v1/rejections", json=rejection_body(), headers={"Idempotency-Key": "anon"}
    )
    assert unauthenticated.status_code == 401
    db.rollback()
    assert len(db.exec(select(IdempotencyRecord)).all()) == 1


def test_malformed_keys_are_422(client: TestClient, db: Session) -> None:
    user = make_user(client)
    for key in ("x" * 256, "tab\there"):
        response = _post(client, user, key)
        assert response.status_code == 422, key
        assert response.json()["errors"][0]["loc"] == ["header", "Idempotency-Key"]
    assert _count(db, user) == 0


def test_the_same_key_while_the_first_is_running(
    client: TestClient, engine: Engine, server_url: str, db: Session
) -> None:
    """The second waits for the first to commit and gets its response replayed: SQLite
    runs one writer at a time; on PostgreSQL both wait for the user's row, and the second
    finds the key taken when it inserts its record."""
    user = make_user(client)

    def post(http: httpx.Client) -> httpx.Response:
        return http.post(
            f"{server_url}/v1/rejections",
            json=rejection_body(),
            headers={**user.headers, "Idempotency-Key": "double-tap"},
        )

    # Both requests queue behind the test's lock on the user's row (its change counter).
    held = HeldLock(engine, "SELECT id FROM users WHERE id = :id FOR UPDATE", {"id": user.id})
    try:
        pending = send_together([post, post])
        held.wait_for(2)
    finally:
        held.release()
    responses = pending.result(timeout=60)
    assert [response.status_code for response in responses] == [201] * len(responses)
    replayed = [r for r in responses if r.headers.get("Idempotency-Replayed") == "true"]
    assert len(replayed) == len(responses) - 1
    with httpx.Client(timeout=30) as http:
        retry = post(http)
    assert retry.status_code == 201 and retry.headers["Idempotency-Replayed"] == "true"
    assert retry.json() == responses[0].json()
    assert _count(db, user) == 1


def test_concurrent_requests_with_one_key_create_once(
    client: TestClient, server_url: str, db: Session
) -> None:
    user = make_user(client)

    def post(http: httpx.Client) -> httpx.Response:
        return http.post(
            f"{server_url}/v1/rejections",
            json=rejection_body(),
            headers={**user.headers, "Idempotency-Key": "burst"},
        )

    responses = send_together([post] * 4).result(timeout=60)
    statuses = sorted(response.status_code for response in responses)
    assert statuses.count(201) >= 1
    assert set(statuses) <= {201, 409}
    created = {response.json()["id"] for response in responses if response.status_code == 201}
    assert len(created) == 1
    assert _count(db, user) == 1


def test_keys_are_kept_a_day_and_pruned_after_retention(
    client: TestClient, engine: Engine, settings: Settings, db: Session
) -> None:
    assert timedelta(hours=24) <= RETENTION
    user = make_user(client)
    _post(client, user, "old")
    _post(client, user, "recent")
    with open_session(engine) as session:
        session.execute(
            update(IdempotencyRecord)
            .where(col(IdempotencyRecord.key) == "old")
            .values(created_at=utcnow() - RETENTION - timedelta(minutes=1))
        )
        session.execute(
            update(IdempotencyRecord)
            .where(col(IdempotencyRecord.key) == "recent")
            .values(created_at=utcnow() - timedelta(hours=23))
        )
        session.commit()
    asyncio.run(prune(WorkerContext(engine=engine, settings=settings, worker_id="t")))
    keys = {record.key for record in db.exec(select(IdempotencyRecord))}
    assert keys == {"recent"}
    # A pruned key is a new key again.
    assert "Idempotency-Replayed" not in _post(client, user, "old").headers
    assert _post(client, user, "recent").headers["Idempotency-Replayed"] == "true"
