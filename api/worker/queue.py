"""Putting work on the queue: a row in the caller's transaction (a transactional outbox)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlmodel import Session, col, select

from api.db import utcnow
from api.models import Job


def enqueue(
    session: Session,
    kind: str,
    payload: dict[str, Any] | None = None,
    *,
    run_at: datetime | None = None,
    user_id: str | None = None,
    dedupe_key: str | None = None,
    max_attempts: int = 10,
) -> Job | None:
    """Add a job; with a `dedupe_key` already queued, add nothing and return None."""
    if dedupe_key is not None:
        exists = session.exec(select(Job.id).where(col(Job.dedupe_key) == dedupe_key)).first()
        if exists is not None:
            return None
    job = Job(
        kind=kind,
        payload=payload or {},
        run_at=run_at or utcnow(),
        user_id=user_id,
        dedupe_key=dedupe_key,
        max_attempts=max_attempts,
    )
    session.add(job)
    return job


def enqueue_many(session: Session, jobs: Sequence[Job]) -> list[Job]:
    """Add many jobs at once (one query for their dedupe keys); a job whose dedupe key is
    already queued, or taken by an earlier one of `jobs`, is left out. Returns those added."""
    keys = [job.dedupe_key for job in jobs if job.dedupe_key is not None]
    taken = (
        set(session.exec(select(Job.dedupe_key).where(col(Job.dedupe_key).in_(keys))).all())
        if keys
        else set()
    )
    added = []
    for job in jobs:
        if job.dedupe_key is not None:
            if job.dedupe_key in taken:
                continue
            taken.add(job.dedupe_key)
        session.add(job)
        added.append(job)
    return added
