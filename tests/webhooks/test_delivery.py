"""End to end: events become signed webhooks at a real receiver on loopback, sent by the
worker through the job table, retried, disabled, redelivered and rotated."""

from __future__ import annotations

import threading
from collections import Counter
from datetime import timedelta

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import update
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from api.config import Settings
from api.db import open_session, utcnow
from api.models import Job
from api.models.webhook import WebhookSubscription
from api.webhooks import delivery as delivery_module
from api.webhooks.service import RETRY_SCHEDULE
from tests.factories import make_rejection, make_user
from tests.plugins.smtp import SmtpTestServer, smtp_settings_for
from tests.webhooks.conftest import (
    Receiver,
    deliveries,
    free_port,
    grant,
    make_due,
    make_org,
    revoke,
    run_worker,
    subscribe,
)


def test_a_consenting_users_event_arrives_signed_and_thin(
    client: TestClient, engine: Engine, settings: Settings, receiver: Receiver
) -> None:
    owner, user = make_user(client), make_user(client)
    org_id = make_org(client, owner)
    hook = subscribe(client, owner, org_id, receiver.url, "rejection.created", "grant.created")
    grant_id = grant(client, user, org_id, "rejections:read")
    rejection = make_rejection(user)

    run_worker(engine, settings)

    assert len(receiver.received) == 2
    by_type = {}
    for webhook in receiver.received:
        # The Standard Webhooks reference implementation accepts every one.
        payload = Webhook(hook["secret"]).verify(webhook.body, webhook.headers)
        assert set(payload) == {"type", "timestamp", "data"}
        assert webhook.headers["content-type"] == "application/json"
        by_type[payload["type"]] = payload
    assert by_type["grant.created"]["data"] == {"id": grant_id, "user_id": user.id}
    assert by_type["rejection.created"]["data"] == {"id": rejection["id"], "user_id": user.id}
    # Thin: nothing of the rejection itself travels.
    assert b"Acme" not in b"".join(w.body for w in receiver.received)

    log = deliveries(client, owner, org_id, hook["id"])
    assert {d["webhook_id"] for d in log} == {w.webhook_id for w in receiver.received}
    assert all(d["id"] == d["webhook_id"] for d in log)
    assert {d["status"] for d in log} == {"succeeded"}
    assert all(len(d["attempts"]) == 1 for d in log)
    assert log[0]["attempts"][0]["response_status"] == 204
    assert log[0]["attempts"][0]["error"] is None


def test_a_wrong_secret_or_a_changed_body_does_not_verify(
    client: TestClient, engine: Engine, settings: Settings, receiver: Receiver
) -> None:
    owner, user = make_user(client), make_user(client)
    org_id = make_org(client, owner)
    subscribe(client, owner, org_id, receiver.url, "grant.created")
    grant(client, user, org_id)
    run_worker(engine, settings)
    [webhook] = receiver.received
    other = subscribe(client, owner, org_id, receiver.url, "grant.created")
    with pytest.raises(WebhookVerificationError):
        Webhook(other["secret"]).verify(webhook.body, webhook.headers)


def test_only_events_of_users_whose_grant_covers_them_are_sent(
    client: TestClient, engine: Engine, settings: Settings, receiver: Receiver
) -> None:
    owner = make_user(client)
    org_id, other_org = make_org(client, owner), make_org(client, make_user(client))
    subscribe(
        client, owner, org_id, receiver.url, "rejection.created", "grant.created", "grant.revoked"
    )
    consenting, stranger, elsewhere, narrow = (make_user(client) for _ in range(4))
    grant(client, consenting, org_id, "rejections:read")
    grant(client, elsewhere, other_org, "rejections:read")  # another organisation
    grant(client, narrow, org_id, "feedback:read")  # no rejections:read
    for user in (consenting, stranger, elsewhere, narrow):
        make_rejection(user)

    run_worker(engine, settings)

    seen = sorted((w.json["type"], w.json["data"]["user_id"]) for w in receiver.received)
    assert seen == sorted(
        [
            ("grant.created", consenting.id),
            ("grant.created", narrow.id),  # the grant events go to its organisation always
            ("rejection.created", consenting.id),
        ]
    )


def test_nothing_is_sent_after_revocation_except_the_revocation(
    client: TestClient, engine: Engine, settings: Settings, receiver: Receiver
) -> None:
    owner, user = make_user(client), make_user(client)
    org_id = make_org(client, owner)
    hook = subscribe(
        client,
        owner,
        org_id,
        receiver.url,
        "rejection.created",
        "rejection.updated",
        "grant.created",
        "grant.revoked",
    )
    grant_id = grant(client, user, org_id, "rejections:read")
    run_worker(engine, settings)
    assert [w.json["type"] for w in receiver.received] == ["grant.created"]

    # An event fanned out while the grant held, whose delivery has to wait for a retry...
    receiver.answer(503)
    rejection = make_rejection(user)
    run_worker(engine, settings)
    assert len(receiver.received) == 2
    # ...then an event recorded just before the revocation, not fanned out yet.
    client.patch(
        f"/v1/rejections/{rejection['id']}", json={"notes": "x"}, headers=user.headers
    ).raise_for_status()
    revoke(client, user, grant_id)
    make_rejection(user)  # after the revocation
    make_due(engine)
    run_worker(engine, settings)

    types = [w.json["type"] for w in receiver.received]
    assert types == ["grant.created", "rejection.created", "grant.revoked"]
    log = {d["event_type"]: d for d in deliveries(client, owner, org_id, hook["id"])}
    assert log["rejection.created"]["status"] == "dead"
    assert "grant" in log["rejection.created"]["attempts"][-1]["error"]
    assert "rejection.updated" not in log

    # Redelivering by hand does not get around the revocation either.
    redelivered = client.post(
        f"/v1/orgs/{org_id}/webhooks/{hook['id']}/deliveries/"
        f"{log['rejection.created']['id']}/redeliver",
        headers=owner.headers,
    )
    assert redelivered.status_code == 202
    run_worker(engine, settings)
    assert len(receiver.received) == 3


def test_a_receiver_that_is_down_gets_it_once_it_is_back(
    client: TestClient, engine: Engine, settings: Settings, db: Session
) -> None:
    port = free_port()  # nothing listens there yet
    receiver = Receiver(port)
    owner, user = make_user(client), make_user(client)
    org_id = make_org(client, owner)
    hook = subscribe(client, owner, org_id, receiver.url, "rejection.created")
    grant(client, user, org_id, "rejections:read")
    make_rejection(user)

    before = utcnow()
    run_worker(engine, settings)
    after = utcnow()
    [delivery] = deliveries(client, owner, org_id, hook["id"])
    assert delivery["status"] == "failed"
    assert delivery["attempts"][0]["response_status"] is None
    assert "connect" in delivery["attempts"][0]["error"]
    job = db.exec(select(Job).where(col(Job.kind) == "webhooks.deliver")).one()
    assert job.status == "pending"
    # The first retry is due about 5 s (±20%) after the failed attempt, not at once; the
    # attempt happened somewhere between `before` and `after` (a loaded machine is slow).
    assert before + timedelta(seconds=4) <= job.run_at <= after + timedelta(seconds=6), (
        before,
        job.run_at,
        after,
    )
    assert run_worker(engine, settings) == 0

    make_due(engine)
    run_worker(engine, settings)
    [delivery] = deliveries(client, owner, org_id, hook["id"])
    assert delivery["status"] == "failed" and len(delivery["attempts"]) == 2

    receiver.start()
    try:
        make_due(engine)
        run_worker(engine, settings)
    finally:
        receiver.stop()
    [delivery] = deliveries(client, owner, org_id, hook["id"])
    assert delivery["status"] == "succeeded"
    assert [a["response_status"] for a in delivery["attempts"]] == [None, None, 204]
    assert [w.webhook_id for w in receiver.received] == [delivery["webhook_id"]]


def test_failures_follow_the_schedule_then_the_delivery_dies_and_the_owner_is_told(
    client: TestClient,
    engine: Engine,
    settings: Settings,
    receiver: Receiver,
    smtp_server: SmtpTestServer,
) -> None:
    worker_settings = smtp_settings_for(settings, smtp_server)
    owner, user = make_user(client, display_name="Olive Owner"), make_user(client)
    org_id = make_org(client, owner, name="Northfield Careers")
    hook = subscribe(client, owner, org_id, receiver.url, "rejection.created")
    grant(client, user, org_id, "rejections:read")
    receiver.status = 500
    make_rejection(user)

    run_worker(engine, worker_settings)
    for expected in RETRY_SCHEDULE:
        [delivery] = deliveries(client, owner, org_id, hook["id"])
        assert delivery["status"] == "failed"
        wait = (
            _parse(delivery["next_attempt_at"]) - _parse(delivery["attempts"][-1]["at"])
        ).total_seconds()
        assert 0.79 * expected.total_seconds() <= wait <= 1.21 * expected.total_seconds()
        make_due(engine)
        run_worker(engine, worker_settings)

    [delivery] = deliveries(client, owner, org_id, hook["id"])
    assert delivery["status"] == "dead"
    assert len(delivery["attempts"]) == 10
    assert {a["response_status"] for a in delivery["attempts"]} == {500}
    assert len(receiver.received) == 10
    assert len({w.webhook_id for w in receiver.received}) == 1

    current = client.get(f"/v1/orgs/{org_id}/webhooks/{hook['id']}", headers=owner.headers)
    assert current.json()["enabled"] is False
    assert "10 times" in current.json()["disabled_reason"]

    [message] = smtp_server.wait_for(1)
    assert message["To"].addresses[0].addr_spec == owner.email
    assert "Northfield Careers" in message["Subject"]
    text = message.get_body(preferencelist=("plain",)).get_content()
    assert receiver.url in text and "Olive Owner" in text

    # A disabled subscription gets nothing more.
    make_rejection(user)
    run_worker(engine, worker_settings)
    assert len(receiver.received) == 10


def _parse(value: str):  # type: ignore[no-untyped-def]
    from datetime import datetime

    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def test_410_gone_disables_the_subscription_at_once(
    client: TestClient,
    engine: Engine,
    settings: Settings,
    receiver: Receiver,
    smtp_server: SmtpTestServer,
) -> None:
    worker_settings = smtp_settings_for(settings, smtp_server)
    owner, user = make_user(client), make_user(client)
    org_id = make_org(client, owner)
    hook = subscribe(client, owner, org_id, receiver.url, "rejection.created")
    grant(client, user, org_id, "rejections:read")
    receiver.answer(410)
    make_rejection(user)

    run_worker(engine, worker_settings)

    [delivery] = deliveries(client, owner, org_id, hook["id"])
    assert delivery["status"] == "dead"
    assert delivery["attempts"][0]["response_status"] == 410
    current = client.get(f"/v1/orgs/{org_id}/webhooks/{hook['id']}", headers=owner.headers)
    assert current.json()["enabled"] is False
    assert "410" in current.json()["disabled_reason"]
    make_rejection(user)
    run_worker(engine, worker_settings)
    assert len(receiver.received) == 1  # nothing more goes to it
    assert len(deliveries(client, owner, org_id, hook["id"])) == 1
    smtp_server.wait_for(1)

    # Switched back on by its owner, it hears of new events again.
    enabled = client.patch(
        f"/v1/orgs/{org_id}/webhooks/{hook['id']}", json={"enabled": True}, headers=owner.headers
    )
    assert enabled.json()["enabled"] is True and enabled.json()["disabled_reason"] is None
    make_rejection(user)
    run_worker(engine, worker_settings)
    assert len(receiver.received) == 2


def test_retries_queued_for_a_subscription_switched_off_are_not_sent(
    client: TestClient, engine: Engine, settings: Settings, receiver: Receiver
) -> None:
    owner, user = make_user(client), make_user(client)
    org_id = make_org(client, owner)
    hook = subscribe(client, owner, org_id, receiver.url, "rejection.created")
    grant(client, user, org_id, "rejections:read")
    receiver.answer(500)
    make_rejection(user)
    run_worker(engine, settings)
    switched_off = client.patch(
        f"/v1/orgs/{org_id}/webhooks/{hook['id']}", json={"enabled": False}, headers=owner.headers
    )
    assert switched_off.json()["enabled"] is False
    make_due(engine)
    run_worker(engine, settings)
    assert len(receiver.received) == 1
    [delivery] = deliveries(client, owner, org_id, hook["id"])
    assert delivery["status"] == "dead"
    assert "disabled" in delivery["attempts"][-1]["error"]
    refused = client.post(
        f"/v1/orgs/{org_id}/webhooks/{hook['id']}/deliveries/{delivery['id']}/redeliver",
        headers=owner.headers,
    )
    assert refused.status_code == 409


def test_redirects_are_not_followed(
    client: TestClient, engine: Engine, settings: Settings, receiver: Receiver
) -> None:
    owner, user = make_user(client), make_user(client)
    org_id = make_org(client, owner)
    hook = subscribe(client, owner, org_id, receiver.url, "rejection.created")
    grant(client, user, org_id, "rejections:read")
    receiver.answer(307)
    receiver.location = f"http://127.0.0.1:{receiver.port}/elsewhere"
    make_rejection(user)

    run_worker(engine, settings)

    assert [w.path for w in receiver.received] == ["/hook"]
    [delivery] = deliveries(client, owner, org_id, hook["id"])
    assert delivery["status"] == "failed"
    assert delivery["attempts"][0]["response_status"] == 307
    assert "redirect" in delivery["attempts"][0]["error"]


def test_redelivery_sends_the_same_webhook_id_again(
    client: TestClient, engine: Engine, settings: Settings, receiver: Receiver
) -> None:
    owner, user = make_user(client), make_user(client)
    org_id = make_org(client, owner)
    hook = subscribe(client, owner, org_id, receiver.url, "rejection.created")
    grant(client, user, org_id, "rejections:read")
    make_rejection(user)
    run_worker(engine, settings)
    [delivery] = deliveries(client, owner, org_id, hook["id"])

    response = client.post(
        f"/v1/orgs/{org_id}/webhooks/{hook['id']}/deliveries/{delivery['id']}/redeliver",
        headers=owner.headers,
    )
    assert response.status_code == 202
    assert response.json()["status"] == "pending"
    run_worker(engine, settings)

    first, second = receiver.received
    assert first.webhook_id == second.webhook_id == delivery["webhook_id"]
    assert first.body == second.body
    Webhook(hook["secret"]).verify(second.body, second.headers)
    [delivery] = deliveries(client, owner, org_id, hook["id"])
    assert delivery["status"] == "succeeded"
    assert len(delivery["attempts"]) == 2


def test_a_redelivery_replaces_the_retries_queued_before_it(
    client: TestClient, engine: Engine, settings: Settings, receiver: Receiver
) -> None:
    owner, user = make_user(client), make_user(client)
    org_id = make_org(client, owner)
    hook = subscribe(client, owner, org_id, receiver.url, "rejection.created")
    grant(client, user, org_id, "rejections:read")
    receiver.answer(500)
    make_rejection(user)
    run_worker(engine, settings)  # failed; a retry waits
    [delivery] = deliveries(client, owner, org_id, hook["id"])
    client.post(
        f"/v1/orgs/{org_id}/webhooks/{hook['id']}/deliveries/{delivery['id']}/redeliver",
        headers=owner.headers,
    ).raise_for_status()
    make_due(engine)  # the old retry and the redelivery are both due: one sends
    run_worker(engine, settings)
    assert len(receiver.received) == 2
    [delivery] = deliveries(client, owner, org_id, hook["id"])
    assert delivery["status"] == "succeeded"


def test_after_a_rotation_both_secrets_sign_until_the_grace_period_ends(
    client: TestClient, engine: Engine, settings: Settings, receiver: Receiver
) -> None:
    owner, user = make_user(client), make_user(client)
    org_id = make_org(client, owner)
    hook = subscribe(client, owner, org_id, receiver.url, "rejection.created")
    grant(client, user, org_id, "rejections:read")
    rotated = client.post(
        f"/v1/orgs/{org_id}/webhooks/{hook['id']}/rotate-secret", headers=owner.headers
    )
    assert rotated.status_code == 200
    new_secret = rotated.json()["secret"]
    assert new_secret != hook["secret"] and new_secret.startswith("whsec_")
    make_rejection(user)
    run_worker(engine, settings)

    [webhook] = receiver.received
    assert len(webhook.headers["webhook-signature"].split(" ")) == 2
    Webhook(new_secret).verify(webhook.body, webhook.headers)
    Webhook(hook["secret"]).verify(webhook.body, webhook.headers)

    # After the grace period only the new secret signs.
    with open_session(engine) as session:
        session.execute(
            update(WebhookSubscription).values(previous_secret_expires_at=utcnow() - timedelta(1))
        )
        session.commit()
    make_rejection(user)
    run_worker(engine, settings)
    latest = receiver.received[-1]
    assert len(latest.headers["webhook-signature"].split(" ")) == 1
    Webhook(new_secret).verify(latest.body, latest.headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(hook["secret"]).verify(latest.body, latest.headers)


def test_deleting_the_subscription_drops_its_queued_deliveries(
    client: TestClient, engine: Engine, settings: Settings, receiver: Receiver
) -> None:
    owner, user = make_user(client), make_user(client)
    org_id = make_org(client, owner)
    hook = subscribe(client, owner, org_id, receiver.url, "rejection.created")
    grant(client, user, org_id, "rejections:read")
    receiver.answer(500)
    make_rejection(user)
    run_worker(engine, settings)
    deleted = client.delete(f"/v1/orgs/{org_id}/webhooks/{hook['id']}", headers=owner.headers)
    assert deleted.status_code == 204
    make_due(engine)
    run_worker(engine, settings)
    assert len(receiver.received) == 1


def test_two_workers_deliver_everything_exactly_once(
    client: TestClient, engine: Engine, settings: Settings, receiver: Receiver, db: Session
) -> None:
    owner = make_user(client)
    org_id = make_org(client, owner)
    subscribe(client, owner, org_id, receiver.url, "rejection.created")
    subscribe(client, owner, org_id, receiver.url, "rejection.created")
    users = [make_user(client) for _ in range(3)]
    for user in users:
        grant(client, user, org_id, "rejections:read")
    for _ in range(8):
        for user in users:
            make_rejection(user)
    receiver.delay = 0.01
    # Small batches, so that both workers get a share of the work.
    worker_settings = settings.model_copy(update={"worker_batch_size": 4})
    errors: list[BaseException] = []

    def work(name: str) -> None:
        try:
            run_worker(engine, worker_settings, worker_id=name)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(f"w{i}",)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not errors
    run_worker(engine, settings)  # anything the two left (a worker may stop early)

    counts = Counter(w.webhook_id for w in receiver.received)
    assert len(counts) == 2 * 3 * 8
    assert set(counts.values()) == {1}
    workers = {job.locked_by for job in db.exec(select(Job))}
    assert workers == {None}  # every job finished


def test_a_receiver_that_does_not_answer_in_time_is_a_failure(
    client: TestClient,
    engine: Engine,
    settings: Settings,
    receiver: Receiver,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(delivery_module, "TIMEOUT", httpx.Timeout(0.3))
    owner, user = make_user(client), make_user(client)
    org_id = make_org(client, owner)
    hook = subscribe(client, owner, org_id, receiver.url, "grant.created")
    receiver.delay = 1.0
    grant(client, user, org_id)
    run_worker(engine, settings)
    [logged] = deliveries(client, owner, org_id, hook["id"])
    assert logged["status"] == "failed"
    assert logged["attempts"][0]["error"] == "timed out waiting for the receiver"
    assert logged["attempts"][0]["duration_ms"] < 1000
