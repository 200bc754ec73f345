"""Organisations, members, invites, API keys and grants over HTTP."""

from __future__ import annotations

import hashlib
from datetime import timedelta

from fastapi.testclient import TestClient
from sqlalchemy import update
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from api.db import open_session, utcnow
from api.models import (
    ApiKey,
    DomainEvent,
    Grant,
    IdempotencyRecord,
    Job,
    Organisation,
    OrgInvite,
    OrgMember,
)
from api.models.org import SCOPES
from tests.factories import make_advisor, make_api_key, make_grant, make_org, make_user

# Organisations and members


def test_the_creator_owns_the_new_organisation(client: TestClient, db: Session) -> None:
    owner = make_user(client)
    response = client.post("/v1/orgs", json={"name": "Northfield Careers"}, headers=owner.headers)
    assert response.status_code == 201
    org = response.json()
    assert org["name"] == "Northfield Careers"
    assert org["role"] == "owner"
    assert response.headers["Location"] == f"/v1/orgs/{org['id']}"
    assert client.get(f"/v1/orgs/{org['id']}", headers=owner.headers).json()["id"] == org["id"]
    members = client.get(f"/v1/orgs/{org['id']}/members", headers=owner.headers).json()
    assert [(m["user_id"], m["role"], m["email"]) for m in members["items"]] == [
        (owner.id, "owner", owner.email)
    ]
    listed = client.get("/v1/orgs", headers=owner.headers).json()["items"]
    assert [(o["id"], o["role"]) for o in listed] == [(org["id"], "owner")]


def test_bad_organisations_are_refused_and_nothing_is_written(
    client: TestClient, db: Session
) -> None:
    owner = make_user(client)
    for body in ({"name": ""}, {"name": "x" * 201}, {}, {"name": "A", "plan": "gold"}):
        response = client.post("/v1/orgs", json=body, headers=owner.headers)
        assert response.status_code == 422, body
        assert response.headers["content-type"] == "application/problem+json"
    assert db.exec(select(Organisation)).all() == []
    assert client.post("/v1/orgs", json={"name": "A"}).status_code == 401


def test_an_organisation_is_invisible_to_outsiders(client: TestClient) -> None:
    owner, stranger = make_user(client), make_user(client)
    org = make_org(owner)
    for path in ("", "/members", "/api-keys", "/clients"):
        assert (
            client.get(f"/v1/orgs/{org['id']}{path}", headers=stranger.headers).status_code == 404
        )
    invite = client.post(
        f"/v1/orgs/{org['id']}/invites",
        json={"email": stranger.email},
        headers=stranger.headers,
    )
    assert invite.status_code == 404
    assert client.get("/v1/orgs/no-such-org", headers=owner.headers).status_code == 404
    assert client.get("/v1/orgs", headers=stranger.headers).json()["items"] == []


def test_members_are_removed_by_owners_but_never_the_last_owner(client: TestClient) -> None:
    owner = make_user(client)
    org = make_org(owner)
    first, second = make_advisor(client, owner, org["id"]), make_advisor(client, owner, org["id"])
    base = f"/v1/orgs/{org['id']}/members"

    # An advisor may leave, but not remove others; nobody removes the last owner.
    assert client.delete(f"{base}/{second.id}", headers=first.headers).status_code == 403
    assert client.delete(f"{base}/{owner.id}", headers=first.headers).status_code == 403
    last_owner = client.delete(f"{base}/{owner.id}", headers=owner.headers)
    assert last_owner.status_code == 409
    assert "last owner" in last_owner.json()["detail"]
    assert client.delete(f"{base}/{first.id}", headers=first.headers).status_code == 204
    assert client.get(f"/v1/orgs/{org['id']}", headers=first.headers).status_code == 404
    assert client.delete(f"{base}/{second.id}", headers=owner.headers).status_code == 204
    assert client.delete(f"{base}/{second.id}", headers=owner.headers).status_code == 404
    members = client.get(base, headers=owner.headers).json()["items"]
    assert [m["user_id"] for m in members] == [owner.id]


def test_an_owner_can_leave_once_there_is_another_owner(client: TestClient) -> None:
    owner, successor = make_user(client), make_user(client)
    org = make_org(owner)
    invite = client.post(
        f"/v1/orgs/{org['id']}/invites",
        json={"email": successor.email, "role": "owner"},
        headers=owner.headers,
    ).json()
    accepted = client.post(f"/v1/invites/{invite['token']}/accept", headers=successor.headers)
    assert accepted.status_code == 201
    assert accepted.json()["role"] == "owner"
    leave = client.delete(f"/v1/orgs/{org['id']}/members/{owner.id}", headers=owner.headers)
    assert leave.status_code == 204
    assert client.get(f"/v1/orgs/{org['id']}", headers=owner.headers).status_code == 404
    assert client.get(f"/v1/orgs/{org['id']}", headers=successor.headers).json()["role"] == "owner"


# Invites


def test_an_invite_is_single_use_and_only_for_its_addressee(
    client: TestClient, db: Session
) -> None:
    owner, invitee, other = make_user(client), make_user(client), make_user(client)
    org = make_org(owner)
    response = client.post(
        f"/v1/orgs/{org['id']}/invites",
        json={"email": invitee.email.upper()},
        headers=owner.headers,
    )
    assert response.status_code == 201
    invite = response.json()
    assert invite["email"] == invitee.email
    assert invite["role"] == "advisor"
    token = invite["token"]
    assert len(token) >= 40
    # Stored hashed; the e-mail is a job that does not carry the secret.
    row = db.get(OrgInvite, invite["id"])
    assert row is not None
    assert row.token_hash == hashlib.sha256(token.encode()).hexdigest()
    assert timedelta(days=6, hours=23) < row.expires_at - utcnow() <= timedelta(days=7)
    jobs = db.exec(select(Job).where(col(Job.kind) == "orgs.send_invite")).all()
    assert [job.payload for job in jobs] == [{"invite_id": invite["id"]}]
    assert token not in str(jobs[0].payload)

    accept = f"/v1/invites/{token}/accept"
    assert client.post(accept).status_code == 401
    assert client.post(accept, headers=other.headers).status_code == 404
    assert client.post("/v1/invites/rbi_nope/accept", headers=invitee.headers).status_code == 404
    joined = client.post(accept, headers=invitee.headers)
    assert joined.status_code == 201
    assert (joined.json()["user_id"], joined.json()["role"]) == (invitee.id, "advisor")
    again = client.post(accept, headers=invitee.headers)
    assert again.status_code == 410
    assert client.get(f"/v1/orgs/{org['id']}", headers=invitee.headers).json()["role"] == "advisor"
    assert client.get(f"/v1/orgs/{org['id']}", headers=other.headers).status_code == 404


def test_an_expired_invite_is_gone(client: TestClient, engine: Engine) -> None:
    owner, invitee = make_user(client), make_user(client)
    org = make_org(owner)
    invite = client.post(
        f"/v1/orgs/{org['id']}/invites", json={"email": invitee.email}, headers=owner.headers
    ).json()
    with open_session(engine) as session:
        session.execute(
            update(OrgInvite)
            .where(col(OrgInvite.id) == invite["id"])
            .values(expires_at=utcnow() - timedelta(seconds=1))
        )
        session.commit()
    response = client.post(f"/v1/invites/{invite['token']}/accept", headers=invitee.headers)
    assert response.status_code == 410
    assert "expired" in response.json()["detail"]
    assert client.get(f"/v1/orgs/{org['id']}", headers=invitee.headers).status_code == 404


def test_only_owners_invite_and_members_are_not_invited_twice(
    client: TestClient, db: Session
) -> None:
    owner = make_user(client)
    org = make_org(owner)
    advisor = make_advisor(client, owner, org["id"])
    url = f"/v1/orgs/{org['id']}/invites"
    assert (
        client.post(url, json={"email": "x@example.com"}, headers=advisor.headers).status_code
        == 403
    )
    assert client.post(url, json={"email": advisor.email}, headers=owner.headers).status_code == 409
    for body in (
        {"email": "not an address"},
        {"email": "a@example.com", "role": "admin"},
        {"email": "a@example.com", "note": "hi"},
    ):
        assert client.post(url, json=body, headers=owner.headers).status_code == 422, body
    assert len(db.exec(select(OrgInvite)).all()) == 1  # the advisor's own, accepted


# API keys


def test_an_api_key_is_shown_once_and_stored_hashed(client: TestClient, db: Session) -> None:
    owner = make_user(client)
    org = make_org(owner)
    created, key_headers = make_api_key(owner, org["id"])
    secret = created["key"]
    assert secret.startswith("rbk_")
    assert len(secret) >= 4 + 43  # 256 random bits, base64url
    assert created["prefix"] == secret[:12]
    assert created["scopes"] == list(SCOPES)
    assert created["last_used_at"] is None

    listed = client.get(f"/v1/orgs/{org['id']}/api-keys", headers=owner.headers).json()["items"]
    assert [k["id"] for k in listed] == [created["id"]]
    assert "key" not in listed[0]
    row = db.get(ApiKey, created["id"])
    assert row is not None
    assert row.key_hash == hashlib.sha256(secret.encode()).hexdigest()
    assert secret not in str(row.model_dump())

    # The key reads its organisation, and records when it was used.
    read = client.get(f"/v1/orgs/{org['id']}", headers=key_headers)
    assert read.status_code == 200
    assert read.json()["role"] is None
    db.rollback()  # a new snapshot: see what the request committed
    used = db.get(ApiKey, created["id"])
    assert used is not None
    assert used.last_used_at is not None


def test_scoped_keys_and_bad_key_requests(client: TestClient, db: Session) -> None:
    owner = make_user(client)
    org = make_org(owner)
    url = f"/v1/orgs/{org['id']}/api-keys"
    scoped = client.post(
        url,
        json={"name": "Reports", "scopes": ["insights:read", "rejections:read", "insights:read"]},
        headers=owner.headers,
    )
    assert scoped.status_code == 201
    assert scoped.json()["scopes"] == ["rejections:read", "insights:read"]
    for body in (
        {"name": "x", "scopes": []},
        {"name": "x", "scopes": ["rejections:write"]},
        {"name": ""},
        {"name": "x", "secret": "mine"},
    ):
        assert client.post(url, json=body, headers=owner.headers).status_code == 422, body
    assert len(db.exec(select(ApiKey)).all()) == 1


def test_keys_are_managed_by_owner_logins_only(client: TestClient) -> None:
    owner = make_user(client)
    org = make_org(owner)
    advisor = make_advisor(client, owner, org["id"])
    created, key_headers = make_api_key(owner, org["id"])
    url = f"/v1/orgs/{org['id']}/api-keys"
    assert client.get(url, headers=advisor.headers).status_code == 403
    assert client.post(url, json={"name": "x"}, headers=advisor.headers).status_code == 403
    assert client.delete(f"{url}/{created['id']}", headers=advisor.headers).status_code == 403
    assert client.get(url, headers=key_headers).status_code == 401
    assert client.post(url, json={"name": "x"}, headers=key_headers).status_code == 401
    members = f"/v1/orgs/{org['id']}/members/{advisor.id}"
    assert client.delete(members, headers=key_headers).status_code == 401


def test_a_key_never_acts_as_a_user(client: TestClient) -> None:
    owner = make_user(client)
    org = make_org(owner)
    _, key_headers = make_api_key(owner, org["id"])
    for method, path in (
        ("GET", "/v1/me"),
        ("GET", "/v1/rejections"),
        ("GET", "/v1/me/grants"),
        ("POST", "/v1/orgs"),
    ):
        response = client.request(method, path, headers=key_headers, json={"name": "x"})
        assert response.status_code == 401, (method, path)
        assert response.headers["content-type"] == "application/problem+json"


def test_a_revoked_or_unknown_key_is_401_and_another_orgs_key_404(
    client: TestClient, db: Session
) -> None:
    owner, other_owner = make_user(client), make_user(client)
    org, other_org = make_org(owner), make_org(other_owner, name="Elsewhere")
    created, key_headers = make_api_key(owner, org["id"])
    _, other_headers = make_api_key(other_owner, other_org["id"])
    assert client.get(f"/v1/orgs/{org['id']}", headers=other_headers).status_code == 404
    assert client.get(f"/v1/orgs/{org['id']}/clients", headers=other_headers).status_code == 404

    revoke = f"/v1/orgs/{org['id']}/api-keys/{created['id']}"
    assert client.delete(revoke, headers=other_owner.headers).status_code == 404
    assert (
        client.delete(
            f"/v1/orgs/{other_org['id']}/api-keys/{created['id']}", headers=other_owner.headers
        ).status_code
        == 404
    )
    assert client.delete(revoke, headers=owner.headers).status_code == 204
    assert client.delete(revoke, headers=owner.headers).status_code == 204
    refused = client.get(f"/v1/orgs/{org['id']}", headers=key_headers)
    assert refused.status_code == 401
    assert "WWW-Authenticate" in refused.headers
    listed = client.get(f"/v1/orgs/{org['id']}/api-keys", headers=owner.headers).json()["items"]
    assert listed[0]["revoked_at"] is not None

    forged = {"Authorization": "Bearer rbk_" + "A" * 43}
    assert client.get(f"/v1/orgs/{org['id']}", headers=forged).status_code == 401
    assert client.get(f"/v1/orgs/{org['id']}").status_code == 401


def test_creating_a_key_is_idempotent(client: TestClient, db: Session) -> None:
    owner = make_user(client)
    org = make_org(owner)
    headers = {**owner.headers, "Idempotency-Key": "key-1"}
    url = f"/v1/orgs/{org['id']}/api-keys"
    first = client.post(url, json={"name": "CRM"}, headers=headers)
    again = client.post(url, json={"name": "CRM"}, headers=headers)
    assert first.status_code == again.status_code == 201
    assert again.headers["Idempotency-Replayed"] == "true"
    assert first.json()["key"] == again.json()["key"]
    assert len(db.exec(select(ApiKey)).all()) == 1
    assert len(db.exec(select(IdempotencyRecord)).all()) == 1


# Grants


def test_granting_and_revoking_records_events(client: TestClient, db: Session) -> None:
    owner, user = make_user(client), make_user(client)
    org = make_org(owner)
    response = client.post(
        "/v1/me/grants",
        json={"org_id": org["id"], "scopes": ["rejections:read", "insights:read"]},
        headers=user.headers,
    )
    assert response.status_code == 201
    grant = response.json()
    assert grant["status"] == "active"
    assert grant["org_name"] == org["name"]
    assert grant["scopes"] == ["rejections:read", "insights:read"]
    assert response.headers["ETag"] == '"1"'
    url = f"/v1/me/grants/{grant['id']}"
    assert client.get(url, headers=user.headers).json()["id"] == grant["id"]

    stale = client.delete(url, headers={**user.headers, "If-Match": '"9"'})
    assert stale.status_code == 412
    assert client.delete(url, headers=user.headers).status_code == 204
    assert client.delete(url, headers=user.headers).status_code == 204  # once is enough
    revoked = client.get(url, headers=user.headers).json()
    assert revoked["status"] == "revoked"
    assert revoked["revoked_at"] is not None
    events = db.exec(select(DomainEvent).order_by(col(DomainEvent.id))).all()
    assert [(e.type, e.subject_id, e.user_id) for e in events] == [
        ("grant.created", grant["id"], user.id),
        ("grant.revoked", grant["id"], user.id),
    ]


def test_a_new_grant_replaces_the_one_in_force(client: TestClient, db: Session) -> None:
    owner, user = make_user(client), make_user(client)
    org = make_org(owner)
    first = make_grant(user, org["id"], ["rejections:read"])
    second = make_grant(user, org["id"], ["rejections:read", "feedback:read"])
    grants = client.get("/v1/me/grants", headers=user.headers).json()["items"]
    assert [(g["id"], g["status"]) for g in grants] == [
        (second["id"], "active"),
        (first["id"], "revoked"),
    ]
    in_force = db.exec(
        select(Grant).where(col(Grant.org_id) == org["id"], col(Grant.revoked_at).is_(None))
    ).all()
    assert [g.id for g in in_force] == [second["id"]]
    types = [e.type for e in db.exec(select(DomainEvent).order_by(col(DomainEvent.id)))]
    assert types == ["grant.created", "grant.revoked", "grant.created"]


def test_bad_grants_are_refused_and_nothing_is_written(client: TestClient, db: Session) -> None:
    owner, user = make_user(client), make_user(client)
    org = make_org(owner)
    past = (utcnow() - timedelta(days=1)).isoformat()
    cases = [
        ({"org_id": org["id"], "scopes": []}, "scopes"),
        ({"org_id": org["id"], "scopes": ["everything"]}, "scopes"),
        ({"org_id": org["id"]}, "scopes"),
        ({"org_id": "nope", "scopes": ["rejections:read"]}, "org_id"),
        ({"org_id": org["id"], "scopes": ["rejections:read"], "expires_at": past}, "expires_at"),
        (
            {"org_id": org["id"], "scopes": ["rejections:read"], "expires_at": "2999-01-01T00:00"},
            "expires_at",
        ),
        ({"org_id": org["id"], "scopes": ["rejections:read"], "forever": True}, "forever"),
    ]
    for body, field in cases:
        response = client.post("/v1/me/grants", json=body, headers=user.headers)
        assert response.status_code == 422, (field, response.text)
        locs = [part for error in response.json()["errors"] for part in error["loc"]]
        assert field in locs, (field, response.json())
    assert db.exec(select(Grant)).all() == []
    assert db.exec(select(DomainEvent)).all() == []


def test_another_users_grant_is_404(client: TestClient) -> None:
    owner, user, other = make_user(client), make_user(client), make_user(client)
    org = make_org(owner)
    grant = make_grant(user, org["id"], ["rejections:read"])
    url = f"/v1/me/grants/{grant['id']}"
    assert client.get(url, headers=other.headers).status_code == 404
    assert client.delete(url, headers=other.headers).status_code == 404
    assert client.get(f"{url}/access-log", headers=other.headers).status_code == 404
    assert client.get("/v1/me/grants", headers=other.headers).json()["items"] == []
    assert client.get(url, headers=user.headers).json()["status"] == "active"


def test_members_of_an_org_are_kept_to_their_membership(client: TestClient, db: Session) -> None:
    owner = make_user(client)
    org = make_org(owner)
    make_advisor(client, owner, org["id"])
    roles = db.exec(select(OrgMember.role).where(col(OrgMember.org_id) == org["id"])).all()
    assert sorted(roles) == ["advisor", "owner"]
