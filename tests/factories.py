"""Helpers that make users and their objects through the API, as a client would."""

from __future__ import annotations

import itertools
from typing import Any

from fastapi.testclient import TestClient

from api.security import create_access_token

PASSWORD = "correct horse battery staple"
_counter = itertools.count(1)


class UserHandle:
    """A registered user: its id, e-mail and the headers that authenticate it."""

    def __init__(self, client: TestClient, data: dict[str, Any], token: str) -> None:
        self.client = client
        self.id: str = data["id"]
        self.email: str = data["email"]
        self.data = data
        self.headers = {"Authorization": f"Bearer {token}"}


def make_user(client: TestClient, *, email: str | None = None, **fields: Any) -> UserHandle:
    """Register through the API, then mint an access token (skipping a slow login)."""
    email = email or f"user{next(_counter)}@example.com"
    response = client.post(
        "/v1/auth/register", json={"email": email, "password": PASSWORD, **fields}
    )
    assert response.status_code == 201, response.text
    data = response.json()
    settings = client.app.state.settings  # type: ignore[attr-defined]
    token, _ = create_access_token(settings, user_id=data["id"], session_version=1)
    return UserHandle(client, data, token)


def rejection_body(**fields: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "company": "Acme Corp",
        "role_title": "Backend Engineer",
        "rejected_on": "2026-11-02",
        "applied_on": "2026-10-01",
        "stage": "onsite",
        "reason_code": "other_candidate",
        "contact_name": "Dana Recruiter",
        "contact_email": "dana@acme.example",
    }
    body.update(fields)
    return body


def make_rejection(user: UserHandle, **fields: Any) -> dict[str, Any]:
    response = user.client.post(
        "/v1/rejections", json=rejection_body(**fields), headers=user.headers
    )
    assert response.status_code == 201, response.text
    return dict(response.json())


def make_org(owner: UserHandle, name: str = "Northfield Careers Service") -> dict[str, Any]:
    """An organisation created by `owner` (its first owner)."""
    response = owner.client.post("/v1/orgs", json={"name": name}, headers=owner.headers)
    assert response.status_code == 201, response.text
    return dict(response.json())


def make_api_key(
    owner: UserHandle, org_id: str, *, scopes: list[str] | None = None, name: str = "CRM sync"
) -> tuple[dict[str, Any], dict[str, str]]:
    """A new API key of the organisation, and the headers that authenticate with it."""
    body: dict[str, Any] = {"name": name}
    if scopes is not None:
        body["scopes"] = scopes
    response = owner.client.post(f"/v1/orgs/{org_id}/api-keys", json=body, headers=owner.headers)
    assert response.status_code == 201, response.text
    created = dict(response.json())
    return created, {"Authorization": f"Bearer {created['key']}"}


def make_grant(user: UserHandle, org_id: str, scopes: list[str], **fields: Any) -> dict[str, Any]:
    """`user` lets the organisation read what `scopes` name."""
    response = user.client.post(
        "/v1/me/grants", json={"org_id": org_id, "scopes": scopes, **fields}, headers=user.headers
    )
    assert response.status_code == 201, response.text
    return dict(response.json())


def make_advisor(client: TestClient, owner: UserHandle, org_id: str) -> UserHandle:
    """A new user invited to the organisation as an advisor, who accepted."""
    advisor = make_user(client)
    invite = client.post(
        f"/v1/orgs/{org_id}/invites",
        json={"email": advisor.email, "role": "advisor"},
        headers=owner.headers,
    )
    assert invite.status_code == 201, invite.text
    accepted = client.post(f"/v1/invites/{invite.json()['token']}/accept", headers=advisor.headers)
    assert accepted.status_code == 201, accepted.text
    return advisor
