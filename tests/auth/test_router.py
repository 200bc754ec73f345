from __future__ import annotations

from fastapi.testclient import TestClient
from sqlmodel import Session, select

from api.models import RefreshToken, User
from tests.factories import PASSWORD, make_rejection, make_user


def login(client: TestClient, email: str, password: str = PASSWORD):  # type: ignore[no-untyped-def]
    return client.post("/v1/auth/token", data={"username": email, "password": password})


def test_register_login_and_read_me(client: TestClient) -> None:
    created = client.post(
        "/v1/auth/register",
        json={
            "email": "Ada@Example.com",
            "password": PASSWORD,
            "display_name": "Ada",
            "timezone": "Europe/London",
        },
    )
    assert created.status_code == 201
    assert created.json()["email"] == "ada@example.com"
    assert created.json()["timezone"] == "Europe/London"

    tokens = login(client, "ADA@example.com")
    assert tokens.status_code == 200
    body = tokens.json()
    assert body["token_type"] == "bearer" and body["expires_in"] > 0
    me = client.get("/v1/me", headers={"Authorization": f"Bearer {body['access_token']}"})
    assert me.status_code == 200
    assert me.json()["display_name"] == "Ada"
    assert me.headers["ETag"]


def test_register_refuses_duplicate_email_case_insensitively(client: TestClient) -> None:
    make_user(client, email="sam@example.com")
    again = client.post(
        "/v1/auth/register", json={"email": "SAM@example.com", "password": PASSWORD}
    )
    assert again.status_code == 409
    assert again.headers["content-type"] == "application/problem+json"


def test_register_validates_input(client: TestClient, db: Session) -> None:
    for body, field in [
        ({"email": "not-an-email", "password": PASSWORD}, "email"),
        ({"email": "a@example.com", "password": "short"}, "password"),
        ({"email": "a@example.com", "password": PASSWORD, "timezone": "Mars/Base"}, "timezone"),
        ({"email": "a@example.com", "password": PASSWORD, "admin": True}, "admin"),
    ]:
        response = client.post("/v1/auth/register", json=body)
        assert response.status_code == 422, body
        problem = response.json()
        assert problem["status"] == 422
        assert any(field in error["loc"] for error in problem["errors"]), problem
    assert db.exec(select(User)).all() == []


def test_wrong_password_and_unknown_email_get_the_same_answer(client: TestClient) -> None:
    make_user(client, email="lee@example.com")
    wrong = login(client, "lee@example.com", "wrong password!")
    unknown = login(client, "nobody@example.com", "wrong password!")
    assert wrong.status_code == unknown.status_code == 401
    assert wrong.json()["detail"] == unknown.json()["detail"]
    assert "Bearer" in wrong.headers["WWW-Authenticate"]


def test_login_is_throttled_per_account(client: TestClient, settings) -> None:  # type: ignore[no-untyped-def]
    make_user(client, email="kim@example.com")
    for _ in range(10):
        assert login(client, "kim@example.com", "not the password").status_code == 401
    blocked = login(client, "kim@example.com")  # even the right password waits
    assert blocked.status_code == 429
    assert int(blocked.headers["Retry-After"]) > 0
    assert blocked.headers["content-type"] == "application/problem+json"


def test_refresh_rotates_and_reuse_revokes_the_family(client: TestClient, db: Session) -> None:
    make_user(client, email="ray@example.com")
    first = login(client, "ray@example.com").json()
    second = client.post("/v1/auth/refresh", json={"refresh_token": first["refresh_token"]})
    assert second.status_code == 200
    second_pair = second.json()
    assert second_pair["refresh_token"] != first["refresh_token"]

    # Replaying the used token: refused, and the newer token of the same family dies too.
    replay = client.post("/v1/auth/refresh", json={"refresh_token": first["refresh_token"]})
    assert replay.status_code == 401
    after = client.post("/v1/auth/refresh", json={"refresh_token": second_pair["refresh_token"]})
    assert after.status_code == 401
    assert all(token.revoked_at is not None for token in db.exec(select(RefreshToken)))


def test_logout_ends_the_refresh_token(client: TestClient) -> None:
    make_user(client, email="max@example.com")
    pair = login(client, "max@example.com").json()
    assert (
        client.post("/v1/auth/logout", json={"refresh_token": pair["refresh_token"]}).status_code
        == 204
    )
    assert (
        client.post("/v1/auth/refresh", json={"refresh_token": pair["refresh_token"]}).status_code
        == 401
    )


def test_password_change_ends_every_session(client: TestClient) -> None:
    make_user(client, email="eve@example.com")
    pair = login(client, "eve@example.com").json()
    headers = {"Authorization": f"Bearer {pair['access_token']}"}
    changed = client.patch(
        "/v1/me",
        json={"password": "a brand new password", "current_password": PASSWORD},
        headers=headers,
    )
    assert changed.status_code == 200
    assert client.get("/v1/me", headers=headers).status_code == 401
    assert (
        client.post("/v1/auth/refresh", json={"refresh_token": pair["refresh_token"]}).status_code
        == 401
    )
    assert login(client, "eve@example.com", "a brand new password").status_code == 200


def test_protected_endpoints_need_a_valid_token(client: TestClient) -> None:
    assert client.get("/v1/me").status_code == 401
    assert client.get("/v1/me", headers={"Authorization": "Bearer nonsense"}).status_code == 401
    api_key = client.get("/v1/me", headers={"Authorization": "Bearer rbk_abc"})
    assert api_key.status_code == 401
    assert "organisation" in api_key.json()["detail"]


def test_the_rejections_list_refuses_an_ended_session_with_or_without_rows(
    client: TestClient,
) -> None:
    """The list checks the session inside its own statement (TokenClaims): an ended
    session must be refused whether that statement would have found rows or not."""
    for email, rejections in (("rows@example.com", 3), ("empty@example.com", 0)):
        user = make_user(client, email=email)
        for n in range(rejections):
            make_rejection(user, company=f"Company {n}")
        pair = login(client, email).json()
        headers = {"Authorization": f"Bearer {pair['access_token']}"}
        listed = client.get("/v1/rejections", headers=headers)
        assert listed.status_code == 200
        assert len(listed.json()["items"]) == rejections
        changed = client.patch(
            "/v1/me",
            json={"password": "a brand new password", "current_password": PASSWORD},
            headers=headers,
        )
        assert changed.status_code == 200
        refused = client.get("/v1/rejections?limit=2", headers=headers)
        assert refused.status_code == 401, email
        assert refused.headers["content-type"] == "application/problem+json"
        assert "no longer valid" in refused.json()["detail"]
        fresh = login(client, email, "a brand new password").json()
        again = client.get(
            "/v1/rejections", headers={"Authorization": f"Bearer {fresh['access_token']}"}
        )
        assert again.status_code == 200
        assert len(again.json()["items"]) == rejections
