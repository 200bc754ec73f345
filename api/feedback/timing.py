"""When things happen to a feedback request: the default send time, follow-ups, closing.

Each follow-up is due one interval after the previous message was actually sent, and an
unanswered request closes one interval after its last message. A request tracked by hand
(no e-mail) has no follow-ups Rebound can see, so it closes when an e-mail request with the
same policy would have: `max_follow_ups + 1` intervals after it was sent.
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from api.models.feedback import AWAITING_ANSWER, FeedbackChannel, FeedbackRequest

SEND_HOUR = time(9, 0)


def default_send_at(*, rejected_on: date, timezone: str, now: datetime) -> datetime:
    """The later of now and 09:00 in the user's time zone on the day after the rejection."""
    local = datetime.combine(rejected_on + timedelta(days=1), SEND_HOUR, tzinfo=ZoneInfo(timezone))
    return max(now, local.astimezone(now.tzinfo))


def interval_of(request: FeedbackRequest) -> timedelta:
    return timedelta(seconds=request.follow_up_interval_seconds)


def _awaiting(request: FeedbackRequest) -> bool:
    return request.status in AWAITING_ANSWER and request.last_sent_at is not None


def follow_up_due_at(request: FeedbackRequest) -> datetime | None:
    """When the next follow-up e-mail is due, or None when there is none to come."""
    if (
        not _awaiting(request)
        or request.channel != FeedbackChannel.email
        or request.follow_ups_sent >= request.max_follow_ups
        or request.last_sent_at is None
    ):
        return None
    return request.last_sent_at + interval_of(request)


def closes_at(request: FeedbackRequest) -> datetime | None:
    """When an unanswered request closes as `no_response`, once no follow-up is left."""
    if not _awaiting(request):
        return None
    if request.channel != FeedbackChannel.email:
        if request.first_sent_at is None:
            return None
        return request.first_sent_at + interval_of(request) * (request.max_follow_ups + 1)
    if request.follow_ups_sent < request.max_follow_ups or request.last_sent_at is None:
        return None
    return request.last_sent_at + interval_of(request)
