"""Feedback requests: asking an employer why, with the messages Rebound sends, the
timeline of everything that happened, and the addresses that asked never to hear again."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import Index, UniqueConstraint
from sqlmodel import Field, SQLModel

from api.db import JSONType
from api.models.base import Tracked, id_field, owner_field, timestamp_field


class FeedbackChannel(StrEnum):
    """`email` is sent by Rebound; the others are tracked by hand."""

    email = "email"
    linkedin = "linkedin"
    phone = "phone"
    other = "other"


class FeedbackStatus(StrEnum):
    draft = "draft"
    scheduled = "scheduled"
    sent = "sent"
    followed_up = "followed_up"
    responded = "responded"
    declined = "declined"
    no_response = "no_response"
    cancelled = "cancelled"
    opted_out = "opted_out"
    bounced = "bounced"


# Statuses in which the request still waits for something: a message or an answer.
OPEN_STATUSES = frozenset(
    {
        FeedbackStatus.draft,
        FeedbackStatus.scheduled,
        FeedbackStatus.sent,
        FeedbackStatus.followed_up,
    }
)
AWAITING_ANSWER = frozenset({FeedbackStatus.sent, FeedbackStatus.followed_up})


class FeedbackRequest(Tracked, table=True):
    """One request for feedback on one rejection, and where it stands."""

    __tablename__ = "feedback_requests"
    __table_args__ = (
        Index("ix_feedback_requests_user_id_sync_seq", "user_id", "sync_seq"),
        Index("ix_feedback_requests_user_id_id", "user_id", "id"),
        Index("ix_feedback_requests_user_id_status", "user_id", "status"),
    )

    id: str = id_field()
    rejection_id: str = Field(
        foreign_key="rejections.id", ondelete="CASCADE", max_length=36, index=True
    )
    recipient_name: str | None = Field(default=None, max_length=200)
    recipient_email: str | None = Field(default=None, max_length=320)
    channel: str = Field(default=FeedbackChannel.email.value, max_length=20)
    subject: str = Field(max_length=300)
    body: str = Field(max_length=10000)
    send_at: datetime = timestamp_field()
    max_follow_ups: int = Field(default=2)
    # Stored in seconds; on the wire an ISO-8601 duration.
    follow_up_interval_seconds: int = Field(default=7 * 24 * 3600)
    status: str = Field(default=FeedbackStatus.scheduled.value, max_length=20)
    follow_ups_sent: int = Field(default=0)
    first_sent_at: datetime | None = timestamp_field(nullable=True)
    last_sent_at: datetime | None = timestamp_field(nullable=True)
    responded_at: datetime | None = timestamp_field(nullable=True)
    closed_at: datetime | None = timestamp_field(nullable=True)
    # {outcome, text, strengths, improvements, via: link|user}
    response: dict[str, Any] | None = Field(default=None, sa_type=JSONType)
    # The first message's Message-ID: follow-ups answer it, so mail clients thread them.
    thread_message_id: str | None = Field(default=None, max_length=255)


class FeedbackMessage(SQLModel, table=True):
    """One e-mail of a request (0 = the request, 1-3 = follow-ups): the send log the caps
    count, the thread's Message-IDs, and the recipient's link token (stored hashed)."""

    __tablename__ = "feedback_messages"
    __table_args__ = (
        UniqueConstraint("request_id", "number"),
        Index("ix_feedback_messages_user_id_created_at", "user_id", "created_at"),
        Index("ix_feedback_messages_recipient_created_at", "recipient", "created_at"),
    )

    id: str = id_field()
    request_id: str = Field(foreign_key="feedback_requests.id", ondelete="CASCADE", max_length=36)
    user_id: str = owner_field(index=False)
    # Lower-cased: the per-recipient cap counts across users and spellings.
    recipient: str = Field(max_length=320)
    number: int
    message_id: str = Field(max_length=255)
    # sending: handed to the backend (or about to be); sent: the server took it.
    status: str = Field(default="sending", max_length=16)
    token_hash: str = Field(max_length=64, unique=True)
    token_expires_at: datetime = timestamp_field()
    created_at: datetime = timestamp_field()
    sent_at: datetime | None = timestamp_field(nullable=True)


class FeedbackRequestEvent(SQLModel, table=True):
    """One line of a request's timeline; `seq` orders a request's lines."""

    __tablename__ = "feedback_request_events"
    __table_args__ = (UniqueConstraint("request_id", "seq"),)

    id: str = id_field()
    request_id: str = Field(foreign_key="feedback_requests.id", ondelete="CASCADE", max_length=36)
    seq: int
    type: str = Field(max_length=40)
    at: datetime = timestamp_field()
    # The request's status right after the event.
    status: str = Field(max_length=20)
    detail: str = Field(default="", max_length=1000)


class EmailSuppression(SQLModel, table=True):
    """An address that opted out: no user of this deployment may e-mail it again."""

    __tablename__ = "email_suppressions"

    id: str = id_field()
    # Lower-cased.
    email: str = Field(max_length=320, unique=True)
    created_at: datetime = timestamp_field()
    reason: str = Field(default="opt_out", max_length=40)
