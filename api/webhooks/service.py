"""Webhooks: subscriptions, fanning events out to them, and the delivery log.

An event reaches an organisation only while the user's grant to it is in force and
covers the event's scope; that is checked when the event is fanned out and again just
before every attempt, so nothing is sent after a revocation (except `grant.revoked`,
which tells the organisation about it).
"""

from __future__ import annotations

import json
import random
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import and_, delete, or_
from sqlmodel import Session, col, func, select

from api.config import Settings
from api.db import utcnow
from api.errors import Conflict, NotFound, Unprocessable
from api.events import EVENT_TYPES
from api.http.pagination import paginate
from api.models import DomainEvent, Grant, Organisation, OrgMember
from api.models.webhook import (
    DeliveryStatus,
    WebhookAttempt,
    WebhookDelivery,
    WebhookSubscription,
)
from api.orgs.service import grant_status
from api.webhooks.schemas import WebhookCreate, WebhookUpdate
from api.webhooks.signing import new_secret
from api.webhooks.ssrf import UnsafeTarget, check_target
from api.worker.queue import enqueue

# The scope a grant must hold for an organisation to hear of each event; None: always
# (the grant events go to the grant's own organisation).
EVENT_SCOPES: dict[str, str | None] = {
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
assert set(EVENT_SCOPES) == set(EVENT_TYPES), "every event type needs its scope"

# The waits between tries: the first retry about 5 s after the first try, the last about
# three days after it; each with ±20% jitter so failed receivers are not hit in step.
RETRY_SCHEDULE = (
    timedelta(seconds=5),
    timedelta(minutes=5),
    timedelta(minutes=30),
    timedelta(hours=2),
    timedelta(hours=5),
    timedelta(hours=10),
    timedelta(hours=14),
    timedelta(hours=20),
    timedelta(hours=24),
)
MAX_TRIES = len(RETRY_SCHEDULE) + 1
JITTER = 0.2
SECRET_GRACE = timedelta(hours=24)
# Finished deliveries (and their attempts) stay in the log this long.
LOG_RETENTION = timedelta(days=30)
MAX_SUBSCRIPTIONS_PER_ORG = 20


def retry_delay(tries: int) -> timedelta:
    """The wait after the `tries`-th failed try (1-based), jittered by ±20%."""
    base = RETRY_SCHEDULE[tries - 1]
    return base * random.uniform(1 - JITTER, 1 + JITTER)


# Subscriptions


def _checked_url(url: str, settings: Settings) -> str:
    try:
        check_target(url, allow_private=settings.webhook_allow_private_targets)
    except UnsafeTarget as exc:
        raise Unprocessable(f"The webhook URL cannot be used: {exc}.", loc=["body", "url"]) from exc
    return url


def create_subscription(
    *,
    session: Session,
    org: Organisation,
    data: WebhookCreate,
    settings: Settings,
    created_by: str | None,
) -> WebhookSubscription:
    """Subscribe a URL to some events; the new secret is on the returned row."""
    url = _checked_url(str(data.url), settings)
    count = session.exec(
        select(func.count())
        .select_from(WebhookSubscription)
        .where(col(WebhookSubscription.org_id) == org.id)
    ).one()
    if count >= MAX_SUBSCRIPTIONS_PER_ORG:
        raise Conflict(
            f"An organisation can have at most {MAX_SUBSCRIPTIONS_PER_ORG} webhook "
            "subscriptions; delete one first."
        )
    subscription = WebhookSubscription.model_validate(
        {"url": url, "events": data.events},
        update={"org_id": org.id, "secret": new_secret(), "created_by": created_by},
    )
    session.add(subscription)
    session.flush()
    return subscription


def list_subscriptions(
    *, session: Session, org: Organisation, limit: int, cursor: str | None
) -> tuple[list[WebhookSubscription], str | None]:
    """The organisation's subscriptions, newest first."""
    statement = select(WebhookSubscription).where(col(WebhookSubscription.org_id) == org.id)
    return paginate(session, statement, col(WebhookSubscription.id), limit=limit, cursor=cursor)


def get_subscription(
    *, session: Session, org: Organisation, hook_id: str, lock: bool = False
) -> WebhookSubscription:
    """One of the organisation's subscriptions, or 404."""
    statement = select(WebhookSubscription).where(
        col(WebhookSubscription.id) == hook_id, col(WebhookSubscription.org_id) == org.id
    )
    subscription = session.exec(statement.with_for_update() if lock else statement).first()
    if subscription is None:
        raise NotFound("There is no webhook subscription with this id.")
    return subscription


def _touch(subscription: WebhookSubscription, now: datetime) -> None:
    subscription.version += 1
    subscription.updated_at = now


def update_subscription(
    *,
    session: Session,
    subscription: WebhookSubscription,
    data: WebhookUpdate,
    settings: Settings,
) -> WebhookSubscription:
    """Change the URL, the events or whether it is enabled; enabling clears why it was off."""
    given = data.model_fields_set
    for name in ("url", "events", "enabled"):
        if name in given and getattr(data, name) is None:
            raise Unprocessable(f"{name} cannot be null.", loc=["body", name])
    if data.url is not None and data.url != subscription.url:
        subscription.url = _checked_url(str(data.url), settings)
    if data.events is not None:
        subscription.events = list(data.events)
    if data.enabled is not None and data.enabled != subscription.enabled:
        subscription.enabled = data.enabled
        subscription.disabled_reason = None
        subscription.disabled_at = None if data.enabled else utcnow()
    _touch(subscription, utcnow())
    session.add(subscription)
    return subscription


def delete_subscription(*, session: Session, subscription: WebhookSubscription) -> None:
    """Delete the subscription and its delivery log; queued retries find nothing to do."""
    session.delete(subscription)


def rotate_secret(*, session: Session, subscription: WebhookSubscription) -> str:
    """A new signing secret; the current one keeps signing too for `SECRET_GRACE`."""
    now = utcnow()
    subscription.previous_secret = subscription.secret
    subscription.previous_secret_expires_at = now + SECRET_GRACE
    subscription.secret = new_secret()
    _touch(subscription, now)
    session.add(subscription)
    return subscription.secret


def signing_secrets(subscription: WebhookSubscription, now: datetime) -> list[str]:
    """The secrets that sign a delivery now: the current one, then the previous one in grace."""
    secrets = [subscription.secret]
    expires = subscription.previous_secret_expires_at
    if subscription.previous_secret and expires is not None and expires > now:
        secrets.append(subscription.previous_secret)
    return secrets


# The delivery log


def list_deliveries(
    *,
    session: Session,
    subscription: WebhookSubscription,
    limit: int,
    cursor: str | None,
    status: DeliveryStatus | None = None,
) -> tuple[list[WebhookDelivery], dict[str, list[WebhookAttempt]], str | None]:
    """The subscription's deliveries, newest first, with their attempts."""
    statement = select(WebhookDelivery).where(
        col(WebhookDelivery.subscription_id) == subscription.id
    )
    if status is not None:
        statement = statement.where(col(WebhookDelivery.status) == status)
    rows, next_cursor = paginate(
        session, statement, col(WebhookDelivery.id), limit=limit, cursor=cursor
    )
    return rows, attempts_of(session, [row.id for row in rows]), next_cursor


def attempts_of(session: Session, delivery_ids: list[str]) -> dict[str, list[WebhookAttempt]]:
    attempts: dict[str, list[WebhookAttempt]] = defaultdict(list)
    if delivery_ids:
        for attempt in session.exec(
            select(WebhookAttempt)
            .where(col(WebhookAttempt.delivery_id).in_(delivery_ids))
            .order_by(col(WebhookAttempt.at), col(WebhookAttempt.id))
        ):
            attempts[attempt.delivery_id].append(attempt)
    return attempts


def get_delivery(
    *,
    session: Session,
    subscription: WebhookSubscription,
    delivery_id: str,
    lock: bool = False,
) -> WebhookDelivery:
    """One delivery of the subscription, or 404."""
    statement = select(WebhookDelivery).where(
        col(WebhookDelivery.id) == delivery_id,
        col(WebhookDelivery.subscription_id) == subscription.id,
    )
    delivery = session.exec(statement.with_for_update() if lock else statement).first()
    if delivery is None:
        raise NotFound("There is no delivery with this id.")
    return delivery


def _queue_round(session: Session, delivery: WebhookDelivery, *, user_id: str) -> None:
    enqueue(
        session,
        "webhooks.deliver",
        {"delivery_id": delivery.id, "generation": delivery.generation},
        user_id=user_id,
    )


def redeliver(
    *, session: Session, subscription: WebhookSubscription, delivery: WebhookDelivery
) -> WebhookDelivery:
    """Send the delivery again, with the same `webhook-id`, on a fresh retry schedule."""
    if not subscription.enabled:
        raise Conflict("The subscription is disabled; enable it before redelivering.")
    event = session.get(DomainEvent, delivery.event_id)
    if event is None:  # pragma: no cover - the delivery cascades with its event
        raise NotFound("There is no delivery with this id.")
    now = utcnow()
    # A new round: jobs still queued from the previous one see it and step aside.
    delivery.generation += 1
    delivery.tries = 0
    delivery.status = DeliveryStatus.pending
    delivery.next_attempt_at = now
    delivery.updated_at = now
    session.add(delivery)
    _queue_round(session, delivery, user_id=event.user_id)
    return delivery


# Consent


def orgs_to_notify(session: Session, event: DomainEvent, now: datetime) -> set[str]:
    """The organisations whose grant from the event's user lets them hear of it now."""
    scope = EVENT_SCOPES[event.type]
    if scope is None:
        grant = session.get(Grant, event.subject_id)
        if grant is None or grant.user_id != event.user_id:
            return set()
        # A revocation is announced although (because) the grant is no longer in force.
        if event.type == "grant.revoked" or grant_status(grant, now) == "active":
            return {grant.org_id}
        return set()
    grants = session.exec(
        select(Grant).where(col(Grant.user_id) == event.user_id, col(Grant.revoked_at).is_(None))
    ).all()
    return {
        grant.org_id
        for grant in grants
        if grant_status(grant, now) == "active" and scope in grant.scopes
    }


# Fanning out and delivering (called by the worker's tasks)


def fan_out(*, session: Session, event_id: str) -> int:
    """A delivery (and a job to send it) for every subscription that should hear of the
    event; running it again adds none twice. Returns how many it added."""
    return fan_out_many(session=session, event_ids=[event_id])[0]


def _orgs_hearing(
    event: DomainEvent, grants_by_id: dict[str, Grant], grants: list[Grant], now: datetime
) -> set[str]:
    """`orgs_to_notify` over grants already loaded: `grants_by_id` holds the subjects of
    grant events, `grants` the unrevoked grants of the event's user (and maybe others)."""
    scope = EVENT_SCOPES[event.type]
    if scope is None:
        grant = grants_by_id.get(event.subject_id)
        if grant is None or grant.user_id != event.user_id:
            return set()
        # A revocation is announced although (because) the grant is no longer in force.
        if event.type == "grant.revoked" or grant_status(grant, now) == "active":
            return {grant.org_id}
        return set()
    return {
        grant.org_id
        for grant in grants
        if grant.user_id == event.user_id
        and grant.revoked_at is None
        and grant_status(grant, now) == "active"
        and scope in grant.scopes
    }


def fan_out_many(*, session: Session, event_ids: Sequence[str]) -> list[int]:
    """`fan_out` for many events in a few queries (the events, their users' grants, the
    organisations' subscriptions, the deliveries already made); how many each added.
    An event listed twice is fanned out once."""
    counts = [0] * len(event_ids)
    if not event_ids:
        return counts
    ids = sorted(set(event_ids))
    events = {
        event.id: event
        for event in session.exec(select(DomainEvent).where(col(DomainEvent.id).in_(ids)))
    }
    if not events:
        return counts
    user_ids = sorted({event.user_id for event in events.values()})
    grant_ids = sorted(
        {event.subject_id for event in events.values() if EVENT_SCOPES[event.type] is None}
    )
    of_users = and_(col(Grant.user_id).in_(user_ids), col(Grant.revoked_at).is_(None))
    grants = list(
        session.exec(
            select(Grant).where(
                or_(of_users, col(Grant.id).in_(grant_ids)) if grant_ids else of_users
            )
        )
    )
    grants_by_id = {grant.id: grant for grant in grants}
    now = utcnow()
    orgs = {event.id: _orgs_hearing(event, grants_by_id, grants, now) for event in events.values()}
    all_orgs = sorted(set[str]().union(*orgs.values()))
    if not all_orgs:
        return counts
    subscriptions = session.exec(
        select(WebhookSubscription)
        .where(
            col(WebhookSubscription.org_id).in_(all_orgs),
            col(WebhookSubscription.enabled).is_(True),
        )
        .order_by(col(WebhookSubscription.id))
    ).all()
    done = set(
        session.exec(
            select(WebhookDelivery.event_id, WebhookDelivery.subscription_id).where(
                col(WebhookDelivery.event_id).in_(sorted(orgs))
            )
        ).all()
    )
    seen: set[str] = set()
    for index, event_id in enumerate(event_ids):
        event = events.get(event_id)
        if event is None or event_id in seen:
            continue
        seen.add(event_id)
        for subscription in subscriptions:
            if (
                subscription.org_id not in orgs[event_id]
                or event.type not in subscription.events
                or (event_id, subscription.id) in done
            ):
                continue
            delivery = WebhookDelivery(
                subscription_id=subscription.id, event_id=event.id, event_type=event.type
            )
            session.add(delivery)
            _queue_round(session, delivery, user_id=event.user_id)
            counts[index] += 1
    # The session inserts the new rows of each table together when it flushes.
    return counts


def payload_of(event: DomainEvent) -> str:
    """The thin body every delivery of the event carries (the same bytes every time)."""
    body = {
        "type": event.type,
        "timestamp": event.occurred_at.isoformat().replace("+00:00", "Z"),
        "data": {"id": event.subject_id, "user_id": event.user_id},
    }
    return json.dumps(body, separators=(",", ":"))


@dataclass(frozen=True)
class DeliveryPlan:
    """What one attempt sends: read in a short transaction, sent outside any."""

    delivery_id: str
    generation: int
    url: str
    body: str
    secrets: list[str]


def _give_up(session: Session, delivery: WebhookDelivery, reason: str, now: datetime) -> None:
    session.add(WebhookAttempt(delivery_id=delivery.id, at=now, error=reason))
    delivery.status = DeliveryStatus.dead
    delivery.next_attempt_at = None
    delivery.updated_at = now
    session.add(delivery)


def plan_attempt(*, session: Session, delivery_id: str, generation: int) -> DeliveryPlan | None:
    """What to send for this job, or None when there is nothing (left) to send.

    A delivery whose subscription was disabled, or whose user no longer lets the
    organisation hear of the event, is not sent: it is closed as `dead` with the reason.
    """
    delivery = session.exec(
        select(WebhookDelivery).where(col(WebhookDelivery.id) == delivery_id).with_for_update()
    ).first()
    if delivery is None or delivery.generation != generation:
        return None  # deleted, or a redelivery started a new round
    if delivery.status in (DeliveryStatus.succeeded, DeliveryStatus.dead):
        return None
    subscription = session.get(WebhookSubscription, delivery.subscription_id)
    event = session.get(DomainEvent, delivery.event_id)
    if subscription is None or event is None:  # pragma: no cover - cascades
        return None
    now = utcnow()
    if not subscription.enabled:
        _give_up(session, delivery, "not sent: the subscription is disabled", now)
        return None
    if subscription.org_id not in orgs_to_notify(session, event, now):
        _give_up(session, delivery, "not sent: the user's grant no longer covers this event", now)
        return None
    return DeliveryPlan(
        delivery_id=delivery.id,
        generation=delivery.generation,
        url=subscription.url,
        body=payload_of(event),
        secrets=signing_secrets(subscription, now),
    )


@dataclass(frozen=True)
class AttemptOutcome:
    at: datetime
    response_status: int | None
    error: str | None
    duration_ms: int | None

    @property
    def succeeded(self) -> bool:
        return self.response_status is not None and 200 <= self.response_status < 300


def record_attempt(
    *, session: Session, plan: DeliveryPlan, outcome: AttemptOutcome
) -> datetime | None:
    """Log the attempt and move the delivery on; returns when to retry, if it should be."""
    delivery = session.exec(
        select(WebhookDelivery).where(col(WebhookDelivery.id) == plan.delivery_id).with_for_update()
    ).first()
    if delivery is None:
        return None  # deleted meanwhile, with its log
    session.add(
        WebhookAttempt(
            delivery_id=delivery.id,
            at=outcome.at,
            response_status=outcome.response_status,
            error=(outcome.error or "")[:500] or None,
            duration_ms=outcome.duration_ms,
        )
    )
    if delivery.generation != plan.generation:
        return None  # a redelivery took over; it decides the status
    now = utcnow()
    delivery.tries += 1
    delivery.last_attempt_at = outcome.at
    delivery.updated_at = now
    delivery.next_attempt_at = None
    session.add(delivery)
    if outcome.succeeded:
        delivery.status = DeliveryStatus.succeeded
        return None
    if outcome.response_status == 410:
        delivery.status = DeliveryStatus.dead
        disable_subscription(
            session,
            subscription_id=delivery.subscription_id,
            reason="The receiver answered 410 Gone: it no longer wants these webhooks.",
            now=now,
        )
        return None
    if delivery.tries >= MAX_TRIES:
        delivery.status = DeliveryStatus.dead
        disable_subscription(
            session,
            subscription_id=delivery.subscription_id,
            reason=f"A delivery failed {delivery.tries} times over about three days "
            f"(last: {outcome.error}).",
            now=now,
        )
        return None
    delivery.status = DeliveryStatus.failed
    delivery.next_attempt_at = outcome.at + retry_delay(delivery.tries)
    return delivery.next_attempt_at


def disable_subscription(
    session: Session, *, subscription_id: str, reason: str, now: datetime
) -> bool:
    """Switch the subscription off and queue an e-mail to each owner; False if it was off."""
    subscription = session.exec(
        select(WebhookSubscription)
        .where(col(WebhookSubscription.id) == subscription_id)
        .with_for_update()
    ).first()
    if subscription is None or not subscription.enabled:
        return False
    subscription.enabled = False
    subscription.disabled_reason = reason[:300]
    subscription.disabled_at = now
    _touch(subscription, now)
    session.add(subscription)
    owners = session.exec(
        select(OrgMember.user_id).where(
            col(OrgMember.org_id) == subscription.org_id, col(OrgMember.role) == "owner"
        )
    ).all()
    for owner_id in owners:
        enqueue(
            session,
            "webhooks.notify_disabled",
            {"subscription_id": subscription.id, "user_id": owner_id},
            user_id=owner_id,
        )
    return True


def prune_delivery_log(*, session: Session, now: datetime) -> None:
    """Forget finished deliveries older than `LOG_RETENTION`; open ones are kept."""
    session.execute(
        delete(WebhookDelivery).where(
            col(WebhookDelivery.status).in_([DeliveryStatus.succeeded, DeliveryStatus.dead]),
            col(WebhookDelivery.updated_at) < now - LOG_RETENTION,
        )
    )
