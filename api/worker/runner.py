"""The worker: claims due jobs, runs their handlers, and records the outcome.

Claiming takes `SELECT … FOR UPDATE SKIP LOCKED` on PostgreSQL (and SQLite's write lock
there), marks the jobs running with a lease, and commits; so two workers never run the
same job at once. A job whose worker died is claimed again when its lease runs out.

The jobs of a claim whose kind has a batch handler run together through it; the others
run one by one. Outcomes are written in one UPDATE per group of jobs that end together
(each only while its lease is still this worker's).

Two batches are in flight at once (`BATCHES_IN_FLIGHT`), and the busy handlers run their
transactions on a thread (`WorkerContext.transaction`): while one batch waits on the
database, the other's e-mails go out.
"""

from __future__ import annotations

import asyncio
import importlib
import os
import socket
import traceback
from datetime import timedelta
from typing import Any

import structlog
from sqlalchemy import and_, bindparam, or_, update
from sqlmodel import Session, col, select

from api.db import utcnow
from api.email.backends import close_shared_email_backend
from api.http.metrics import count_job
from api.models import Job
from api.models.base import table_of
from api.worker.registry import PERIODIC, TASKS, RetryLater, TaskSpec, WorkerContext

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


def claim_due_jobs(session: Session, worker_id: str, limit: int) -> list[Job]:
    """Up to `limit` due jobs (or jobs whose lease ran out), marked running under a lease
    of `worker_id`'s; committed with the caller's transaction."""
    now = utcnow()
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
        job.locked_by = worker_id
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


def _outcome(job: Job, spec: TaskSpec | None, error: BaseException | None) -> dict[str, Any]:
    """The job's columns after its handler ended with `error` (None: done); logs and
    counts the outcome."""
    if error is None:
        count_job(job.kind, "done")
        log.debug("job_done", job_id=job.id, kind=job.kind)
        return {"status": "done", "finished_at": utcnow(), "last_error": None}
    if isinstance(error, RetryLater):
        log.info(
            "job_deferred",
            job_id=job.id,
            kind=job.kind,
            until=error.at.isoformat(),
            reason=error.reason,
        )
        count_job(job.kind, "deferred")
        return {
            "status": "pending",
            "run_at": error.at,
            "attempts": job.attempts - 1,
            "last_error": error.reason,
        }
    message = "".join(traceback.format_exception_only(error)).strip()[:2000]
    if job.attempts >= job.max_attempts or spec is None:
        log.error("job_dead", job_id=job.id, kind=job.kind, attempts=job.attempts, error=message)
        count_job(job.kind, "dead")
        return {"status": "dead", "last_error": message, "finished_at": utcnow()}
    retry_at = utcnow() + spec.backoff(job.attempts)
    log.warning(
        "job_failed",
        job_id=job.id,
        kind=job.kind,
        attempts=job.attempts,
        error=message,
        retry_at=retry_at.isoformat(),
    )
    count_job(job.kind, "retry")
    return {"status": "pending", "run_at": retry_at, "last_error": message}


async def run_job(ctx: WorkerContext, job: Job, finisher: _Finisher | None = None) -> None:
    spec = TASKS.get(job.kind)
    error: Exception | None = None
    try:
        if spec is None:
            raise LookupError(f"no handler for job kind {job.kind!r}")
        await spec.handler(job, ctx)
    except Exception as exc:
        error = exc
    values = _outcome(job, spec, error)
    if finisher is None:
        _finish(ctx, job, **values)
    else:
        await finisher.finish(job, values)


class _Finisher:
    """Writes the outcomes of jobs that end at the same moment in one transaction.

    An outcome waits one turn of the event loop for the others ready then (jobs whose
    handlers never wait on anything all end in the same turn), and is written before
    `finish` returns, as `_finish` would."""

    def __init__(self, ctx: WorkerContext) -> None:
        self.ctx = ctx
        self.pending: list[tuple[Job, dict[str, Any]]] = []

    async def finish(self, job: Job, values: dict[str, Any]) -> None:
        self.pending.append((job, values))
        await asyncio.sleep(0)
        if self.pending:
            ready, self.pending = self.pending, []
            await _finish_many(self.ctx, ready)


async def _finish_many(ctx: WorkerContext, outcomes: list[tuple[Job, dict[str, Any]]]) -> None:
    """`_finish` for many jobs in one transaction: one UPDATE run once per job."""
    jobs = table_of(Job)
    statement = (
        update(jobs)
        .where(
            jobs.c.id == bindparam("job_id"),
            jobs.c.locked_by == bindparam("owner"),
            jobs.c.attempts == bindparam("claimed_attempts"),
        )
        .values(
            status=bindparam("new_status"),
            run_at=bindparam("new_run_at"),
            attempts=bindparam("new_attempts"),
            last_error=bindparam("new_last_error"),
            finished_at=bindparam("new_finished_at"),
            locked_by=None,
            locked_until=None,
        )
    )
    rows = [
        {
            "job_id": job.id,
            "owner": ctx.worker_id,
            "claimed_attempts": job.attempts,
            "new_status": values["status"],
            "new_run_at": values.get("run_at", job.run_at),
            "new_attempts": values.get("attempts", job.attempts),
            "new_last_error": values.get("last_error"),
            "new_finished_at": values.get("finished_at"),
        }
        for job, values in outcomes
    ]
    await ctx.transaction(lambda session: session.execute(statement, rows))


async def run_jobs_together(
    ctx: WorkerContext, spec: TaskSpec, jobs: list[Job], finisher: _Finisher
) -> None:
    """Jobs of one kind through its batch handler, their outcomes written at once; if the
    batch handler fails as a whole, each job runs alone instead."""
    assert spec.batch is not None
    try:
        errors = await spec.batch(jobs, ctx)
        if len(errors) != len(jobs):
            raise RuntimeError(f"the batch handler gave {len(errors)} outcomes for {len(jobs)}")
    except Exception:
        log.exception("job_batch_failed", kind=jobs[0].kind, jobs=len(jobs))
        for job in jobs:
            await run_job(ctx, job, finisher)
        return
    await _finish_many(
        ctx, [(job, _outcome(job, spec, error)) for job, error in zip(jobs, errors, strict=True)]
    )


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
    """Claim one batch of due jobs and run them; returns how many were claimed.

    Jobs of a kind with a batch handler go to it together; the others run one by one,
    up to `concurrency` at a time."""
    jobs = await ctx.transaction(
        lambda session: claim_due_jobs(session, ctx.worker_id, ctx.settings.worker_batch_size)
    )
    if not jobs:
        return 0
    gate = asyncio.Semaphore(concurrency)
    finisher = _Finisher(ctx)
    together: dict[str, list[Job]] = {}
    alone: list[Job] = []
    for job in jobs:
        spec = TASKS.get(job.kind)
        if spec is not None and spec.batch is not None:
            together.setdefault(job.kind, []).append(job)
        else:
            alone.append(job)

    async def guarded(job: Job) -> None:
        async with gate:
            await run_job(ctx, job, finisher)

    await asyncio.gather(
        *(run_jobs_together(ctx, TASKS[kind], group, finisher) for kind, group in together.items()),
        *(guarded(job) for job in alone),
    )
    return len(jobs)


# Two batches in flight: while one batch waits on the network (the mail server, a webhook
# target), the other's database work runs. Their transactions never overlap in this
# process (no handler awaits inside one), and between workers they are no different
# from two workers' claims.
BATCHES_IN_FLIGHT = 2


async def _drain(ctx: WorkerContext) -> int:
    total = 0
    while count := await run_batch(ctx):
        total += count
    return total


async def run_until_idle(ctx: WorkerContext) -> int:
    """Everything due now (periodic duties included), then return the number of jobs run.

    Each batch in flight claims until nothing is left; the last to finish claims after
    every other batch's work is recorded, so jobs they queued as due now run too."""
    load_tasks()
    try:
        await run_periodic(ctx, {})
        counts = await asyncio.gather(*(_drain(ctx) for _ in range(BATCHES_IN_FLIGHT)))
        return sum(counts)
    finally:
        await close_shared_email_backend(ctx.services)


async def _work_until_stopped(
    ctx: WorkerContext, stop: asyncio.Event, last_run: dict[str, float] | None
) -> None:
    """Claim and run batches until `stop`; with `last_run`, also the periodic duties."""
    while not stop.is_set():
        try:
            if last_run is not None:
                await run_periodic(ctx, last_run)
            if await run_batch(ctx):
                continue
        except Exception:
            log.exception("worker_loop_error")
        try:
            await asyncio.wait_for(stop.wait(), timeout=ctx.settings.worker_poll_interval)
        except TimeoutError:
            pass


async def run_forever(ctx: WorkerContext, stop: asyncio.Event) -> None:
    load_tasks()
    log.info("worker_started", worker_id=ctx.worker_id)
    await asyncio.gather(
        *(
            _work_until_stopped(ctx, stop, {} if lane == 0 else None)
            for lane in range(BATCHES_IN_FLIGHT)
        )
    )
    await close_shared_email_backend(ctx.services)
    log.info("worker_stopped", worker_id=ctx.worker_id)
