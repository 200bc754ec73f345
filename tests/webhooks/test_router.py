"""The webhook API: subscriptions managed by an organisation's owners, and the delivery log."""

from __future__ import annotations

import base64
from datetime import datetime, timedelta

from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from api.config import Settings
from api.db import open_session, utcnow
from api.models import OrgMember
from api.models.webhook import WebhookDelivery, WebhookSubscription
from api.webhooks.service import MAX_SUBSCRIPTIONS_PER_ORG
from tests.factories import make_rejection, make_user
from tests.webhooks.conftest import (
    Receiver,
    deliveries,
    grant,
    make_org,
    run_worker,
    subscribe,
)

URL = "http://127.0.0.1:9/hook"  # never called in these tests


def test_create_shows_the_secret_once(client: TestClient) -> None:
    owner = make_user(client)
    org_id = make_org(client, owner)
    response = client.post(
        f"/v1/orgs/{org_id}/webhooks",
        json={"url": URL, "events": ["grant.revoked", "rejection.created", "grant.revoked"]},
        headers=owner.headers,
    )
    assert response.status_code == 201
    body = response.json()
    assert body["url"] == URL
    assert body["events"] == ["rejection.created", "grant.revoked"]  # spec order, no repeats
    assert body["enabled"] is True and body["org_id"] == org_id
    assert body["secret"].startswith("whsec_")
    assert len(base64.b64decode(body["secret"].removeprefix("whsec_"))) in range(24, 33)
    assert response.headers["Location"] == f"/v1/orgs/{org_id}/webhooks/{body['id']}"
    assert response.headers["ETag"] == '"1"'

    one = client.get(f"/v1/orgs/{org_id}/webhooks/{body['id']}", headers=owner.headers)
    assert one.status_code == 200 and "secret" not in one.json()
    listed = client.get(f"/v1/orgs/{org_id}/webhooks", headers=owner.headers).json()
    assert [hook["id"] for hook in listed["items"]] == [body["id"]]
    assert "secret" not in listed["items"][0] and listed["next_cursor"] is None


def test_bad_subscriptions_are_refused_and_nothing_is_written(
    client: TestClient, db: Session
) -> None:
    owner = make_user(client)
    org_id = make_org(client, owner)
    cases = [
        ({"url": URL, "events": ["rejection.deleted"]}, "events"),
        ({"url": URL, "events": ["*"]}, "events"),
        ({"url": URL, "events": []}, "events"),
        ({"url": URL}, "events"),
        ({"events": ["grant.created"]}, "url"),
        ({"url": "not a url", "events": ["grant.created"]}, "url"),
        ({"url": "ftp://127.0.0.1/x", "events": ["grant.created"]}, "url"),
        ({"url": URL, "events": ["grant.created"], "secret": "whsec_mine"}, "secret"),
        ({"url": URL, "events": ["grant.created"], "enabled": False}, "enabled"),
    ]
    for body, field in cases:
        response = client.post(f"/v1/orgs/{org_id}/webhooks", json=body, headers=owner.headers)
        assert response.status_code == 422, (body, response.text)
        assert response.headers["content-type"] == "application/problem+json"
        locs = [part for error in response.json()["errors"] for part in error["loc"]]
        assert field in locs, (field, response.json())
    assert db.exec(select(WebhookSubscription)).all() == []


def test_only_owners_manage_webhooks(client: TestClient, engine: Engine) -> None:
    owner, advisor, stranger = make_user(client), make_user(client), make_user(client)
    org_id = make_org(client, owner)
    other_owner = make_user(client)
    other_org = make_org(client, other_owner)
    with open_session(engine) as session:
        session.add(OrgMember(org_id=org_id, user_id=advisor.id, role="advisor"))
        session.commit()
    hook = subscribe(client, owner, org_id, URL, "grant.created")
    key = client.post(
        f"/v1/orgs/{org_id}/api-keys", json={"name": "sync"}, headers=owner.headers
    ).json()["key"]
    base = f"/v1/orgs/{org_id}/webhooks"
    paths = [
        ("GET", base),
        ("POST", base),
        ("GET", f"{base}/{hook['id']}"),
        ("PATCH", f"{base}/{hook['id']}"),
        ("DELETE", f"{base}/{hook['id']}"),
        ("POST", f"{base}/{hook['id']}/rotate-secret"),
        ("GET", f"{base}/{hook['id']}/deliveries"),
    ]
    body = {"url": URL, "events": ["grant.created"]}
    for method, path in paths:
        json = body if method == "POST" and path == base else {"enabled": False}
        kwargs = {"json": json} if method in ("POST", "PATCH") else {}
        assert client.request(method, path, **kwargs).status_code == 401
        assert client.request(method, path, headers=advisor.headers, **kwargs).status_code == 403
        for outsider in (stranger, other_owner):
            response = client.request(method, path, headers=outsider.headers, **kwargs)
            assert response.status_code == 404, (method, path, response.text)
        bearer = {"Authorization": f"Bearer {key}"}
        assert client.request(method, path, headers=bearer, **kwargs).status_code == 401
    # Another organisation's owner cannot reach the hook through their own organisation.
    theirs = f"/v1/orgs/{other_org}/webhooks/{hook['id']}"
    assert client.get(theirs, headers=other_owner.headers).status_code == 404
    assert client.get(f"{theirs}/deliveries", headers=other_owner.headers).status_code == 404
    current = client.get(f"{base}/{hook['id']}", headers=owner.headers).json()
    assert current["enabled"] is True


def test_patch_changes_what_it_is_given_and_honours_if_match(client: TestClient) -> None:
    owner = make_user(client)
    org_id = make_org(client, owner)
    hook = subscribe(client, owner, org_id, URL, "grant.created")
    path = f"/v1/orgs/{org_id}/webhooks/{hook['id']}"

    changed = client.patch(
        path,
        json={"events": ["feedback_request.sent", "grant.created"], "url": URL + "2"},
        headers={**owner.headers, "If-Match": '"1"'},
    )
    assert changed.status_code == 200
    assert changed.json()["events"] == ["feedback_request.sent", "grant.created"]
    assert changed.json()["url"] == URL + "2"
    assert changed.headers["ETag"] == '"2"'

    stale = client.patch(
        path, json={"enabled": False}, headers={**owner.headers, "If-Match": '"1"'}
    )
    assert stale.status_code == 412
    for bad in ({"events": None}, {"url": None}, {"enabled": None}, {"events": ["x.y"]}):
        assert client.patch(path, json=bad, headers=owner.headers).status_code == 422, bad
    off = client.patch(path, json={"enabled": False}, headers=owner.headers).json()
    assert off["enabled"] is False and off["disabled_at"] is not None
    assert client.get(path, headers=owner.headers).json()["events"] == [
        "feedback_request.sent",
        "grant.created",
    ]


def test_rotation_returns_a_new_secret_with_a_day_of_grace(client: TestClient) -> None:
    owner = make_user(client)
    org_id = make_org(client, owner)
    hook = subscribe(client, owner, org_id, URL, "grant.created")
    rotated = client.post(
        f"/v1/orgs/{org_id}/webhooks/{hook['id']}/rotate-secret", headers=owner.headers
    )
    assert rotated.status_code == 200
    body = rotated.json()
    assert body["secret"].startswith("whsec_") and body["secret"] != hook["secret"]
    grace = datetime.fromisoformat(body["previous_secret_expires_at"]) - utcnow()
    assert timedelta(hours=23, minutes=59) < grace <= timedelta(hours=24)
    again = client.get(f"/v1/orgs/{org_id}/webhooks/{hook['id']}", headers=owner.headers)
    assert "secret" not in again.json()


def test_delete_removes_the_subscription(client: TestClient) -> None:
    owner = make_user(client)
    org_id = make_org(client, owner)
    hook = subscribe(client, owner, org_id, URL, "grant.created")
    path = f"/v1/orgs/{org_id}/webhooks/{hook['id']}"
    assert client.delete(path, headers=owner.headers).status_code == 204
    assert client.get(path, headers=owner.headers).status_code == 404
    assert client.delete(path, headers=owner.headers).status_code == 404


def test_an_organisation_has_a_bounded_number_of_subscriptions(
    client: TestClient, engine: Engine
) -> None:
    owner = make_user(client)
    org_id = make_org(client, owner)
    with open_session(engine) as session:
        for _ in range(MAX_SUBSCRIPTIONS_PER_ORG):
            session.add(
                WebhookSubscription(org_id=org_id, url=URL, events=["grant.created"], secret="x")
            )
        session.commit()
    response = client.post(
        f"/v1/orgs/{org_id}/webhooks",
        json={"url": URL, "events": ["grant.created"]},
        headers=owner.headers,
    )
    assert response.status_code == 409


def test_the_delivery_log_pages_filters_and_hides_other_hooks(
    client: TestClient, engine: Engine, settings: Settings, receiver: Receiver, db: Session
) -> None:
    owner, user = make_user(client), make_user(client)
    org_id = make_org(client, owner)
    hook = subscribe(client, owner, org_id, receiver.url, "rejection.created")
    other = subscribe(client, owner, org_id, receiver.url, "grant.created")
    grant(client, user, org_id, "rejections:read")
    run_worker(engine, settings)  # grant.created, to the other subscription
    receiver.answer(500)
    for _ in range(3):
        make_rejection(user)
    run_worker(engine, settings)

    base = f"/v1/orgs/{org_id}/webhooks/{hook['id']}/deliveries"
    first = client.get(f"{base}?limit=2", headers=owner.headers).json()
    assert len(first["items"]) == 2 and first["next_cursor"]
    second = client.get(
        f"{base}?limit=2&cursor={first['next_cursor']}", headers=owner.headers
    ).json()
    assert len(second["items"]) == 1 and second["next_cursor"] is None
    everything = first["items"] + second["items"]
    assert {d["event_type"] for d in everything} == {"rejection.created"}
    assert {d["subscription_id"] for d in everything} == {hook["id"]}
    assert sorted(d["status"] for d in everything) == ["failed", "succeeded", "succeeded"]
    failed = client.get(f"{base}?status=failed", headers=owner.headers).json()["items"]
    assert [d["status"] for d in failed] == ["failed"]
    assert failed[0]["attempts"] == [
        {
            "at": failed[0]["attempts"][0]["at"],
            "response_status": 500,
            "error": "the receiver answered 500",
            "duration_ms": failed[0]["attempts"][0]["duration_ms"],
        }
    ]
    assert failed[0]["next_attempt_at"] is not None
    assert client.get(f"{base}?status=lost", headers=owner.headers).status_code == 422

    one = client.get(f"{base}/{failed[0]['id']}", headers=owner.headers)
    assert one.status_code == 200 and one.json()["id"] == failed[0]["id"]
    # A delivery of the subscription is not one of the other subscription's.
    grant_delivery = db.exec(
        select(WebhookDelivery).where(WebhookDelivery.subscription_id == other["id"])
    ).one()
    assert client.get(f"{base}/{grant_delivery.id}", headers=owner.headers).status_code == 404
    redeliver = f"{base}/{grant_delivery.id}/redeliver"
    assert client.post(redeliver, headers=owner.headers).status_code == 404
    assert deliveries(client, owner, org_id, other["id"])[0]["event_type"] == "grant.created"
