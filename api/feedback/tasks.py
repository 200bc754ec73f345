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
"""

from __future__ import annotations

import structlog

from api.email import EmailDeliveryError
from api.feedback import service
from api.models import Job
from api.worker.registry import RetryLater, WorkerContext, task

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
        with ctx.session() as session:
            service.record_delivery_failure(
                session=session,
                request_id=request_id,
                number=number,
                reason=exc.reason,
                permanent=exc.permanent,
            )
        if exc.permanent:
            log.info("feedback_bounced", request_id=request_id, number=number, reason=exc.reason)
            return
        raise
    with ctx.session() as session:
        service.record_message_sent(session=session, request_id=request_id, number=number)


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
