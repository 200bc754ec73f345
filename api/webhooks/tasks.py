"""The worker's webhook jobs: fan an event out, deliver one delivery, tell owners.

The worker fans the events of all the `webhooks.fan_out` jobs it claimed out together
(`fan_out_batch`): every rejection queues one, so doing them one by one would cost a few
round trips each.

`webhooks.deliver` holds no transaction while it waits for the receiver: it reads what
to send, sends it, then records the outcome. A failed try is rescheduled with
`RetryLater` at the time the retry schedule gives (the delivery's own try count picks
it), so the job's attempts only count crashes of the handler itself.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta

import structlog

from api.db import utcnow
from api.email.backends import EmailDeliveryError
from api.email.message import build_message
from api.email.render import render_email
from api.models import Job, Organisation, User
from api.models.webhook import WebhookSubscription
from api.webhooks import service
from api.webhooks.delivery import send_delivery
from api.worker.registry import RetryLater, WorkerContext, batch_task, periodic, task

log = structlog.get_logger("rebound.webhooks")


@task("webhooks.fan_out")
async def fan_out(job: Job, ctx: WorkerContext) -> None:
    event_id = str(job.payload["event_id"])
    with ctx.session() as session:
        added = service.fan_out(session=session, event_id=event_id)
    if added:
        log.info("webhook_fan_out", event_id=event_id, deliveries=added)


@batch_task("webhooks.fan_out")
async def fan_out_batch(jobs: Sequence[Job], ctx: WorkerContext) -> list[BaseException | None]:
    """`fan_out` for many jobs in one transaction. Should it fail, nothing was written (it
    rolled back) and the runner fans each event out alone."""
    event_ids = [str(job.payload["event_id"]) for job in jobs]
    added = await ctx.transaction(
        lambda session: service.fan_out_many(session=session, event_ids=event_ids)
    )
    if any(added):
        log.info("webhook_fan_out_batch", events=len(event_ids), deliveries=sum(added))
    return [None] * len(jobs)


@task("webhooks.deliver")
async def deliver(job: Job, ctx: WorkerContext) -> None:
    delivery_id = str(job.payload["delivery_id"])
    generation = int(job.payload.get("generation", 1))
    with ctx.session() as session:
        plan = service.plan_attempt(session=session, delivery_id=delivery_id, generation=generation)
    if plan is None:
        return
    outcome = await send_delivery(plan, allow_private=ctx.settings.webhook_allow_private_targets)
    with ctx.session() as session:
        retry_at = service.record_attempt(session=session, plan=plan, outcome=outcome)
    log.info(
        "webhook_attempt",
        delivery_id=delivery_id,
        status=outcome.response_status,
        error=outcome.error,
        retry_at=retry_at.isoformat() if retry_at else None,
    )
    if retry_at is not None:
        raise RetryLater(retry_at, f"webhook delivery failed: {outcome.error}")


@task("webhooks.notify_disabled")
async def notify_disabled(job: Job, ctx: WorkerContext) -> None:
    """E-mail one owner that a subscription was switched off, and why."""
    with ctx.session() as session:
        subscription = session.get(WebhookSubscription, str(job.payload["subscription_id"]))
        owner = session.get(User, str(job.payload["user_id"]))
        if subscription is None or owner is None or subscription.enabled:
            return  # deleted, or switched back on before we got to it
        org = session.get(Organisation, subscription.org_id)
        if org is None:  # pragma: no cover - the subscription cascades with it
            return
        rendered = render_email(
            "webhook_disabled",
            {
                "owner_name": owner.display_name,
                "org_name": org.name,
                "url": subscription.url,
                "reason": subscription.disabled_reason or "",
                "enable_path": f"/v1/orgs/{org.id}/webhooks/{subscription.id}",
                "deliveries_path": f"/v1/orgs/{org.id}/webhooks/{subscription.id}/deliveries",
                "base_url": ctx.settings.base_url.rstrip("/"),
            },
        )
        message = build_message(
            settings=ctx.settings,
            to=owner.email,
            to_name=owner.display_name or None,
            subject=rendered.subject,
            text=rendered.text,
            html=rendered.html,
        )
    try:
        await ctx.send_email(message)
    except EmailDeliveryError as exc:
        if exc.permanent:
            log.warning("webhook_disabled_mail_refused", user_id=owner.id, reason=exc.reason)
            return
        raise  # worth another try: the worker retries the job with its backoff


@periodic("webhooks.prune_log", every=timedelta(hours=6))
async def prune_log(ctx: WorkerContext) -> None:
    with ctx.session() as session:
        service.prune_delivery_log(session=session, now=utcnow())
