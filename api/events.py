"""Domain events: what happened to a user's data, recorded in the same transaction.

Each event is a row and a job; the webhooks package fans it out to the organisations
whose grants cover it.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import insert
from sqlmodel import Session

from api.db import NewRow, new_id, utcnow
from api.models import DomainEvent, Job
from api.models.base import insert_now, table_of

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
    # Both rows are inserted at once with plain statements (every create records an
    # event; a flush of two more objects costs more than the two INSERTs).
    (_, event_values), (job_table, job_values) = event_rows(
        type=type, user_id=user_id, subject_id=subject_id
    )
    event = DomainEvent(**event_values)
    insert_now(session, event)
    session.connection().execute(insert(job_table), job_values)
    return event


def event_rows(*, type: str, user_id: str, subject_id: str) -> list[NewRow]:
    """The event's row and its fan-out job's: the job `api.worker.queue.enqueue` would
    add (no dedupe key), its other columns the model's defaults (pending, due now, 10
    attempts)."""
    if type not in EVENT_TYPES:
        raise ValueError(f"unknown event type {type!r}")
    event_id = new_id()
    event = {
        "id": event_id,
        "type": type,
        "user_id": user_id,
        "subject_id": subject_id,
        "occurred_at": utcnow(),
    }
    job = {"kind": "webhooks.fan_out", "payload": {"event_id": event_id}, "user_id": user_id}
    return [(table_of(DomainEvent), event), (table_of(Job), job)]


def record_events(session: Session, events: Sequence[tuple[str, str, str]]) -> None:
    """`record_event` for many (type, user_id, subject_id) at once: one INSERT of the
    events and one of their jobs, each run once per row (a batch of the worker's)."""
    if not events:
        return
    rows = []
    for type, user_id, subject_id in events:
        if type not in EVENT_TYPES:
            raise ValueError(f"unknown event type {type!r}")
        rows.append(
            DomainEvent(
                id=new_id(), type=type, user_id=user_id, subject_id=subject_id, occurred_at=utcnow()
            )
        )
    table = table_of(DomainEvent)
    connection = session.connection()
    connection.execute(
        insert(table),
        [{column.key: getattr(row, column.key) for column in table.columns} for row in rows],
    )
    connection.execute(
        insert(table_of(Job)),
        [
            {"kind": "webhooks.fan_out", "payload": {"event_id": row.id}, "user_id": row.user_id}
            for row in rows
        ],
    )
