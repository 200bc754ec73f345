"""Reminders: one e-mail digest a day, in each opted-in user's morning, of the action
items due within three days or overdue.

`schedule_reminders` runs on every worker every few minutes. For each user with reminders
on whose local clock has passed their `reminder_hour` today, it enqueues one digest job
whose dedupe key names the user and their local date: a second worker (or a second
round) finds the key taken and adds nothing, so nobody gets two digests for one day.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import structlog
from sqlalchemy.exc import IntegrityError
from sqlmodel import col, select

from api.db import utcnow
from api.email.backends import EmailDeliveryError
from api.email.message import build_message
from api.email.render import render_email
from api.models import Job, User
from api.models.action_plan import OPEN_STATUSES, ActionItem, ActionPlan
from api.worker.queue import enqueue
from api.worker.registry import WorkerContext, periodic, task

log = structlog.get_logger("rebound.reminders")

DIGEST_KIND = "action_plans.reminder_digest"
# Items due within this many days of the local date (and every overdue one) are listed.
DUE_SOON_DAYS = 3
_BATCH = 500


def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


def reminder_key(user_id: str, local_date: date) -> str:
    return f"reminder:{user_id}:{local_date.isoformat()}"


def due_digests(rows: list[tuple[str, str, int]], now: datetime) -> dict[str, tuple[str, date]]:
    """Dedupe key -> (user id, local date) for each (id, time zone, hour) whose local time
    has reached its reminder hour today."""
    due: dict[str, tuple[str, date]] = {}
    for user_id, timezone, hour in rows:
        local = now.astimezone(_zone(timezone))
        if local.hour >= hour:
            due[reminder_key(user_id, local.date())] = (user_id, local.date())
    return due


@periodic("action_plans.reminders", every=timedelta(minutes=5))
async def schedule_reminders(ctx: WorkerContext) -> None:
    """Enqueue today's digest for every opted-in user whose reminder hour has come."""
    now = utcnow()
    with ctx.session() as session:
        rows = session.exec(
            select(User.id, User.timezone, User.reminder_hour).where(
                col(User.reminders_enabled).is_(True)
            )
        ).all()
    due = due_digests([(row[0], row[1], row[2]) for row in rows], now)
    keys = list(due)
    for start in range(0, len(keys), _BATCH):
        batch = keys[start : start + _BATCH]
        with ctx.session() as session:
            taken = set(session.exec(select(Job.dedupe_key).where(col(Job.dedupe_key).in_(batch))))
            for key in batch:
                if key in taken:
                    continue
                user_id, local_date = due[key]
                try:
                    # A savepoint each: another worker inserting the same key first
                    # costs only this row, not the batch.
                    with session.begin_nested():
                        enqueue(
                            session,
                            DIGEST_KIND,
                            {"user_id": user_id, "local_date": local_date.isoformat()},
                            user_id=user_id,
                            dedupe_key=key,
                            max_attempts=5,
                        )
                except IntegrityError:
                    log.debug("reminder_already_enqueued", key=key)


def _digest_context(
    user: User, local_date: date, rows: list[tuple[ActionItem, str]]
) -> dict[str, Any]:
    def entry(item: ActionItem, plan_title: str) -> dict[str, Any]:
        assert item.due_on is not None
        return {
            "title": item.title,
            "plan_title": plan_title,
            "due_on": item.due_on.isoformat(),
            "due_label": f"{item.due_on:%A} {item.due_on.day} {item.due_on:%B}",
            "days_late": (local_date - item.due_on).days,
            "days_left": (item.due_on - local_date).days,
            "progress": item.progress,
            "status": item.status,
        }

    overdue = [entry(i, p) for i, p in rows if i.due_on is not None and i.due_on < local_date]
    today = [entry(i, p) for i, p in rows if i.due_on == local_date]
    soon = [entry(i, p) for i, p in rows if i.due_on is not None and i.due_on > local_date]
    return {
        "name": user.display_name or "there",
        "local_date": local_date.isoformat(),
        "date_label": f"{local_date:%A} {local_date.day} {local_date:%B %Y}",
        "overdue": overdue,
        "today": today,
        "soon": soon,
        "count": len(rows),
        "footer_note": (
            "You get this digest because daily reminders are on in your Rebound settings "
            f"(at {user.reminder_hour:02d}:00, {user.timezone}). Turn them off there at any time."
        ),
    }


@task(DIGEST_KIND)
async def send_reminder_digest(job: Job, ctx: WorkerContext) -> None:
    """E-mail the user's overdue and soon-due items; nothing when there are none."""
    user_id = str(job.payload["user_id"])
    local_date = date.fromisoformat(str(job.payload["local_date"]))
    with ctx.session() as session:
        user = session.get(User, user_id)
        if user is None or not user.reminders_enabled:
            return
        if utcnow().astimezone(_zone(user.timezone)).date() != local_date:
            log.info("reminder_digest_stale", user_id=user_id, local_date=local_date.isoformat())
            return  # yesterday's digest is no use today; today's has its own job
        rows = [
            (item, plan_title)
            for item, plan_title in session.exec(
                select(ActionItem, ActionPlan.title)
                .join(ActionPlan, col(ActionPlan.id) == col(ActionItem.plan_id))
                .where(
                    col(ActionItem.user_id) == user.id,
                    col(ActionItem.deleted_at).is_(None),
                    col(ActionPlan.deleted_at).is_(None),
                    col(ActionItem.status).in_(OPEN_STATUSES),
                    col(ActionItem.due_on).is_not(None),
                    col(ActionItem.due_on) <= local_date + timedelta(days=DUE_SOON_DAYS),
                )
                .order_by(col(ActionItem.due_on), col(ActionItem.id))
            ).all()
        ]
        if not rows:
            return
        context = _digest_context(user, local_date, rows)
        email = user.email
    rendered = render_email("reminder_digest", context)
    message = build_message(
        settings=ctx.settings,
        to=email,
        subject=rendered.subject,
        text=rendered.text,
        html=rendered.html,
    )
    try:
        await ctx.send_email(message)
    except EmailDeliveryError as exc:
        if exc.permanent:
            log.warning("reminder_digest_refused", user_id=user_id, reason=exc.reason)
            return
        raise
    log.info("reminder_digest_sent", user_id=user_id, items=len(rows))
