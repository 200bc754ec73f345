"""Feedback requests: creating and changing them, their status machine, the timeline,
the recipient's answers and opt-outs, and the messages the worker sends.

The status machine (a transition it does not allow is a 409 naming the current status):

    draft -> scheduled -> sent -> followed_up … -> responded | declined | no_response
    draft/scheduled/sent/followed_up -> cancelled (the user) | opted_out (the recipient)
    sent/followed_up -> bounced

Two deliberate additions: an answer that arrives after a request closed as `no_response`
is still taken (no_response -> responded | declined), because losing a late answer helps
nobody; and a first e-mail that the recipient's server refuses outright bounces straight
from `scheduled`.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.message import EmailMessage
from typing import Any, Literal, TypeVar
from zoneinfo import ZoneInfo

from pydantic import TypeAdapter
from sqlalchemy import func, text
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlmodel import Session, col, select

from api.config import Settings
from api.db import new_id, utcnow
from api.email import HeaderInjectionError, build_message, new_message_id, render_email
from api.errors import Conflict, NotFound, Unprocessable
from api.events import record_event, record_events
from api.feedback.schemas import (
    MAX_FOLLOW_UP_INTERVAL,
    FeedbackEventRead,
    FeedbackRequestCreate,
    FeedbackRequestRead,
    FeedbackRequestUpdate,
    FeedbackResponseCreate,
)
from api.feedback.timing import closes_at, default_send_at, interval_of
from api.http.pagination import decode_cursor, encode_cursor, paginate
from api.models import Job, Rejection, User
from api.models.feedback import (
    AWAITING_ANSWER,
    OPEN_STATUSES,
    EmailSuppression,
    FeedbackChannel,
    FeedbackMessage,
    FeedbackRequest,
    FeedbackRequestEvent,
    FeedbackStatus,
)
from api.models.rejection import Stage
from api.security import hash_token, new_token
from api.sync.registry import register_sync_type
from api.worker.queue import enqueue, enqueue_many

# The recipient's link works for this long after the message that carries it was sent.
TOKEN_TTL = timedelta(days=60)
DAILY_WINDOW = timedelta(days=1)
WEEKLY_WINDOW = timedelta(days=7)

SEND_TASK = "feedback.send_message"
CLOSE_TASK = "feedback.close_unanswered"
NOTIFY_TASK = "feedback.notify_user"

# Which draft the stage reached calls for.
STAGE_TEMPLATES: dict[str, str] = {
    Stage.applied: "feedback_request_early",
    Stage.screen: "feedback_request_early",
    Stage.phone: "feedback_request_early",
    Stage.technical: "feedback_request_interview",
    Stage.onsite: "feedback_request_interview",
    Stage.final: "feedback_request_final",
    Stage.offer: "feedback_request_final",
}

# What each user action may start from (e-mail and hand-tracked requests alike, except
# where noted).
EDITABLE = frozenset({FeedbackStatus.draft, FeedbackStatus.scheduled})
ANSWERABLE = AWAITING_ANSWER | {FeedbackStatus.no_response}
ANSWERED = frozenset({FeedbackStatus.responded, FeedbackStatus.declined})

_DURATION = TypeAdapter(timedelta)
_Row = TypeVar("_Row", Rejection, User)


# -- errors and small helpers ------------------------------------------------------------


def transition_refused(request: FeedbackRequest, action: str) -> Conflict:
    """409 naming the current status, in words and as `current_status`."""
    return Conflict(
        f"This feedback request is {request.status}; it cannot be {action}.",
        extra={"current_status": request.status},
    )


def _local(moment: datetime, timezone: str) -> str:
    return f"{moment.astimezone(ZoneInfo(timezone)):%Y-%m-%d %H:%M} ({timezone})"


def _plain_name(name: str | None) -> str:
    return " ".join((name or "").split())


def _normal_email(address: str) -> str:
    return address.strip().lower()


def _interval_seconds(settings: Settings, interval: timedelta, loc: list[str | int]) -> int:
    if interval < settings.min_follow_up_interval:
        minimum = settings.min_follow_up_interval
        raise Unprocessable(
            f"follow_up_interval must be at least {_iso_duration(minimum)} on this server.",
            loc=loc,
        )
    if interval > MAX_FOLLOW_UP_INTERVAL:
        raise Unprocessable("follow_up_interval must be at most P365D.", loc=loc)
    return int(interval.total_seconds())


def _iso_duration(value: timedelta) -> str:
    return str(_DURATION.dump_python(value, mode="json"))


# -- the timeline ------------------------------------------------------------------------


def add_event(
    session: Session, request: FeedbackRequest, type: str, detail: str, *, dedupe: bool = False
) -> FeedbackRequestEvent | None:
    """One line on the request's timeline. With `dedupe`, a line that repeats the last one
    (the same type and words, as when a capped message is held back again) is not added."""
    last = session.exec(
        select(FeedbackRequestEvent)
        .where(FeedbackRequestEvent.request_id == request.id)
        .order_by(col(FeedbackRequestEvent.seq).desc())
        .limit(1)
    ).first()
    if dedupe and last is not None and last.type == type and last.detail == detail:
        return None
    event = _event_row(request, (last.seq if last is not None else 0) + 1, type, detail)
    session.add(event)
    return event


def _event_row(request: FeedbackRequest, seq: int, type: str, detail: str) -> FeedbackRequestEvent:
    return FeedbackRequestEvent(
        request_id=request.id,
        seq=seq,
        type=type,
        at=utcnow(),
        status=request.status,
        detail=detail[:1000],
    )


def _last_event_seqs(session: Session, request_ids: Collection[str]) -> dict[str, int]:
    """The number of each request's last timeline line (add_event's, for many at once)."""
    rows = session.execute(
        select(FeedbackRequestEvent.request_id, func.max(FeedbackRequestEvent.seq))
        .where(col(FeedbackRequestEvent.request_id).in_(sorted(set(request_ids))))
        .group_by(col(FeedbackRequestEvent.request_id))
    ).all()
    return {str(request_id): int(seq) for request_id, seq in rows}


def list_events(
    *, session: Session, request: FeedbackRequest, limit: int, cursor: str | None
) -> tuple[list[FeedbackEventRead], str | None]:
    """The request's timeline, oldest first."""
    statement = select(FeedbackRequestEvent).where(FeedbackRequestEvent.request_id == request.id)
    if cursor is not None:
        after = decode_cursor(cursor)
        if not after.isdigit():
            raise Unprocessable("The cursor is not one this API gave out.", loc=["query", "cursor"])
        statement = statement.where(col(FeedbackRequestEvent.seq) > int(after))
    rows = list(session.exec(statement.order_by(col(FeedbackRequestEvent.seq)).limit(limit + 1)))
    next_cursor = encode_cursor(str(rows[limit - 1].seq)) if len(rows) > limit else None
    items = [
        FeedbackEventRead(
            type=row.type, at=row.at, status=FeedbackStatus(row.status), detail=row.detail
        )
        for row in rows[:limit]
    ]
    return items, next_cursor


# -- suppression (opt-out) ---------------------------------------------------------------


def is_suppressed(session: Session, address: str) -> bool:
    return (
        session.exec(
            select(EmailSuppression.id).where(EmailSuppression.email == _normal_email(address))
        ).first()
        is not None
    )


def _check_not_suppressed(session: Session, address: str) -> None:
    if is_suppressed(session, address):
        raise Unprocessable(
            "recipient_email: this address asked not to receive e-mail from Rebound, so no "
            "request can be e-mailed to it. You can still track one you send yourself "
            "(channel linkedin, phone or other).",
            loc=["body", "recipient_email"],
            error_type="recipient_opted_out",
        )


def opt_out(*, session: Session, address: str) -> int:
    """Suppress `address` for every user of this deployment, for good; its open requests
    become `opted_out`. Returns how many requests that closed."""
    address = _normal_email(address)
    values = {"id": new_id(), "email": address, "created_at": utcnow(), "reason": "opt_out"}
    if session.get_bind().dialect.name == "postgresql":
        session.execute(
            postgresql_insert(EmailSuppression)
            .values(**values)
            .on_conflict_do_nothing(index_elements=["email"])
        )
    else:
        session.execute(
            sqlite_insert(EmailSuppression)
            .values(**values)
            .on_conflict_do_nothing(index_elements=["email"])
        )
    requests = session.exec(
        select(FeedbackRequest)
        .where(
            func.lower(FeedbackRequest.recipient_email) == address,
            FeedbackRequest.channel == FeedbackChannel.email.value,
            col(FeedbackRequest.status).in_([status.value for status in OPEN_STATUSES]),
        )
        .order_by(col(FeedbackRequest.id))
        .with_for_update()
    ).all()
    for request in requests:
        _close(
            session,
            request,
            FeedbackStatus.opted_out,
            "The recipient opted out of e-mail from Rebound; nothing more will be sent.",
        )
    return len(requests)


# -- messages' content -------------------------------------------------------------------


def _context(*, user: User, rejection: Rejection, recipient_name: str | None) -> dict[str, Any]:
    return {
        "recipient_name": _plain_name(recipient_name) or None,
        "candidate_name": _plain_name(user.display_name),
        "company": rejection.company,
        "role_title": rejection.role_title,
    }


def default_message(
    *, user: User, rejection: Rejection, recipient_name: str | None
) -> tuple[str, str]:
    """The subject and body the stage reached calls for."""
    rendered = render_email(
        STAGE_TEMPLATES.get(rejection.stage, "feedback_request_early"),
        _context(user=user, rejection=rejection, recipient_name=recipient_name),
    )
    return rendered.subject, rendered.text.strip()


def _link(settings: Settings, token: str) -> str:
    return f"{settings.base_url.rstrip('/')}/f/{token}"


def build_feedback_email(
    *,
    settings: Settings,
    request: FeedbackRequest,
    rejection: Rejection,
    user: User,
    number: int,
    token: str,
    message_id: str,
) -> EmailMessage:
    """Message `number` of the request (0 = the request, then follow-ups), carrying the
    recipient's link and RFC 8058 one-click opt-out; follow-ups thread under the first."""
    form_url = _link(settings, token)
    unsubscribe_url = f"{form_url}/opt-out"
    context = {
        **_context(user=user, rejection=rejection, recipient_name=request.recipient_name),
        "form_url": form_url,
        "unsubscribe_url": unsubscribe_url,
    }
    if number == 0:
        rendered = render_email(
            "feedback_request_message",
            {**context, "subject": request.subject, "body": request.body},
        )
    else:
        original = request.subject
        rendered = render_email(
            "feedback_follow_up",
            {
                **context,
                "number": number,
                "max_follow_ups": request.max_follow_ups,
                "original_subject": original[4:]
                if original.lower().startswith("re: ")
                else original,
            },
        )
    thread = request.thread_message_id if number > 0 else None
    return build_message(
        settings=settings,
        to=request.recipient_email or "",
        to_name=request.recipient_name,
        subject=rendered.subject,
        text=rendered.text,
        html=rendered.html,
        reply_to=user.email,
        reply_to_name=_plain_name(user.display_name) or None,
        message_id=message_id,
        in_reply_to=thread,
        references=[thread] if thread else (),
        list_unsubscribe_url=unsubscribe_url,
        one_click_unsubscribe=True,
    )


def _check_headers(
    *,
    settings: Settings,
    user: User,
    recipient_email: str | None,
    recipient_name: str | None,
    subject: str,
) -> None:
    """422 for anything that would smuggle a header into the e-mail: the same check the
    worker's message building makes, done before anything is stored."""
    try:
        build_message(
            settings=settings,
            to=recipient_email or "recipient@example.invalid",
            to_name=recipient_name,
            subject=subject,
            text="",
            reply_to=user.email,
        )
    except HeaderInjectionError as exc:
        field = str(exc).split(" ", 1)[0]
        if field == "subject":
            loc = "subject"
        elif field == "to" and recipient_name and _plain_name(recipient_name) != recipient_name:
            loc = "recipient_name"
        elif field == "to":
            loc = "recipient_email"
        else:
            loc = "body"
        raise Unprocessable(
            f"{loc}: must not contain line breaks or control characters.",
            loc=["body", loc],
            error_type="header_injection",
        ) from exc


# -- reading -----------------------------------------------------------------------------


def get_feedback_request(
    *, session: Session, owner: User, request_id: str, lock: bool = False
) -> FeedbackRequest:
    """The owner's live request (on a live rejection), or 404."""
    statement = (
        select(FeedbackRequest)
        .join(Rejection, col(Rejection.id) == FeedbackRequest.rejection_id)
        .where(
            FeedbackRequest.id == request_id,
            FeedbackRequest.user_id == owner.id,
            col(FeedbackRequest.deleted_at).is_(None),
            col(Rejection.deleted_at).is_(None),
        )
    )
    if lock:
        statement = statement.with_for_update(of=FeedbackRequest)
    request = session.exec(statement).first()
    if request is None:
        raise NotFound("There is no feedback request with this id.")
    return request


def list_feedback_requests(
    *,
    session: Session,
    owner: User,
    limit: int,
    cursor: str | None,
    status: FeedbackStatus | None = None,
    rejection_id: str | None = None,
) -> tuple[list[FeedbackRequest], str | None]:
    """The owner's live requests, newest first, optionally one rejection's or one status."""
    statement = (
        select(FeedbackRequest)
        .join(Rejection, col(Rejection.id) == FeedbackRequest.rejection_id)
        .where(
            FeedbackRequest.user_id == owner.id,
            col(FeedbackRequest.deleted_at).is_(None),
            col(Rejection.deleted_at).is_(None),
        )
    )
    if status is not None:
        statement = statement.where(FeedbackRequest.status == status.value)
    if rejection_id is not None:
        statement = statement.where(FeedbackRequest.rejection_id == rejection_id)
    return paginate(session, statement, FeedbackRequest.id, limit=limit, cursor=cursor)


def serialize_feedback_requests(
    _session: Session, requests: Sequence[FeedbackRequest]
) -> list[dict[str, Any]]:
    """What `GET /v1/feedback-requests/{id}` returns, for each request (sync, export)."""
    return [FeedbackRequestRead.of(request).model_dump(mode="json") for request in requests]


register_sync_type("feedback_request", FeedbackRequest, serialize_feedback_requests)


# -- creating and changing ---------------------------------------------------------------


def _schedule_first_message(session: Session, request: FeedbackRequest) -> None:
    """Queue the first e-mail for `send_at`, or move the queued one there."""
    key = f"feedback:{request.id}:message:0"
    job = session.exec(select(Job).where(Job.dedupe_key == key)).first()
    if job is None:
        enqueue(
            session,
            SEND_TASK,
            {"request_id": request.id, "number": 0},
            run_at=request.send_at,
            user_id=request.user_id,
            dedupe_key=key,
        )
    elif job.status == "pending":
        job.run_at = request.send_at
        session.add(job)


def create_feedback_request(
    *,
    session: Session,
    settings: Settings,
    owner: User,
    rejection: Rejection,
    data: FeedbackRequestCreate,
) -> FeedbackRequest:
    """A new request, scheduled (e-mail) or a draft, with the defaults the spec gives."""
    now = utcnow()
    contact_email = rejection.contact_email
    if data.recipient_email is None:
        recipient_email = contact_email
        recipient_name = data.recipient_name or rejection.contact_name
    else:
        recipient_email = str(data.recipient_email)
        same_person = contact_email and _normal_email(contact_email) == _normal_email(
            recipient_email
        )
        recipient_name = data.recipient_name or (rejection.contact_name if same_person else None)

    by_email = data.channel == FeedbackChannel.email
    if by_email:
        if not recipient_email:
            raise Unprocessable(
                "recipient_email: an e-mail request needs an address, and the rejection has "
                "no contact e-mail to use.",
                loc=["body", "recipient_email"],
            )
        _check_not_suppressed(session, recipient_email)
    elif data.status == "scheduled":
        raise Unprocessable(
            "status: only e-mail requests are scheduled; a request you send yourself starts "
            "as a draft and POST …/send records that you sent it.",
            loc=["body", "status"],
        )
    interval = _interval_seconds(settings, data.follow_up_interval, ["body", "follow_up_interval"])
    send_at = data.send_at or default_send_at(
        rejected_on=rejection.rejected_on, timezone=owner.timezone, now=now
    )
    send_at = max(send_at, now)

    subject, body = data.subject, data.body
    if subject is None or body is None:
        default_subject, default_body = default_message(
            user=owner, rejection=rejection, recipient_name=recipient_name
        )
        subject = subject or default_subject
        body = body or default_body
    _check_headers(
        settings=settings,
        user=owner,
        recipient_email=recipient_email,
        recipient_name=recipient_name,
        subject=subject,
    )

    status = (
        FeedbackStatus.scheduled if by_email and data.status != "draft" else FeedbackStatus.draft
    )
    request = FeedbackRequest.model_validate(
        {
            "rejection_id": rejection.id,
            "user_id": owner.id,
            "recipient_name": recipient_name,
            "recipient_email": recipient_email,
            "channel": data.channel.value,
            "subject": subject,
            "body": body,
            "send_at": send_at,
            "max_follow_ups": data.max_follow_ups,
            "follow_up_interval_seconds": interval,
            "status": status.value,
        }
    )
    session.add(request)
    session.flush()
    if status == FeedbackStatus.scheduled:
        add_event(
            session,
            request,
            "scheduled",
            f"Created; the e-mail to {recipient_email} goes out at "
            f"{_local(send_at, owner.timezone)}.",
        )
        _schedule_first_message(session, request)
    else:
        add_event(session, request, "created", "Created as a draft.")
    return request


def update_feedback_request(
    *,
    session: Session,
    settings: Settings,
    owner: User,
    request: FeedbackRequest,
    data: FeedbackRequestUpdate,
) -> FeedbackRequest:
    """Change a draft or scheduled request; `status: scheduled` schedules a draft."""
    if request.status not in EDITABLE:
        raise transition_refused(request, "changed")
    changes = data.model_dump(exclude_unset=True)
    new_status = changes.pop("status", None)
    schedule = False
    if new_status == FeedbackStatus.draft and request.status == FeedbackStatus.scheduled:
        raise transition_refused(request, "turned back into a draft (cancel it instead)")
    if new_status == FeedbackStatus.scheduled and request.status == FeedbackStatus.draft:
        if request.channel != FeedbackChannel.email:
            raise Unprocessable(
                "status: only e-mail requests are scheduled; POST …/send records that you "
                "sent this one yourself.",
                loc=["body", "status"],
            )
        schedule = True

    now = utcnow()
    if "recipient_email" in changes:
        changes["recipient_email"] = (
            str(changes["recipient_email"]) if changes["recipient_email"] else None
        )
    if "follow_up_interval" in changes:
        changes["follow_up_interval_seconds"] = _interval_seconds(
            settings, changes.pop("follow_up_interval"), ["body", "follow_up_interval"]
        )
    if "send_at" in changes:
        changes["send_at"] = max(changes["send_at"], now)
    recipient_email = changes.get("recipient_email", request.recipient_email)
    if request.channel == FeedbackChannel.email:
        if not recipient_email:
            raise Unprocessable(
                "recipient_email: an e-mail request needs an address.",
                loc=["body", "recipient_email"],
            )
        if "recipient_email" in changes or schedule:
            _check_not_suppressed(session, recipient_email)
    _check_headers(
        settings=settings,
        user=owner,
        recipient_email=recipient_email,
        recipient_name=changes.get("recipient_name", request.recipient_name),
        subject=changes.get("subject", request.subject),
    )

    changed = [name for name, value in changes.items() if getattr(request, name) != value]
    for name in changed:
        setattr(request, name, changes[name])
    if schedule:
        request.status = FeedbackStatus.scheduled.value
    if changed:
        names = ", ".join("follow_up_interval" if n.endswith("_seconds") else n for n in changed)
        add_event(session, request, "updated", f"Changed {names}.")
    if schedule:
        add_event(
            session,
            request,
            "scheduled",
            f"Scheduled; the e-mail goes out at {_local(request.send_at, owner.timezone)}.",
        )
    if request.status == FeedbackStatus.scheduled and (schedule or "send_at" in changed):
        _schedule_first_message(session, request)
    session.add(request)
    return request


def send_now(*, session: Session, owner: User, request: FeedbackRequest) -> FeedbackRequest:
    """E-mail: queue the first message now. By hand: record that the user sent it."""
    now = utcnow()
    if request.channel == FeedbackChannel.email:
        if request.status not in EDITABLE:
            raise transition_refused(request, "sent again")
        request.status = FeedbackStatus.scheduled.value
        request.send_at = now
        session.add(request)
        add_event(session, request, "send_requested", "You asked to send it now.")
        _schedule_first_message(session, request)
        return request
    if request.status != FeedbackStatus.draft:
        raise transition_refused(request, "recorded as sent again")
    request.status = FeedbackStatus.sent.value
    request.first_sent_at = request.last_sent_at = now
    session.add(request)
    add_event(session, request, "sent", f"You sent it yourself ({request.channel}).")
    record_event(session, type="feedback_request.sent", user_id=owner.id, subject_id=request.id)
    enqueue(
        session,
        CLOSE_TASK,
        {"request_id": request.id},
        run_at=closes_at(request),
        user_id=request.user_id,
        dedupe_key=f"feedback:{request.id}:close",
    )
    return request


def _close(session: Session, request: FeedbackRequest, status: FeedbackStatus, detail: str) -> None:
    request.status = status.value
    request.closed_at = request.closed_at or utcnow()
    session.add(request)
    add_event(session, request, status.value, detail)
    record_event(
        session, type="feedback_request.closed", user_id=request.user_id, subject_id=request.id
    )


def cancel(*, session: Session, request: FeedbackRequest) -> FeedbackRequest:
    """Stop the request: nothing more is sent."""
    if request.status not in OPEN_STATUSES:
        raise transition_refused(request, "cancelled")
    _close(session, request, FeedbackStatus.cancelled, "You cancelled it; nothing more is sent.")
    return request


def record_answer(
    *,
    session: Session,
    request: FeedbackRequest,
    answer: FeedbackResponseCreate,
    via: Literal["link", "user"],
) -> FeedbackRequest:
    """The employer's answer (or their polite no): follow-ups stop, the user hears of it."""
    if request.status not in ANSWERABLE:
        raise transition_refused(request, "answered")
    now = utcnow()
    late = request.status == FeedbackStatus.no_response
    request.status = answer.outcome
    request.responded_at = now
    request.closed_at = request.closed_at or now
    request.response = {
        "outcome": answer.outcome,
        "text": (answer.text or "").strip() or None,
        "strengths": [point.strip() for point in answer.strengths if point.strip()],
        "improvements": [point.strip() for point in answer.improvements if point.strip()],
        "via": via,
    }
    session.add(request)
    how = "through the answer page" if via == "link" else "as you recorded it"
    what = (
        "They answered" if answer.outcome == "responded" else "They said they do not give feedback"
    )
    add_event(
        session,
        request,
        answer.outcome,
        f"{what}, {how}{' (after the request had closed)' if late else ''}; nothing more is sent.",
    )
    record_event(
        session, type="feedback_request.responded", user_id=request.user_id, subject_id=request.id
    )
    if via == "link":
        enqueue(
            session,
            NOTIFY_TASK,
            {"request_id": request.id},
            user_id=request.user_id,
            dedupe_key=f"feedback:{request.id}:notify",
        )
    return request


def retire_for_deleted_rejection(*, session: Session, rejection: Rejection) -> None:
    """When a rejection is deleted: its open requests are cancelled and all of them get a
    tombstone, so nothing more is sent and synced devices drop them. Call it before
    changing the rejection, so that the request rows are locked before the user's row (the
    order the worker takes them in). Without it the worker still sends nothing for a
    deleted rejection and the API hides its requests; this adds the tombstones."""
    requests = session.exec(
        select(FeedbackRequest)
        .where(FeedbackRequest.rejection_id == rejection.id)
        .order_by(col(FeedbackRequest.id))
        .with_for_update()
    ).all()
    now = utcnow()
    for request in requests:
        if request.status in OPEN_STATUSES:
            _close(
                session,
                request,
                FeedbackStatus.cancelled,
                "The rejection was deleted; nothing more is sent.",
            )
        request.deleted_at = request.deleted_at or now
        session.add(request)


# -- the recipient's link ----------------------------------------------------------------

LinkState = Literal["open", "answered", "expired", "closed"]


@dataclass
class Link:
    message: FeedbackMessage
    request: FeedbackRequest
    rejection: Rejection
    user: User

    @property
    def state(self) -> LinkState:
        if self.request.status in ANSWERED:
            return "answered"
        if self.message.token_expires_at <= utcnow():
            return "expired"
        if (
            self.request.status not in ANSWERABLE
            or self.request.deleted_at is not None
            or self.rejection.deleted_at is not None
        ):
            return "closed"
        return "open"


def find_link(session: Session, token: str, *, lock: bool = False) -> Link | None:
    """What a recipient's token points at, or None for a token nobody was given."""
    if not 16 <= len(token) <= 128:
        return None
    message = session.exec(
        select(FeedbackMessage).where(FeedbackMessage.token_hash == hash_token(token))
    ).first()
    if message is None:
        return None
    statement = select(FeedbackRequest).where(FeedbackRequest.id == message.request_id)
    request = session.exec(statement.with_for_update() if lock else statement).first()
    if request is None:
        return None
    rejection = session.get(Rejection, request.rejection_id)
    user = session.get(User, request.user_id)
    if rejection is None or user is None:
        return None
    return Link(message=message, request=request, rejection=rejection, user=user)


# -- what the worker does ----------------------------------------------------------------


@dataclass(frozen=True)
class Wait:
    """Not now: try again at `until`."""

    until: datetime
    reason: str


@dataclass(frozen=True)
class Outgoing:
    email: EmailMessage
    recipient: str


def _lock_request(session: Session, request_id: str) -> FeedbackRequest | None:
    return _lock_requests(session, [request_id]).get(request_id)


def _lock_requests(session: Session, request_ids: Collection[str]) -> dict[str, FeedbackRequest]:
    """The requests, locked for this transaction: in id order, as every transaction that
    locks several requests takes them (opt_out too), so two of them cannot deadlock."""
    rows = session.exec(
        select(FeedbackRequest)
        .where(col(FeedbackRequest.id).in_(sorted(set(request_ids))))
        .order_by(col(FeedbackRequest.id))
        .with_for_update()
    ).all()
    return {request.id: request for request in rows}


def _rows_by_id(session: Session, model: type[_Row], ids: Collection[str]) -> dict[str, _Row]:
    table: Any = model
    rows = session.exec(select(model).where(col(table.id).in_(sorted(set(ids))))).all()
    return {row.id: row for row in rows}


def _messages_of(
    session: Session, request_ids: Collection[str]
) -> dict[tuple[str, int], FeedbackMessage]:
    rows = session.exec(
        select(FeedbackMessage).where(col(FeedbackMessage.request_id).in_(sorted(set(request_ids))))
    ).all()
    return {(row.request_id, row.number): row for row in rows}


def _serialise_caps(session: Session, *keys: str) -> None:
    """On PostgreSQL, one sender at a time per user and per recipient while counting, so
    two workers cannot both take the last place under a cap. (SQLite's write lock, taken at
    BEGIN, already serialises every writer.) The locks are taken in one order (of their
    numbers), so two workers locking several keys each cannot deadlock."""
    if not keys or session.get_bind().dialect.name != "postgresql":
        return
    session.execute(
        text(
            "SELECT pg_advisory_xact_lock(lock_id) FROM (SELECT DISTINCT "
            "hashtextextended(key, 0) AS lock_id FROM unnest(CAST(:keys AS text[])) AS key "
            "ORDER BY lock_id) AS ordered"
        ),
        {"keys": sorted(set(keys))},
    )


def _cap_frees_at(
    session: Session,
    condition: Any,
    *,
    cap: int,
    window: timedelta,
    now: datetime,
    exclude: str | None,
) -> datetime | None:
    """None while under the cap; else when enough of the window's messages age out of it."""
    statement = select(FeedbackMessage.created_at).where(
        condition,
        col(FeedbackMessage.status).in_(["sending", "sent"]),
        col(FeedbackMessage.created_at) > now - window,
    )
    if exclude is not None:
        statement = statement.where(FeedbackMessage.id != exclude)
    times = sorted(session.exec(statement).all())
    if len(times) < cap:
        return None
    return times[len(times) - cap] + window


def _counts_in_window(
    session: Session, column: Any, values: Collection[str], *, window: timedelta, now: datetime
) -> dict[str, int]:
    """How many messages each value of `column` has in the window, as the caps count."""
    rows = session.execute(
        select(column, func.count())
        .where(
            column.in_(sorted(set(values))),
            col(FeedbackMessage.status).in_(["sending", "sent"]),
            col(FeedbackMessage.created_at) > now - window,
        )
        .group_by(column)
    ).all()
    return {str(value): int(count) for value, count in rows}


def _expected_status(request: FeedbackRequest, number: int) -> bool:
    if number == 0:
        return request.status == FeedbackStatus.scheduled
    return (
        request.status in AWAITING_ANSWER
        and request.follow_ups_sent == number - 1
        and number <= request.max_follow_ups
    )


def prepare_message(
    *, session: Session, settings: Settings, request_id: str, number: int
) -> Outgoing | Wait | None:
    """Everything before handing message `number` to the backend: re-check the request,
    the time, the opt-out list and the caps; make the link token; build the e-mail.
    None means there is nothing to send (any more)."""
    return prepare_messages(session=session, settings=settings, items=[(request_id, number)])[0]


@dataclass
class _Ready:
    index: int
    request: FeedbackRequest
    rejection: Rejection
    user: User
    number: int
    recipient: str


def prepare_messages(
    *, session: Session, settings: Settings, items: Sequence[tuple[str, int]]
) -> list[Outgoing | Wait | None]:
    """`prepare_message` for many (request id, number) pairs in one transaction, each as
    if after the ones before it (a cap counts the messages prepared before it here);
    the rows every check needs are read up front, a few queries for the whole batch."""
    results: list[Outgoing | Wait | None] = [None] * len(items)
    requests = _lock_requests(session, [request_id for request_id, _number in items])
    rejections = _rows_by_id(session, Rejection, [r.rejection_id for r in requests.values()])
    users = _rows_by_id(session, User, [r.user_id for r in requests.values()])
    recipients = {_normal_email(r.recipient_email or "") for r in requests.values()}
    suppressed = set(
        session.exec(
            select(EmailSuppression.email).where(col(EmailSuppression.email).in_(recipients))
        ).all()
    )
    now = utcnow()
    ready: list[_Ready] = []
    for index, (request_id, number) in enumerate(items):
        request = requests.get(request_id)
        if request is None or request.channel != FeedbackChannel.email:
            continue
        if not _expected_status(request, number):
            continue
        rejection = rejections.get(request.rejection_id)
        user = users.get(request.user_id)
        if rejection is None or user is None:
            continue
        if request.deleted_at is not None or rejection.deleted_at is not None:
            _close(
                session,
                request,
                FeedbackStatus.cancelled,
                "The rejection was deleted; nothing more is sent.",
            )
            continue
        due = (
            request.send_at
            if number == 0
            else (request.last_sent_at or request.send_at) + interval_of(request)
        )
        if due > now:
            results[index] = Wait(due, "not due yet")
            continue
        recipient = _normal_email(request.recipient_email or "")
        if recipient in suppressed:
            _close(
                session,
                request,
                FeedbackStatus.opted_out,
                "The recipient opted out of e-mail from Rebound; nothing more will be sent.",
            )
            continue
        ready.append(_Ready(index, request, rejection, user, number, recipient))
    if not ready:
        return results

    messages = _messages_of(session, [item.request.id for item in ready])
    _serialise_caps(
        session,
        *(f"feedback-cap-user:{item.user.id}" for item in ready),
        *(f"feedback-cap-to:{item.recipient}" for item in ready),
    )
    daily_cap = settings.email_daily_cap_per_user
    weekly_cap = settings.email_weekly_cap_per_recipient
    # Counted once for the batch: a message whose counts, plus every message of the batch
    # that could come before it, stay under both caps is under them; only the others are
    # counted exactly (the query sees the messages prepared before it in this transaction).
    per_user = _counts_in_window(
        session,
        col(FeedbackMessage.user_id),
        [item.user.id for item in ready],
        window=DAILY_WINDOW,
        now=now,
    )
    per_recipient = _counts_in_window(
        session,
        col(FeedbackMessage.recipient),
        [item.recipient for item in ready],
        window=WEEKLY_WINDOW,
        now=now,
    )
    for item in ready:
        per_user[item.user.id] = per_user.get(item.user.id, 0) + 1
        per_recipient[item.recipient] = per_recipient.get(item.recipient, 0) + 1

    for item in ready:
        request, user, number, recipient = item.request, item.user, item.number, item.recipient
        message = messages.get((request.id, number))
        if per_user[user.id] > daily_cap or per_recipient[recipient] > weekly_cap:
            wait = _cap_wait(session, settings, item, message, now)
            if wait is not None:
                results[item.index] = wait
                continue
        token = new_token()
        if message is None:
            message = FeedbackMessage(
                request_id=request.id,
                user_id=user.id,
                recipient=recipient,
                number=number,
                message_id=new_message_id(settings),
                token_hash=hash_token(token),
                token_expires_at=now + TOKEN_TTL,
            )
            messages[(request.id, number)] = message
        else:
            # A previous attempt died before it was recorded: send it again under the same
            # Message-ID (so a copy that did arrive is recognisably the same message) with a
            # fresh link, since only the hash of the old one was kept.
            message.token_hash = hash_token(token)
            message.token_expires_at = now + TOKEN_TTL
            message.status = "sending"
        message.created_at = now
        session.add(message)
        email = build_feedback_email(
            settings=settings,
            request=request,
            rejection=item.rejection,
            user=user,
            number=number,
            token=token,
            message_id=message.message_id,
        )
        results[item.index] = Outgoing(email=email, recipient=recipient)
    return results


def _cap_wait(
    session: Session,
    settings: Settings,
    item: _Ready,
    message: FeedbackMessage | None,
    now: datetime,
) -> Wait | None:
    """The exact cap check for one message: None, or when it may go (noted on the
    timeline once)."""
    request, user = item.request, item.user
    exclude = message.id if message is not None else None
    holds = [
        (
            _cap_frees_at(
                session,
                FeedbackMessage.user_id == user.id,
                cap=settings.email_daily_cap_per_user,
                window=DAILY_WINDOW,
                now=now,
                exclude=exclude,
            ),
            f"your limit of {settings.email_daily_cap_per_user} e-mails a day",
        ),
        (
            _cap_frees_at(
                session,
                FeedbackMessage.recipient == item.recipient,
                cap=settings.email_weekly_cap_per_recipient,
                window=WEEKLY_WINDOW,
                now=now,
                exclude=exclude,
            ),
            f"the limit of {settings.email_weekly_cap_per_recipient} e-mails a week to one "
            "address (across all Rebound users)",
        ),
    ]
    waits = [(until, why) for until, why in holds if until is not None]
    if not waits:
        return None
    until, why = max(waits)
    which = "The e-mail" if item.number == 0 else f"Follow-up {item.number}"
    add_event(
        session,
        request,
        "delayed",
        f"{which} is held back by {why}; it goes out at "
        f"{_local(until, user.timezone)} or soon after.",
        dedupe=True,
    )
    return Wait(until, f"cap: {why}")


def record_message_sent(*, session: Session, request_id: str, number: int) -> None:
    """The server took message `number`: advance the request and queue what comes next."""
    record_messages_sent(session=session, items=[(request_id, number)])


def record_messages_sent(*, session: Session, items: Sequence[tuple[str, int]]) -> None:
    """`record_message_sent` for many (request id, number) pairs in one transaction."""
    requests = _lock_requests(session, [request_id for request_id, _number in items])
    messages = _messages_of(session, list(requests))
    last_seq = _last_event_seqs(session, list(requests))
    now = utcnow()
    follow_ons: list[Job] = []
    domain_events: list[tuple[str, str, str]] = []
    for request_id, number in items:
        request = requests.get(request_id)
        message = messages.get((request_id, number))
        if request is None or message is None or message.status == "sent":
            continue
        message.status = "sent"
        message.sent_at = now
        session.add(message)
        request.last_sent_at = now
        if number == 0:
            request.first_sent_at = now
            request.thread_message_id = message.message_id
            if request.status == FeedbackStatus.scheduled:
                request.status = FeedbackStatus.sent.value
            event_type, detail = "sent", f"Sent to {request.recipient_email}."
            domain_events.append(("feedback_request.sent", request.user_id, request.id))
        else:
            request.follow_ups_sent = max(request.follow_ups_sent, number)
            if request.status in AWAITING_ANSWER:
                request.status = FeedbackStatus.followed_up.value
            event_type = "follow_up_sent"
            detail = (
                f"Follow-up {number} of {request.max_follow_ups} sent to {request.recipient_email}."
            )
        last_seq[request.id] = last_seq.get(request.id, 0) + 1
        session.add(_event_row(request, last_seq[request.id], event_type, detail))
        session.add(request)
        if request.status not in AWAITING_ANSWER:
            continue
        next_at = now + interval_of(request)
        if number < request.max_follow_ups:
            follow_ons.append(
                Job(
                    kind=SEND_TASK,
                    payload={"request_id": request.id, "number": number + 1},
                    run_at=next_at,
                    user_id=request.user_id,
                    dedupe_key=f"feedback:{request.id}:message:{number + 1}",
                )
            )
        else:
            follow_ons.append(
                Job(
                    kind=CLOSE_TASK,
                    payload={"request_id": request.id},
                    run_at=next_at,
                    user_id=request.user_id,
                    dedupe_key=f"feedback:{request.id}:close",
                )
            )
    record_events(session, domain_events)
    enqueue_many(session, follow_ons)


def record_delivery_failure(
    *, session: Session, request_id: str, number: int, reason: str, permanent: bool
) -> None:
    """A refused message bounces the request; a passing failure is noted and retried."""
    request = _lock_request(session, request_id)
    if request is None:
        return
    reason = reason[:300]
    if not permanent:
        add_event(
            session,
            request,
            "delivery_failed",
            f"The mail server could not take the message ({reason}); Rebound will try again.",
            dedupe=True,
        )
        return
    message = session.exec(
        select(FeedbackMessage).where(
            FeedbackMessage.request_id == request.id, FeedbackMessage.number == number
        )
    ).first()
    if message is not None:
        message.status = "failed"
        session.add(message)
    if request.status in AWAITING_ANSWER or request.status == FeedbackStatus.scheduled:
        _close(
            session,
            request,
            FeedbackStatus.bounced,
            f"The recipient's mail server refused the message: {reason}",
        )


def close_unanswered(*, session: Session, request_id: str) -> Wait | None:
    """An interval after the last message with no answer: `no_response`."""
    request = _lock_request(session, request_id)
    if request is None or request.status not in AWAITING_ANSWER:
        return None
    due = closes_at(request)
    if due is None:
        return None
    if due > utcnow():
        return Wait(due, "not due yet")
    messages = 1 + request.follow_ups_sent if request.channel == FeedbackChannel.email else 1
    _close(
        session,
        request,
        FeedbackStatus.no_response,
        f"No answer after {messages} message{'s' if messages > 1 else ''}; closed as no "
        "response. An answer that still comes through the link is recorded.",
    )
    return None


def response_notice(
    *, session: Session, settings: Settings, request_id: str
) -> EmailMessage | None:
    """The e-mail telling the user that the employer answered through the link."""
    request = session.get(FeedbackRequest, request_id)
    if request is None or request.response is None:
        return None
    rejection = session.get(Rejection, request.rejection_id)
    user = session.get(User, request.user_id)
    if rejection is None or user is None:
        return None
    response = request.response
    rendered = render_email(
        "feedback_response_received",
        {
            "user_name": _plain_name(user.display_name) or None,
            "sender": _plain_name(request.recipient_name) or "Your contact",
            "company": rejection.company,
            "role_title": rejection.role_title,
            "outcome": response.get("outcome"),
            "text": response.get("text"),
            "strengths": response.get("strengths") or [],
            "improvements": response.get("improvements") or [],
        },
    )
    return build_message(
        settings=settings,
        to=user.email,
        to_name=_plain_name(user.display_name) or None,
        subject=rendered.subject,
        text=rendered.text,
        html=rendered.html,
    )
