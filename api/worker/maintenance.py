"""Housekeeping the worker does on its own: pruning what has outlived its use."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import delete
from sqlmodel import col

from api.db import utcnow
from api.http.idempotency import RETENTION
from api.models import IdempotencyRecord, Job
from api.worker.registry import WorkerContext, periodic

DONE_JOB_RETENTION = timedelta(days=7)


@periodic("prune", every=timedelta(hours=1))
async def prune(ctx: WorkerContext) -> None:
    now = utcnow()
    with ctx.session() as session:
        session.execute(
            delete(IdempotencyRecord).where(col(IdempotencyRecord.created_at) < now - RETENTION)
        )
        session.execute(
            delete(Job).where(
                col(Job.status) == "done", col(Job.finished_at) < now - DONE_JOB_RETENTION
            )
        )
