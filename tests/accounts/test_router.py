from __future__ import annotations

from fastapi.testclient import TestClient
from sqlmodel import Session, select

from api.models import Profile, Reflection, Rejection, User
from tests.factories import make_rejection, make_user


def test_patch_me_with_if_match(client: TestClient) -> None:
    user = make_user(client)
    etag = client.get("/v1/me", headers=user.headers).headers["ETag"]
    ok = client.patch(
        "/v1/me", json={"display_name": "New"}, headers={**user.headers, "If-Match": etag}
    )
    assert ok.status_code == 200 and ok.json()["display_name"] == "New"
    stale = client.patch(
        "/v1/me", json={"display_name": "Other"}, headers={**user.headers, "If-Match": etag}
    )
    assert stale.status_code == 412
    assert client.get("/v1/me", headers=user.headers).json()["display_name"] == "New"


def test_profile_round_trip_and_validation(client: TestClient) -> None:
    user = make_user(client)
    empty = client.get("/v1/me/profile", headers=user.headers)
    assert empty.status_code == 200
    assert empty.json()["goals"] == [] and empty.json()["values"] == []
    body = {
        "goals": ["Lead a platform team"],
        "values": [{"name": "Learning", "weight": 5}, {"name": "Balance", "weight": 3}],
        "target_roles": ["Staff Engineer"],
    }
    saved = client.put("/v1/me/profile", json=body, headers=user.headers)
    assert saved.status_code == 200
    assert saved.json()["values"] == body["values"]
    bad_weight = client.put(
        "/v1/me/profile",
        json={**body, "values": [{"name": "x", "weight": 9}]},
        headers=user.headers,
    )
    assert bad_weight.status_code == 422
    duplicate = client.put(
        "/v1/me/profile",
        json={**body, "values": [{"name": "Growth", "weight": 2}, {"name": "growth", "weight": 3}]},
        headers=user.headers,
    )
    assert duplicate.status_code == 422
    assert client.get("/v1/me/profile", headers=user.headers).json()["values"] == body["values"]


def test_delete_me_erases_everything_the_user_owns(client: TestClient, db: Session) -> None:
    user = make_user(client)
    other = make_user(client)
    make_rejection(user)
    make_rejection(other)
    assert client.delete("/v1/me", headers=user.headers).status_code == 204
    assert client.get("/v1/me", headers=user.headers).status_code == 401
    assert db.get(User, user.id) is None
    assert db.exec(select(Rejection).where(Rejection.user_id == user.id)).all() == []
    assert db.exec(select(Reflection).where(Reflection.user_id == user.id)).all() == []
    assert db.exec(select(Profile).where(Profile.user_id == user.id)).all() == []
    assert len(db.exec(select(Rejection).where(Rejection.user_id == other.id)).all()) == 1
