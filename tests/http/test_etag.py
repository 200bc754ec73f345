"""Optimistic concurrency: ETags from versions, `If-Match` on writes, no lost updates."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine
from sqlmodel import Session

from api.models import Rejection
from tests.factories import UserHandle, make_rejection, make_user
from tests.http.live import HeldLock, send_together


def test_single_objects_carry_their_version_as_etag(client: TestClient) -> None:
    user = make_user(client)
    rejection = make_rejection(user)
    url = f"/v1/rejections/{rejection['id']}"
    assert client.get(url, headers=user.headers).headers["ETag"] == '"1"'
    client.patch(url, json={"notes": "one"}, headers=user.headers)
    client.patch(url, json={"notes": "two"}, headers=user.headers)
    assert client.get(url, headers=user.headers).headers["ETag"] == '"3"'
    # A write that changes nothing is not a new version.
    same = client.patch(url, json={"notes": "two"}, headers=user.headers)
    assert same.headers["ETag"] == '"3"'
    assert client.get("/v1/me/profile", headers=user.headers).headers["ETag"] == '"1"'
    assert client.get("/v1/me", headers=user.headers).headers["ETag"]


@pytest.mark.parametrize(
    ("if_match", "status"),
    [
        ('"1"', 200),
        ('W/"1"', 200),
        ('"7", "1"', 200),
        ("*", 200),
        ('"2"', 412),
        ('"7", "8"', 412),
        ("1", 412),  # an unquoted tag is no tag
    ],
)
def test_if_match_forms(client: TestClient, if_match: str, status: int) -> None:
    user = make_user(client)
    rejection = make_rejection(user)
    response = client.patch(
        f"/v1/rejections/{rejection['id']}",
        json={"notes": "changed"},
        headers={**user.headers, "If-Match": if_match},
    )
    assert response.status_code == status, response.text
    if status == 412:
        assert response.headers["content-type"] == "application/problem+json"
        assert response.headers["ETag"] == '"1"'  # the current version, to refetch against


def test_stale_if_match_changes_nothing_on_every_write(client: TestClient, db: Session) -> None:
    user = make_user(client)
    rejection = make_rejection(user, notes="original")
    url = f"/v1/rejections/{rejection['id']}"
    client.patch(url, json={"notes": "second"}, headers=user.headers)
    stale = {**user.headers, "If-Match": '"1"'}

    assert client.patch(url, json={"notes": "lost"}, headers=stale).status_code == 412
    assert client.delete(url, headers=stale).status_code == 412
    row = db.get(Rejection, rejection["id"])
    assert row is not None and row.notes == "second" and row.deleted_at is None

    profile = {"goals": ["Lead a team"], "values": [], "target_roles": []}
    assert client.put("/v1/me/profile", json=profile, headers=stale).status_code == 200
    assert client.put("/v1/me/profile", json=profile, headers=stale).status_code == 412

    me_etag = client.get("/v1/me", headers=user.headers).headers["ETag"]
    renamed = client.patch(
        "/v1/me", json={"display_name": "Ada"}, headers={**user.headers, "If-Match": me_etag}
    )
    assert renamed.status_code == 200
    again = client.patch(
        "/v1/me", json={"display_name": "Bob"}, headers={**user.headers, "If-Match": me_etag}
    )
    assert again.status_code == 412
    assert client.get("/v1/me", headers=user.headers).json()["display_name"] == "Ada"

    # And with the current ETag the delete goes through.
    current = client.get(url, headers=user.headers).headers["ETag"]
    deleted = client.delete(url, headers={**user.headers, "If-Match": current})
    assert deleted.status_code == 204


def _concurrent_writes(
    engine: Engine,
    server_url: str,
    lock: tuple[str, dict[str, Any]],
    write: Callable[[httpx.Client], httpx.Response],
    copies: int = 2,
) -> list[int]:
    """Send `copies` of one conditional write at the same moment, queued on a held lock."""
    held = HeldLock(engine, *lock)
    try:
        pending = send_together([write] * copies)
        held.wait_for(copies)
    finally:
        held.release()
    return sorted(response.status_code for response in pending.result(timeout=60))


def test_concurrent_patches_with_one_etag_exactly_one_wins(
    client: TestClient, engine: Engine, server_url: str, db: Session
) -> None:
    user = make_user(client)
    rejection = make_rejection(user)
    url = f"{server_url}/v1/rejections/{rejection['id']}"

    def patch(http: httpx.Client) -> httpx.Response:
        return http.patch(
            url,
            json={"notes": f"from request {id(http)}"},
            headers={**user.headers, "If-Match": '"1"'},
        )

    statuses = _concurrent_writes(
        engine,
        server_url,
        ("SELECT id FROM rejections WHERE id = :id FOR UPDATE", {"id": rejection["id"]}),
        patch,
        copies=3,
    )
    assert statuses == [200, 412, 412]
    row = db.get(Rejection, rejection["id"])
    assert row is not None and row.version == 2


def _user_lock(user: UserHandle) -> tuple[str, dict[str, Any]]:
    return ("SELECT id FROM users WHERE id = :id FOR UPDATE", {"id": user.id})


def test_concurrent_profile_puts_with_one_etag_exactly_one_wins(
    client: TestClient, engine: Engine, server_url: str
) -> None:
    user = make_user(client)
    client.get("/v1/me/profile", headers=user.headers)

    def put(http: httpx.Client) -> httpx.Response:
        return http.put(
            f"{server_url}/v1/me/profile",
            json={"goals": [f"goal {id(http)}"], "values": [], "target_roles": []},
            headers={**user.headers, "If-Match": '"1"'},
        )

    lock = ("SELECT id FROM profiles WHERE user_id = :id FOR UPDATE", {"id": user.id})
    assert _concurrent_writes(engine, server_url, lock, put) == [200, 412]
    assert client.get("/v1/me/profile", headers=user.headers).headers["ETag"] == '"2"'


def test_concurrent_patches_of_me_with_one_etag_exactly_one_wins(
    client: TestClient, engine: Engine, server_url: str
) -> None:
    user = make_user(client)
    etag = client.get("/v1/me", headers=user.headers).headers["ETag"]

    def patch(http: httpx.Client) -> httpx.Response:
        return http.patch(
            f"{server_url}/v1/me",
            json={"display_name": f"name {id(http)}"},
            headers={**user.headers, "If-Match": etag},
        )

    assert _concurrent_writes(engine, server_url, _user_lock(user), patch) == [200, 412]
