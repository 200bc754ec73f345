"""Domain events: what happened to a user's data, recorded in the same transaction.

Each event is a row and a job; the webhooks package fans it out to the organisations
whose grants cover it.
"""

from __future__ import annotations

from sqlmodel import Session

from api.models import DomainEvent
from api.worker.queue import enqueue

EVENT_TYPES = (
    "rejection.created",
    "rejection.updated",
    "reflection.completed",
    "feedback_request.sent",
    "feedback_request.responded",
    "feedback_request.closed",
    "action_item.completed",
    "grant.created",
    "grant.revoked",
)


def record_event(session: Session, *, type: str, user_id: str, subject_id: str) -> DomainEvent:
    if type not in EVENT_TYPES:
        raise ValueError(f"unknown event type {type!r}")
    event = DomainEvent(type=type, user_id=user_id, subject_id=subject_id)
    session.add(event)
    enqueue(session, "webhooks.fan_out", {"event_id": event.id}, user_id=user_id)
    return event
