"""The worker: claims due jobs, runs their handlers, and records the outcome.

Claiming takes `SELECT … FOR UPDATE SKIP LOCKED` on PostgreSQL (and SQLite's write lock
there), marks the jobs running with a lease, and commits; so two workers never run the
same job at once. A job whose worker died is claimed again when its lease runs out.
"""

from __future__ import annotations

import asyncio
import importlib
import os
import socket
import traceback
from datetime import timedelta

import structlog
from sqlalchemy import and_, or_, update
from sqlmodel import col, select

from api.db import utcnow
from api.email.backends import close_shared_email_backend
from api.http.metrics import count_job
from api.models import Job
from api.worker.registry import PERIODIC, TASKS, RetryLater, WorkerContext

log = structlog.get_logger("rebound.worker")

LEASE = timedelta(minutes=5)
# Each feature's tasks.py registers its handlers when imported.
TASK_MODULES = (
    "api.worker.maintenance",
    "api.webhooks.tasks",
    "api.feedback.tasks",
    "api.action_plans.tasks",
    "api.orgs.tasks",
)


def load_tasks() -> None:
    for module in TASK_MODULES:
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if exc.name != module:
                raise


def new_worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{id(object()) % 100000}"


def claim_due_jobs(ctx: WorkerContext, limit: int) -> list[Job]:
    now = utcnow()
    with ctx.session() as session:
        due = or_(
            and_(col(Job.status) == "pending", col(Job.run_at) <= now),
            and_(col(Job.status) == "running", col(Job.locked_until) < now),
        )
        statement = (
            select(Job)
            .where(due)
            .order_by(col(Job.run_at))
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        jobs = list(session.exec(statement))
        for job in jobs:
            job.status = "running"
            job.attempts += 1
            job.locked_by = ctx.worker_id
            job.locked_until = now + LEASE
        return jobs


def _finish(ctx: WorkerContext, job: Job, **values: object) -> None:
    """Write the outcome, unless the lease was lost to another worker meanwhile."""
    with ctx.session() as session:
        session.execute(
            update(Job)
            .where(
                col(Job.id) == job.id,
                col(Job.locked_by) == ctx.worker_id,
                col(Job.attempts) == job.attempts,
            )
            .values(locked_by=None, locked_until=None, **values)
        )


async def run_job(ctx: WorkerContext, job: Job) -> None:
    spec = TASKS.get(job.kind)
    try:
        if spec is None:
            raise LookupError(f"no handler for job kind {job.kind!r}")
        await spec.handler(job, ctx)
    except RetryLater as later:
        log.info(
            "job_deferred",
            job_id=job.id,
            kind=job.kind,
            until=later.at.isoformat(),
            reason=later.reason,
        )
        _finish(
            ctx,
            job,
            status="pending",
            run_at=later.at,
            attempts=job.attempts - 1,
            last_error=later.reason,
        )
        count_job(job.kind, "deferred")
        return
    except Exception as exc:
        error = "".join(traceback.format_exception_only(exc)).strip()[:2000]
        if job.attempts >= job.max_attempts or spec is None:
            log.error("job_dead", job_id=job.id, kind=job.kind, attempts=job.attempts, error=error)
            _finish(ctx, job, status="dead", last_error=error, finished_at=utcnow())
            count_job(job.kind, "dead")
        else:
            retry_at = utcnow() + spec.backoff(job.attempts)
            log.warning(
                "job_failed",
                job_id=job.id,
                kind=job.kind,
                attempts=job.attempts,
                error=error,
                retry_at=retry_at.isoformat(),
            )
            _finish(ctx, job, status="pending", run_at=retry_at, last_error=error)
            count_job(job.kind, "retry")
        return
    _finish(ctx, job, status="done", finished_at=utcnow(), last_error=None)
    count_job(job.kind, "done")
    log.debug("job_done", job_id=job.id, kind=job.kind)


async def run_periodic(ctx: WorkerContext, last_run: dict[str, float]) -> None:
    loop = asyncio.get_running_loop()
    for spec in PERIODIC.values():
        if loop.time() - last_run.get(spec.name, float("-inf")) < spec.every.total_seconds():
            continue
        last_run[spec.name] = loop.time()
        try:
            await spec.function(ctx)
        except Exception:
            log.exception("periodic_failed", name=spec.name)


async def run_batch(ctx: WorkerContext, *, concurrency: int = 16) -> int:
    """Claim one batch of due jobs and run them; returns how many were claimed."""
    jobs = claim_due_jobs(ctx, ctx.settings.worker_batch_size)
    if not jobs:
        return 0
    gate = asyncio.Semaphore(concurrency)

    async def guarded(job: Job) -> None:
        async with gate:
            await run_job(ctx, job)

    await asyncio.gather(*(guarded(job) for job in jobs))
    return len(jobs)


async def run_until_idle(ctx: WorkerContext) -> int:
    """Everything due now (periodic duties included), then return the number of jobs run."""
    load_tasks()
    try:
        await run_periodic(ctx, {})
        total = 0
        while count := await run_batch(ctx):
            total += count
        return total
    finally:
        await close_shared_email_backend(ctx.services)


async def run_forever(ctx: WorkerContext, stop: asyncio.Event) -> None:
    load_tasks()
    last_run: dict[str, float] = {}
    log.info("worker_started", worker_id=ctx.worker_id)
    while not stop.is_set():
        try:
            await run_periodic(ctx, last_run)
            if await run_batch(ctx):
                continue
        except Exception:
            log.exception("worker_loop_error")
        try:
            await asyncio.wait_for(stop.wait(), timeout=ctx.settings.worker_poll_interval)
        except TimeoutError:
            pass
    await close_shared_email_backend(ctx.services)
    log.info("worker_stopped", worker_id=ctx.worker_id)
