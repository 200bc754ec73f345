"""The calendar feed: an iCalendar (RFC 5545) document of the user's open, dated items,
at a capability URL whose token is stored only as a hash."""

from __future__ import annotations

from datetime import timedelta

from icalendar import Calendar, Event, vDuration
from sqlmodel import Session, col, select

from api.config import Settings
from api.errors import NotFound
from api.models import User
from api.models.action_plan import OPEN_STATUSES, ActionItem, ActionPlan, CalendarFeed
from api.security import hash_token, new_token

PRODID = "-//Rebound//Action items//EN"
# Calendar apps poll a subscribed feed; an hour keeps it fresh without hammering the API.
REFRESH_INTERVAL = timedelta(hours=1)


def feed_url(settings: Settings, token: str) -> str:
    return f"{settings.base_url.rstrip('/')}/v1/calendar/{token}.ics"


def rotate_feed(*, session: Session, user: User) -> str:
    """A new token for the user's feed (the previous one stops working); returns the token."""
    # The user's row lock makes two concurrent rotations take turns instead of both
    # inserting a feed.
    session.exec(select(User.id).where(col(User.id) == user.id).with_for_update()).one()
    token = new_token()
    feed = session.exec(select(CalendarFeed).where(col(CalendarFeed.user_id) == user.id)).first()
    if feed is None:
        feed = CalendarFeed(user_id=user.id, token_hash=hash_token(token))
    else:
        feed.token_hash = hash_token(token)
    session.add(feed)
    return token


def revoke_feed(*, session: Session, user: User) -> None:
    """Stop the user's feed; revoking a feed that does not exist changes nothing."""
    feed = session.exec(select(CalendarFeed).where(col(CalendarFeed.user_id) == user.id)).first()
    if feed is not None:
        session.delete(feed)


def feed_owner(*, session: Session, token: str) -> User:
    """The user whose feed this token opens, or 404 (unknown and revoked tokens alike)."""
    user = session.exec(
        select(User)
        .join(CalendarFeed, col(CalendarFeed.user_id) == col(User.id))
        .where(col(CalendarFeed.token_hash) == hash_token(token))
    ).first()
    if user is None:
        raise NotFound("There is no calendar feed at this address.")
    return user


def render_feed(*, session: Session, user: User) -> bytes:
    """One all-day VEVENT per live item that is `todo` or `doing` and has a due date."""
    rows = session.exec(
        select(ActionItem, ActionPlan.title)
        .join(ActionPlan, col(ActionPlan.id) == col(ActionItem.plan_id))
        .where(
            col(ActionItem.user_id) == user.id,
            col(ActionItem.deleted_at).is_(None),
            col(ActionItem.due_on).is_not(None),
            col(ActionItem.status).in_(OPEN_STATUSES),
            col(ActionPlan.deleted_at).is_(None),
        )
        .order_by(col(ActionItem.due_on), col(ActionItem.id))
    ).all()

    calendar = Calendar()
    calendar.add("prodid", PRODID)
    calendar.add("version", "2.0")
    calendar.add("calscale", "GREGORIAN")
    calendar.add("method", "PUBLISH")
    calendar.add("x-wr-calname", "Rebound actions")
    calendar.add("x-wr-caldesc", "Open action items from your Rebound plans, on their due dates.")
    calendar.add("refresh-interval", vDuration(REFRESH_INTERVAL), parameters={"VALUE": "DURATION"})
    calendar.add("x-published-ttl", vDuration(REFRESH_INTERVAL))
    for item, plan_title in rows:
        assert item.due_on is not None  # filtered above
        event = Event()
        # Stable across fetches, so a calendar app updates the event instead of adding one.
        event.add("uid", f"action-item-{item.id}@rebound")
        event.add("dtstamp", item.updated_at)
        event.add("created", item.created_at)
        event.add("last-modified", item.updated_at)
        event.add("sequence", item.version - 1)
        event.add("dtstart", item.due_on)
        event.add("dtend", item.due_on + timedelta(days=1))
        event.add("summary", item.title)
        description = [f"Plan: {plan_title}", f"Progress: {item.progress}%"]
        if item.notes:
            description += ["", item.notes]
        event.add("description", "\n".join(description))
        event.add("categories", [item.kind])
        event.add("status", "CONFIRMED")
        event.add("transp", "TRANSPARENT")  # a due date, not a busy block of time
        calendar.add_component(event)
    ical: bytes = calendar.to_ical()
    return ical
