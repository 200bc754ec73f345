"""What the worker does for feedback requests: send each message when it is due, close
unanswered requests, and tell the user when the employer answered.

A message is sent in three steps: a transaction that re-checks the request (it may have
been answered, cancelled or opted out since the job was queued), the caps and the time,
and writes the message's log row; the hand-over to the e-mail backend, outside any
transaction; and a transaction that records it as sent and queues what comes next. Each
step of a request has one job (a dedupe key), and a job runs on one worker at a time, so
no message is sent twice; a worker that dies between the hand-over and the record leaves
the job to be claimed again, and the message is sent again under the same Message-ID
rather than lost.

The worker usually claims many due messages at once; `send_feedback_messages` takes the
same three steps for all of them together: one transaction prepares them all, they are
handed to the backend at once (it spreads them over its connections), and one
transaction records those the server took.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import structlog

from api.email import EmailDeliveryError
from api.feedback import service
from api.models import Job
from api.worker.registry import RetryLater, WorkerContext, batch_task, task

log = structlog.get_logger("rebound.feedback")


@task(service.SEND_TASK)
async def send_feedback_message(job: Job, ctx: WorkerContext) -> None:
    """Message `number` of a request: 0 is the request itself, then the follow-ups."""
    request_id, number = str(job.payload["request_id"]), int(job.payload["number"])
    with ctx.session() as session:
        outgoing = service.prepare_message(
            session=session, settings=ctx.settings, request_id=request_id, number=number
        )
    if isinstance(outgoing, service.Wait):
        raise RetryLater(outgoing.until, outgoing.reason)
    if outgoing is None:
        return
    try:
        await ctx.send_email(outgoing.email)
    except EmailDeliveryError as exc:
        if _delivery_failed(ctx, (request_id, number), exc) is not None:
            raise  # not a bounce: the job is tried again
    with ctx.session() as session:
        service.record_message_sent(session=session, request_id=request_id, number=number)


@batch_task(service.SEND_TASK)
async def send_feedback_messages(
    jobs: Sequence[Job], ctx: WorkerContext
) -> list[BaseException | None]:
    """`send_feedback_message` for many jobs: the outcome of each, in order.

    Should preparing them together fail, this raises before anything is sent, and the
    runner sends each alone; from then on every failure is one message's own."""
    items = [(str(job.payload["request_id"]), int(job.payload["number"])) for job in jobs]
    prepared = await ctx.transaction(
        lambda session: service.prepare_messages(
            session=session, settings=ctx.settings, items=items
        )
    )
    outcomes: list[BaseException | None] = [None] * len(jobs)
    sending: list[tuple[int, service.Outgoing]] = []
    for index, outgoing in enumerate(prepared):
        if isinstance(outgoing, service.Wait):
            outcomes[index] = RetryLater(outgoing.until, outgoing.reason)
        elif outgoing is not None:
            sending.append((index, outgoing))

    results = await asyncio.gather(
        *(ctx.send_email(outgoing.email) for _index, outgoing in sending),
        return_exceptions=True,
    )
    sent: list[int] = []
    for (index, _outgoing), result in zip(sending, results, strict=True):
        if result is None:
            sent.append(index)
        elif isinstance(result, EmailDeliveryError):
            outcomes[index] = _delivery_failed(ctx, items[index], result)
        elif isinstance(result, Exception):
            outcomes[index] = result
        else:
            raise result  # cancelled: stop like any other handler would
    await _record_sent(ctx, items, sent, outcomes)
    return outcomes


def _delivery_failed(
    ctx: WorkerContext, item: tuple[str, int], error: EmailDeliveryError
) -> EmailDeliveryError | None:
    """Note a refused message; the job's outcome (None: done, it bounced)."""
    request_id, number = item
    try:
        with ctx.session() as session:
            service.record_delivery_failure(
                session=session,
                request_id=request_id,
                number=number,
                reason=error.reason,
                permanent=error.permanent,
            )
    except Exception:
        log.exception("feedback_failure_not_recorded", request_id=request_id, number=number)
        return error
    if error.permanent:
        log.info("feedback_bounced", request_id=request_id, number=number, reason=error.reason)
        return None
    return error


async def _record_sent(
    ctx: WorkerContext,
    items: list[tuple[str, int]],
    sent: list[int],
    outcomes: list[BaseException | None],
) -> None:
    """Record the sent messages in one transaction; should that fail, each in its own, so
    one message that cannot be recorded does not have the others sent again."""
    if not sent:
        return
    try:
        await ctx.transaction(
            lambda session: service.record_messages_sent(
                session=session, items=[items[i] for i in sent]
            )
        )
        return
    except Exception:
        log.exception("feedback_batch_not_recorded", messages=len(sent))
    for index in sent:
        request_id, number = items[index]
        try:
            with ctx.session() as session:
                service.record_message_sent(session=session, request_id=request_id, number=number)
        except Exception as exc:
            outcomes[index] = exc


@task(service.CLOSE_TASK)
async def close_unanswered(job: Job, ctx: WorkerContext) -> None:
    """An interval after the last message, an unanswered request closes as no_response."""
    with ctx.session() as session:
        wait = service.close_unanswered(session=session, request_id=str(job.payload["request_id"]))
    if wait is not None:
        raise RetryLater(wait.until, wait.reason)


@task(service.NOTIFY_TASK)
async def notify_user_of_answer(job: Job, ctx: WorkerContext) -> None:
    """E-mail the user that the employer answered through the link."""
    with ctx.session() as session:
        message = service.response_notice(
            session=session, settings=ctx.settings, request_id=str(job.payload["request_id"])
        )
    if message is None:
        return
    try:
        await ctx.send_email(message)
    except EmailDeliveryError as exc:
        if not exc.permanent:
            raise
        log.warning("feedback_notice_refused", job_id=job.id, reason=exc.reason)
