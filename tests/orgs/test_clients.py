"""The consent story: what an organisation sees of the users who granted it access,
by API key and by advisor login, and nothing of anyone else."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import update
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from api.db import open_session, utcnow
from api.models import AccessLogEntry, Grant
from tests.factories import (
    UserHandle,
    make_advisor,
    make_api_key,
    make_grant,
    make_org,
    make_rejection,
    make_user,
)

JOURNAL = "Honestly it stung; I had already pictured the commute."


@dataclass
class Org:
    id: str
    owner: UserHandle
    advisor: UserHandle
    key: dict[str, Any]
    key_headers: dict[str, str]

    def readers(self) -> list[tuple[str, dict[str, str]]]:
        """Both ways an organisation reads: its API key and an advisor's login."""
        return [("api key", self.key_headers), ("advisor", self.advisor.headers)]


def make_full_org(client: TestClient, name: str = "Northfield Careers") -> Org:
    owner = make_user(client)
    org = make_org(owner, name=name)
    advisor = make_advisor(client, owner, org["id"])
    key, key_headers = make_api_key(owner, org["id"])
    return Org(org["id"], owner, advisor, key, key_headers)


def reflect(user: UserHandle, rejection_id: str) -> None:
    response = user.client.put(
        f"/v1/rejections/{rejection_id}/reflection/steps/emotions",
        json={
            "status": "done",
            "content": {"emotions": ["disappointed"], "intensity": 4, "journal": JOURNAL},
        },
        headers=user.headers,
    )
    assert response.status_code == 200, response.text


def make_plan(user: UserHandle) -> dict[str, Any]:
    plan = user.client.post(
        "/v1/action-plans", json={"title": "Sharpen system design"}, headers=user.headers
    )
    assert plan.status_code == 201, plan.text
    item = user.client.post(
        f"/v1/action-plans/{plan.json()['id']}/items",
        json={"title": "Mock interview", "kind": "practice"},
        headers=user.headers,
    )
    assert item.status_code == 201, item.text
    return dict(plan.json())


def make_feedback_request(user: UserHandle, rejection_id: str) -> dict[str, Any]:
    response = user.client.post(
        f"/v1/rejections/{rejection_id}/feedback-requests",
        json={"status": "draft"},
        headers=user.headers,
    )
    assert response.status_code == 201, response.text
    return dict(response.json())


@dataclass
class Client:
    user: UserHandle
    rejection: dict[str, Any]


def make_client_with_data(client: TestClient) -> Client:
    user = make_user(client, display_name="Alex Applicant")
    rejection = make_rejection(user)
    reflect(user, rejection["id"])
    return Client(user, rejection)


def base(org: Org, user: UserHandle) -> str:
    return f"/v1/orgs/{org.id}/clients/{user.id}"


def test_clients_are_the_users_with_a_grant_in_force(client: TestClient) -> None:
    org = make_full_org(client)
    alex = make_client_with_data(client)
    bo = make_client_with_data(client)  # never grants
    grant = make_grant(alex.user, org.id, ["rejections:read", "reflections:read"])
    for who, headers in org.readers():
        listed = client.get(f"/v1/orgs/{org.id}/clients", headers=headers)
        assert listed.status_code == 200, who
        items = listed.json()["items"]
        assert [c["id"] for c in items] == [alex.user.id], who
        assert items[0]["display_name"] == "Alex Applicant"
        assert items[0]["grant_id"] == grant["id"]
        assert items[0]["scopes"] == ["rejections:read", "reflections:read"]
        assert items[0]["readable_scopes"] == ["rejections:read", "reflections:read"]
        assert client.get(f"{base(org, bo.user)}/rejections", headers=headers).status_code == 404
    # The organisation's owner reads like an advisor.
    assert client.get(f"/v1/orgs/{org.id}/clients", headers=org.owner.headers).status_code == 200


def test_the_org_sees_exactly_what_the_grant_allows(client: TestClient) -> None:
    org = make_full_org(client)
    alex, bo = make_client_with_data(client), make_client_with_data(client)
    make_feedback_request(alex.user, alex.rejection["id"])
    make_plan(alex.user)
    make_grant(alex.user, org.id, ["rejections:read", "reflections:read"])
    make_grant(bo.user, org.id, ["rejections:read"])
    url = base(org, alex.user)
    rejection_url = f"{url}/rejections/{alex.rejection['id']}"
    for who, headers in org.readers():
        listed = client.get(f"{url}/rejections", headers=headers)
        assert listed.status_code == 200, who
        assert [r["id"] for r in listed.json()["items"]] == [alex.rejection["id"]]
        one = client.get(rejection_url, headers=headers)
        assert one.status_code == 200
        assert one.json()["company"] == alex.rejection["company"]

        reflection = client.get(f"{rejection_url}/reflection", headers=headers)
        assert reflection.status_code == 200, reflection.text
        emotions = next(s for s in reflection.json()["steps"] if s["key"] == "emotions")
        assert emotions["status"] == "done"
        assert emotions["content"]["intensity"] == 4
        assert emotions["content"]["journal"] is None
        assert JOURNAL not in reflection.text

        for path in ("feedback-requests", "action-plans", "insights"):
            refused = client.get(f"{url}/{path}", headers=headers)
            assert refused.status_code == 404, (who, path)
            assert refused.headers["content-type"] == "application/problem+json"
        # Someone else's rejection under this client, and a reflection bo did not share.
        other = f"{url}/rejections/{bo.rejection['id']}"
        assert client.get(other, headers=headers).status_code == 404
        bo_reflection = f"{base(org, bo.user)}/rejections/{bo.rejection['id']}/reflection"
        assert client.get(bo_reflection, headers=headers).status_code == 404


def test_journal_read_lets_the_journal_through(client: TestClient) -> None:
    org = make_full_org(client)
    alex = make_client_with_data(client)
    make_grant(alex.user, org.id, ["reflections:read", "journal:read"])
    url = f"{base(org, alex.user)}/rejections/{alex.rejection['id']}/reflection"
    for _who, headers in org.readers():
        reflection = client.get(url, headers=headers)
        assert reflection.status_code == 200
        emotions = next(s for s in reflection.json()["steps"] if s["key"] == "emotions")
        assert emotions["content"]["journal"] == JOURNAL
        # Without rejections:read the rejection itself stays hidden.
        rejection = f"{base(org, alex.user)}/rejections/{alex.rejection['id']}"
        assert client.get(rejection, headers=headers).status_code == 404


def test_journal_read_alone_shows_no_reflection(client: TestClient) -> None:
    org = make_full_org(client)
    alex = make_client_with_data(client)
    make_grant(alex.user, org.id, ["journal:read"])
    url = f"{base(org, alex.user)}/rejections/{alex.rejection['id']}/reflection"
    assert client.get(url, headers=org.key_headers).status_code == 404


def test_a_key_reads_its_scopes_within_the_grant(client: TestClient) -> None:
    org = make_full_org(client)
    alex = make_client_with_data(client)
    make_grant(alex.user, org.id, ["rejections:read", "reflections:read", "journal:read"])
    _, narrow = make_api_key(
        org.owner, org.id, scopes=["rejections:read", "insights:read"], name="Reports"
    )
    _, no_journal = make_api_key(
        org.owner, org.id, scopes=["reflections:read"], name="Coaching app"
    )
    url = base(org, alex.user)
    rejection_url = f"{url}/rejections/{alex.rejection['id']}"
    listed = client.get(f"/v1/orgs/{org.id}/clients", headers=narrow).json()["items"]
    assert listed[0]["readable_scopes"] == ["rejections:read"]
    assert client.get(f"{url}/rejections", headers=narrow).status_code == 200
    assert client.get(f"{rejection_url}/reflection", headers=narrow).status_code == 404
    assert client.get(f"{url}/insights", headers=narrow).status_code == 404  # not granted

    assert client.get(f"{url}/rejections", headers=no_journal).status_code == 404
    reflection = client.get(f"{rejection_url}/reflection", headers=no_journal)
    assert reflection.status_code == 200
    assert JOURNAL not in reflection.text  # the grant has journal:read, the key does not
    # The advisor reads the whole grant.
    assert JOURNAL in client.get(f"{rejection_url}/reflection", headers=org.advisor.headers).text


def test_feedback_requests_and_action_plans_with_their_scopes(client: TestClient) -> None:
    org = make_full_org(client)
    alex = make_client_with_data(client)
    request = make_feedback_request(alex.user, alex.rejection["id"])
    plan = make_plan(alex.user)
    make_grant(alex.user, org.id, ["feedback:read", "actions:read"])
    url = base(org, alex.user)
    for who, headers in org.readers():
        requests = client.get(f"{url}/feedback-requests", headers=headers)
        assert requests.status_code == 200, (who, requests.text)
        assert [r["id"] for r in requests.json()["items"]] == [request["id"]]
        plans = client.get(f"{url}/action-plans", headers=headers)
        assert plans.status_code == 200, (who, plans.text)
        (only,) = plans.json()["items"]
        assert only["id"] == plan["id"]
        assert [i["title"] for i in only["items"]] == ["Mock interview"]
        assert client.get(f"{url}/rejections", headers=headers).status_code == 404


def test_insights_with_their_scope(client: TestClient) -> None:
    org = make_full_org(client)
    alex = make_client_with_data(client)
    make_grant(alex.user, org.id, ["insights:read"])
    url = f"{base(org, alex.user)}/insights"
    for who, headers in org.readers():
        response = client.get(url, headers=headers)
        assert response.status_code == 200, (who, response.text)
        assert response.json()["totals"]["rejections"] == 1
    later = client.get(url, params={"from": "2099-01-01"}, headers=org.key_headers)
    assert later.json()["totals"]["rejections"] == 0
    backwards = {"from": "2026-12-01", "to": "2026-01-01"}
    assert client.get(url, params=backwards, headers=org.key_headers).status_code == 422
    # Insights need their own scope, whatever else is granted.
    make_grant(alex.user, org.id, ["rejections:read"])
    assert client.get(url, headers=org.key_headers).status_code == 404


def test_revocation_shuts_the_org_out_at_once(client: TestClient) -> None:
    org = make_full_org(client)
    alex = make_client_with_data(client)
    grant = make_grant(alex.user, org.id, ["rejections:read"])
    url = f"{base(org, alex.user)}/rejections"
    assert client.get(url, headers=org.key_headers).status_code == 200
    assert (
        client.delete(f"/v1/me/grants/{grant['id']}", headers=alex.user.headers).status_code == 204
    )
    for _who, headers in org.readers():
        assert client.get(url, headers=headers).status_code == 404
        assert client.get(f"/v1/orgs/{org.id}/clients", headers=headers).json()["items"] == []
    # Granting again opens it again, under the new grant.
    make_grant(alex.user, org.id, ["rejections:read"])
    assert client.get(url, headers=org.key_headers).status_code == 200


def test_an_expired_grant_shuts_the_org_out(client: TestClient, engine: Engine) -> None:
    org = make_full_org(client)
    alex = make_client_with_data(client)
    soon = (utcnow() + timedelta(hours=1)).isoformat()
    grant = make_grant(alex.user, org.id, ["rejections:read"], expires_at=soon)
    url = f"{base(org, alex.user)}/rejections"
    assert client.get(url, headers=org.key_headers).status_code == 200
    with open_session(engine) as session:
        session.execute(
            update(Grant)
            .where(col(Grant.id) == grant["id"])
            .values(expires_at=utcnow() - timedelta(seconds=1))
        )
        session.commit()
    for _who, headers in org.readers():
        assert client.get(url, headers=headers).status_code == 404
        assert client.get(f"/v1/orgs/{org.id}/clients", headers=headers).json()["items"] == []
    assert (
        client.get(f"/v1/me/grants/{grant['id']}", headers=alex.user.headers).json()["status"]
        == "expired"
    )


def test_a_grant_to_one_org_shows_nothing_to_another(client: TestClient) -> None:
    org, other = make_full_org(client), make_full_org(client, name="Elsewhere Coaching")
    alex = make_client_with_data(client)
    make_grant(alex.user, org.id, ["rejections:read"])
    # The other organisation's key and advisor, on their own organisation and on this one.
    for _who, headers in other.readers():
        assert (
            client.get(f"{base(other, alex.user)}/rejections", headers=headers).status_code == 404
        )
        assert client.get(f"{base(org, alex.user)}/rejections", headers=headers).status_code == 404
        assert client.get(f"/v1/orgs/{other.id}/clients", headers=headers).json()["items"] == []
    # A member of no organisation at all, and a user token of the client itself.
    assert (
        client.get(f"{base(org, alex.user)}/rejections", headers=alex.user.headers).status_code
        == 404
    )


def test_a_deleted_rejection_is_gone_for_the_org(client: TestClient) -> None:
    org = make_full_org(client)
    alex = make_client_with_data(client)
    make_grant(alex.user, org.id, ["rejections:read", "reflections:read"])
    url = f"{base(org, alex.user)}/rejections/{alex.rejection['id']}"
    assert client.get(url, headers=org.key_headers).status_code == 200
    deleted = client.delete(f"/v1/rejections/{alex.rejection['id']}", headers=alex.user.headers)
    assert deleted.status_code == 204
    assert client.get(url, headers=org.key_headers).status_code == 404
    assert client.get(f"{url}/reflection", headers=org.key_headers).status_code == 404


def test_every_read_is_in_the_access_log(client: TestClient, db: Session) -> None:
    org = make_full_org(client)
    alex = make_client_with_data(client)
    grant = make_grant(alex.user, org.id, ["rejections:read", "reflections:read"])
    url = base(org, alex.user)
    rejection_url = f"{url}/rejections/{alex.rejection['id']}"
    assert client.get(f"{url}/rejections", headers=org.key_headers).status_code == 200
    assert client.get(f"{rejection_url}/reflection", headers=org.advisor.headers).status_code == 200
    # Refused reads and the client list are not reads of the client's data.
    assert client.get(f"{url}/feedback-requests", headers=org.key_headers).status_code == 404
    assert client.get(f"/v1/orgs/{org.id}/clients", headers=org.key_headers).status_code == 200

    log_url = f"/v1/me/grants/{grant['id']}/access-log"
    entries = client.get(log_url, headers=alex.user.headers).json()["items"]
    assert [
        (e["actor_type"], e["actor_name"], e["method"], e["path"], e["scope"]) for e in entries
    ] == [
        (
            "user",
            org.advisor.data["display_name"] or org.advisor.email,
            "GET",
            f"{rejection_url}/reflection",
            "reflections:read",
        ),
        ("api_key", "CRM sync", "GET", f"{url}/rejections", "rejections:read"),
    ]
    assert entries[0]["actor"] == f"user:{org.advisor.id}"
    assert entries[1]["actor"] == f"api_key:{org.key['id']}"

    first = client.get(log_url, params={"limit": 1}, headers=alex.user.headers).json()
    assert [e["id"] for e in first["items"]] == [entries[0]["id"]]
    rest = client.get(
        log_url, params={"limit": 1, "cursor": first["next_cursor"]}, headers=alex.user.headers
    ).json()
    assert [e["id"] for e in rest["items"]] == [entries[1]["id"]]
    assert rest["next_cursor"] is None
    # Only the client sees its log.
    assert client.get(log_url, headers=org.owner.headers).status_code == 404
    rows = db.exec(select(AccessLogEntry)).all()
    assert {(row.user_id, row.org_id) for row in rows} == {(alex.user.id, org.id)}
