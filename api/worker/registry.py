"""The task registry: each job `kind` names one handler.

Feature packages register their handlers in their own `tasks.py` with `@task("kind")`;
`api.worker.runner` imports them all. A handler is an async function of the job and the
worker's context; it opens its own transactions with `ctx.session()`.

A kind with much traffic may add a batch handler with `@batch_task("kind")`: the runner
then gives it all the jobs of that kind it claimed at once, so their work shares a few
transactions (see `BatchHandler`).
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from email.message import EmailMessage
from typing import Any, TypeVar

from sqlalchemy.engine import Engine
from sqlmodel import Session

from api.config import Settings
from api.db import open_session
from api.email.backends import shared_email_backend
from api.models import Job

_T = TypeVar("_T")


@dataclass
class WorkerContext:
    engine: Engine
    settings: Settings
    worker_id: str
    services: dict[str, Any] = field(default_factory=dict)

    async def send_email(self, message: EmailMessage) -> None:
        """Send through the worker's one e-mail backend, whose SMTP connection stays open
        across jobs (closed when the worker stops). Raises EmailDeliveryError."""
        await shared_email_backend(self.services, self.settings).send(message)

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A write transaction, committed when the block ends without error."""
        session = open_session(self.engine)
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise
        finally:
            session.close()

    async def transaction(self, work: Callable[[Session], _T]) -> _T:
        """`work(session)` in a write transaction (as `session()`), run on a thread: the
        worker's event loop goes on meanwhile with its other batch's network work (e-mails
        on their way), instead of waiting on the database."""

        def run() -> _T:
            with self.session() as session:
                return work(session)

        return await asyncio.to_thread(run)


Handler = Callable[[Job, WorkerContext], Awaitable[None]]
# Runs many jobs of one kind and returns, for each job in order, None (done) or the
# exception that job ended with (RetryLater, or a failure to retry with backoff). If it
# raises instead, the runner runs each job alone with the kind's own handler; so a batch
# handler may raise only before it has done anything outside its rolled-back transactions.
BatchHandler = Callable[[Sequence[Job], WorkerContext], Awaitable[list[BaseException | None]]]
Backoff = Callable[[int], timedelta]


class RetryLater(Exception):
    """Not a failure: run the job again at `at` without spending an attempt."""

    def __init__(self, at: datetime, reason: str) -> None:
        super().__init__(reason)
        self.at = at
        self.reason = reason


def exponential_backoff(attempt: int) -> timedelta:
    """About 5 s, 10 s, 20 s … capped at one hour, with ±20% jitter."""
    seconds = min(5 * 2 ** (attempt - 1), 3600)
    return timedelta(seconds=seconds * random.uniform(0.8, 1.2))


@dataclass(frozen=True)
class TaskSpec:
    handler: Handler
    backoff: Backoff
    batch: BatchHandler | None = None


TASKS: dict[str, TaskSpec] = {}


def task(kind: str, *, backoff: Backoff = exponential_backoff) -> Callable[[Handler], Handler]:
    def register(handler: Handler) -> Handler:
        TASKS[kind] = TaskSpec(handler=handler, backoff=backoff)
        return handler

    return register


def batch_task(kind: str) -> Callable[[BatchHandler], BatchHandler]:
    """Add a batch handler to the kind `@task(kind)` registered (register that first)."""

    def register(handler: BatchHandler) -> BatchHandler:
        TASKS[kind] = replace(TASKS[kind], batch=handler)
        return handler

    return register


Periodic = Callable[[WorkerContext], Awaitable[None]]


@dataclass
class PeriodicSpec:
    name: str
    function: Periodic
    every: timedelta


PERIODIC: dict[str, PeriodicSpec] = {}


def periodic(name: str, *, every: timedelta) -> Callable[[Periodic], Periodic]:
    """A function each worker calls about every `every` (and once per `worker --once`).

    It must be safe when several workers call it at once: it should only enqueue jobs
    with dedupe keys, or claim rows with locks.
    """

    def register(function: Periodic) -> Periodic:
        PERIODIC[name] = PeriodicSpec(name=name, function=function, every=every)
        return function

    return register
