"""The rules under the webhooks: who hears of what, the retry schedule, the payload."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine
from sqlmodel import col, select

from api.config import Settings
from api.db import open_session, utcnow
from api.events import EVENT_TYPES, record_event
from api.models import DomainEvent, Grant, Job
from api.models.webhook import WebhookDelivery, WebhookSubscription
from api.webhooks import service
from api.webhooks.service import EVENT_SCOPES, RETRY_SCHEDULE, retry_delay
from tests.factories import make_user
from tests.webhooks.conftest import grant, make_org, revoke, run_worker

URL = "http://127.0.0.1:9/hook"


def _subscribe_directly(engine: Engine, org_id: str, events: list[str]) -> str:
    with open_session(engine) as session:
        subscription = WebhookSubscription(org_id=org_id, url=URL, events=events, secret="x")
        session.add(subscription)
        session.commit()
        return subscription.id


def _record(engine: Engine, type: str, user_id: str, subject_id: str) -> str:
    with open_session(engine) as session:
        event = record_event(session, type=type, user_id=user_id, subject_id=subject_id)
        session.commit()
        return event.id


def _fan_out(engine: Engine, event_id: str) -> int:
    with open_session(engine) as session:
        added = service.fan_out(session=session, event_id=event_id)
        session.commit()
        return added


def test_every_event_type_maps_to_the_scope_the_spec_names() -> None:
    assert EVENT_SCOPES == {
        "rejection.created": "rejections:read",
        "rejection.updated": "rejections:read",
        "reflection.completed": "reflections:read",
        "feedback_request.sent": "feedback:read",
        "feedback_request.responded": "feedback:read",
        "feedback_request.closed": "feedback:read",
        "action_item.completed": "actions:read",
        "grant.created": None,
        "grant.revoked": None,
    }
    assert set(EVENT_SCOPES) == set(EVENT_TYPES)


def test_each_scope_lets_its_own_events_through_and_no_others(
    client: TestClient, engine: Engine
) -> None:
    owner, user = make_user(client), make_user(client)
    org_id = make_org(client, owner)
    everything = [t for t in EVENT_TYPES if not t.startswith("grant.")]
    _subscribe_directly(engine, org_id, everything)
    for scope in ("rejections:read", "reflections:read", "feedback:read", "actions:read"):
        grant_id = grant(client, user, org_id, scope)
        heard = {
            event_type
            for event_type in everything
            if _fan_out(engine, _record(engine, event_type, user.id, "subject"))
        }
        assert heard == {t for t in everything if EVENT_SCOPES[t] == scope}, scope
        revoke(client, user, grant_id)


def test_fanning_out_twice_adds_nothing(client: TestClient, engine: Engine) -> None:
    owner, user = make_user(client), make_user(client)
    org_id = make_org(client, owner)
    _subscribe_directly(engine, org_id, ["rejection.created"])
    _subscribe_directly(engine, org_id, ["rejection.created", "rejection.updated"])
    grant(client, user, org_id, "rejections:read")
    event_id = _record(engine, "rejection.created", user.id, "r1")
    assert _fan_out(engine, event_id) == 2
    assert _fan_out(engine, event_id) == 0  # a fan-out job run again after a crash
    with open_session(engine, write=False) as session:
        assert len(session.exec(select(WebhookDelivery)).all()) == 2
        jobs = session.exec(select(Job).where(col(Job.kind) == "webhooks.deliver")).all()
        assert len(jobs) == 2


def test_an_expired_grant_hears_nothing(client: TestClient, engine: Engine) -> None:
    owner, user = make_user(client), make_user(client)
    org_id = make_org(client, owner)
    _subscribe_directly(engine, org_id, ["rejection.created", "grant.created"])
    grant_id = grant(client, user, org_id, "rejections:read")
    with open_session(engine) as session:
        row = session.get(Grant, grant_id)
        assert row is not None
        row.expires_at = utcnow() - timedelta(seconds=1)
        session.commit()
    assert _fan_out(engine, _record(engine, "rejection.created", user.id, "r1")) == 0
    assert _fan_out(engine, _record(engine, "grant.created", user.id, grant_id)) == 0


def test_grant_events_go_only_to_the_grants_organisation(
    client: TestClient, engine: Engine
) -> None:
    owner, user = make_user(client), make_user(client)
    mine, theirs = make_org(client, owner), make_org(client, owner, name="Other")
    _subscribe_directly(engine, mine, ["grant.created", "grant.revoked"])
    other_hook = _subscribe_directly(engine, theirs, ["grant.created", "grant.revoked"])
    grant(client, user, theirs, "rejections:read")
    grant_id = grant(client, user, mine, "rejections:read")
    revoke(client, user, grant_id)
    with open_session(engine, write=False) as session:
        events = session.exec(
            select(DomainEvent).where(col(DomainEvent.subject_id) == grant_id)
        ).all()
    added = {event.type: _fan_out(engine, event.id) for event in events}
    # The creation is not announced once the grant is revoked; the revocation is.
    assert added == {"grant.created": 0, "grant.revoked": 1}
    with open_session(engine, write=False) as session:
        to_other = session.exec(
            select(WebhookDelivery).where(col(WebhookDelivery.subscription_id) == other_hook)
        ).all()
    assert to_other == []


def test_retry_delays_follow_the_schedule_within_twenty_percent() -> None:
    for tries, base in enumerate(RETRY_SCHEDULE, start=1):
        for _ in range(50):
            delay = retry_delay(tries)
            assert 0.8 * base <= delay <= 1.2 * base
    assert RETRY_SCHEDULE[0] == timedelta(seconds=5)
    assert timedelta(days=3) <= sum(RETRY_SCHEDULE, timedelta()) <= timedelta(days=3, hours=6)


def test_the_payload_is_thin() -> None:
    event = DomainEvent(type="rejection.created", user_id="u1", subject_id="r1")
    body = json.loads(service.payload_of(event))
    assert body == {
        "type": "rejection.created",
        "timestamp": event.occurred_at.isoformat().replace("+00:00", "Z"),
        "data": {"id": "r1", "user_id": "u1"},
    }
    assert body["timestamp"].endswith("Z")


def test_the_previous_secret_signs_only_during_its_grace() -> None:
    now = utcnow()
    subscription = WebhookSubscription(org_id="o", url=URL, events=[], secret="new")
    assert service.signing_secrets(subscription, now) == ["new"]
    subscription.previous_secret = "old"
    subscription.previous_secret_expires_at = now + timedelta(hours=1)
    assert service.signing_secrets(subscription, now) == ["new", "old"]
    assert service.signing_secrets(subscription, now + timedelta(hours=2)) == ["new"]


def test_finished_deliveries_leave_the_log_after_thirty_days(
    client: TestClient, engine: Engine
) -> None:
    owner, user = make_user(client), make_user(client)
    org_id = make_org(client, owner)
    _subscribe_directly(engine, org_id, ["rejection.created"])
    grant(client, user, org_id, "rejections:read")
    for _ in range(3):
        _fan_out(engine, _record(engine, "rejection.created", user.id, "r"))
    old = utcnow() - timedelta(days=31)
    with open_session(engine) as session:
        rows = session.exec(select(WebhookDelivery).order_by(col(WebhookDelivery.id))).all()
        for row, status in zip(rows, ["succeeded", "dead", "failed"], strict=True):
            row.status, row.updated_at = status, old
        session.commit()
        kept = rows[2].id
    with open_session(engine) as session:
        service.prune_delivery_log(session=session, now=utcnow())
        session.commit()
    with open_session(engine, write=False) as session:
        assert [row.id for row in session.exec(select(WebhookDelivery))] == [kept]


def _fan_out_scene(client: TestClient, engine: Engine) -> tuple[list[str], set[tuple[str, str]]]:
    """Events of two users for two organisations; the events' ids and the (event,
    subscription) pairs that should get a delivery."""
    owner, user, stranger = make_user(client), make_user(client), make_user(client)
    first, second = make_org(client, owner), make_org(client, owner, name="Other")
    rejections = _subscribe_directly(engine, first, ["rejection.created"])
    grants = _subscribe_directly(engine, first, ["rejection.created", "grant.created"])
    with open_session(engine) as session:
        off = WebhookSubscription(
            org_id=first, url=URL, events=["rejection.created"], secret="x", enabled=False
        )
        session.add(off)
        session.commit()
    feedback = _subscribe_directly(engine, second, ["feedback_request.sent", "grant.revoked"])
    kept = grant(client, user, first, "rejections:read")
    revoked = grant(client, user, second, "feedback:read")
    revoke(client, user, revoked)
    r1 = _record(engine, "rejection.created", user.id, "r1")
    r2 = _record(engine, "rejection.created", user.id, "r2")
    _record(engine, "feedback_request.sent", user.id, "f1")  # its grant is revoked
    _record(engine, "reflection.completed", user.id, "x1")  # no grant covers it
    _record(engine, "rejection.created", stranger.id, "s1")  # no grant at all
    with open_session(engine, write=False) as session:
        events = session.exec(select(DomainEvent).order_by(col(DomainEvent.id))).all()
    by_subject = {(event.type, event.subject_id): event.id for event in events}
    expected = {
        (r1, rejections),
        (r1, grants),
        (r2, rejections),
        (r2, grants),
        (by_subject["grant.created", kept], grants),
        (by_subject["grant.revoked", revoked], feedback),
    }
    return [event.id for event in events], expected


def _delivered(engine: Engine) -> set[tuple[str, str]]:
    with open_session(engine, write=False) as session:
        rows = session.exec(select(WebhookDelivery)).all()
        jobs = session.exec(select(Job).where(col(Job.kind) == "webhooks.deliver")).all()
    assert sorted(str(job.payload["delivery_id"]) for job in jobs) == sorted(r.id for r in rows)
    return {(row.event_id, row.subscription_id) for row in rows}


def test_a_batch_of_events_fans_out_like_one_at_a_time(client: TestClient, engine: Engine) -> None:
    event_ids, expected = _fan_out_scene(client, engine)
    with open_session(engine) as session:
        one_by_one = [service.fan_out(session=session, event_id=i) for i in event_ids]
        session.flush()
        pairs = {
            (row.event_id, row.subscription_id) for row in session.exec(select(WebhookDelivery))
        }
        session.rollback()
    assert pairs == expected
    # The same events at once, one of them twice and one that is gone.
    batch = [*event_ids, event_ids[0], "no-such-event"]
    with open_session(engine) as session:
        added = service.fan_out_many(session=session, event_ids=batch)
        session.commit()
    assert added == [*one_by_one, 0, 0]
    assert _delivered(engine) == expected
    with open_session(engine) as session:  # a batch run again after a crash
        assert service.fan_out_many(session=session, event_ids=batch) == [0] * len(batch)
        session.commit()
    assert _delivered(engine) == expected


def test_the_worker_fans_its_claimed_events_out_together(
    client: TestClient, engine: Engine, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    _event_ids, expected = _fan_out_scene(client, engine)

    def one_at_a_time(**_kwargs: object) -> int:
        raise AssertionError("the batch handler should have fanned these out")

    monkeypatch.setattr(service, "fan_out", one_at_a_time)
    run_worker(engine, settings)
    assert _delivered(engine) == expected
    with open_session(engine, write=False) as session:
        fan_outs = session.exec(select(Job).where(col(Job.kind) == "webhooks.fan_out")).all()
    assert fan_outs and {job.status for job in fan_outs} == {"done"}
