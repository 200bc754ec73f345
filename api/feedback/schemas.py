"""Feedback requests on the wire."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated, Any, Literal

from pydantic import (
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    EmailStr,
    Field,
    model_validator,
)

from api.feedback.timing import closes_at, follow_up_due_at
from api.models.feedback import FeedbackChannel, FeedbackRequest, FeedbackStatus

DEFAULT_FOLLOW_UP_INTERVAL = timedelta(days=7)
MAX_FOLLOW_UP_INTERVAL = timedelta(days=365)


def _iso_8601_duration(value: Any) -> Any:
    # Pydantic would also take seconds as a number or "7 days"; the contract is ISO 8601.
    if isinstance(value, timedelta):
        return value
    if not isinstance(value, str) or not value.lstrip("+-").startswith("P"):
        raise ValueError('must be an ISO-8601 duration such as "P7D" or "PT12H"')
    return value


Duration = Annotated[
    timedelta,
    BeforeValidator(_iso_8601_duration),
    Field(description='An ISO-8601 duration, for example "P7D" (seven days) or "PT12H".'),
]
RecipientName = Annotated[str, Field(min_length=1, max_length=200)]
Subject = Annotated[str, Field(min_length=1, max_length=300)]
Body = Annotated[str, Field(min_length=1, max_length=10000)]
Point = Annotated[str, Field(min_length=1, max_length=500)]
Points = Annotated[list[Point], Field(max_length=10)]


class FeedbackRequestCreate(BaseModel):
    """A new request; what is left out comes from the rejection and the templates."""

    model_config = ConfigDict(extra="forbid")

    recipient_name: RecipientName | None = Field(
        default=None, description="Defaults to the rejection's contact name."
    )
    recipient_email: EmailStr | None = Field(
        default=None,
        max_length=320,
        description="Defaults to the rejection's contact e-mail; needed for the e-mail channel.",
    )
    channel: FeedbackChannel = Field(
        default=FeedbackChannel.email,
        description="`email` is sent by Rebound; `linkedin`, `phone` and `other` you send yourself.",
    )
    subject: Subject | None = Field(
        default=None, description="Defaults to a template chosen by the stage reached."
    )
    body: Body | None = Field(
        default=None,
        description=(
            "Plain text; defaults to a template chosen by the stage reached. Every e-mail "
            "adds the link to the one-minute answer page and an opt-out line below it."
        ),
    )
    send_at: AwareDatetime | None = Field(
        default=None,
        description=(
            "Defaults to the later of now and 09:00 (your time zone) on the day after the "
            "rejection; a time in the past means now."
        ),
    )
    max_follow_ups: int = Field(default=2, ge=0, le=3)
    follow_up_interval: Duration = DEFAULT_FOLLOW_UP_INTERVAL
    status: Literal["draft", "scheduled"] | None = Field(
        default=None,
        description="`draft` keeps an e-mail request from being sent; other channels are drafts.",
    )


class FeedbackRequestUpdate(BaseModel):
    """Only the fields given change; allowed while the request is `draft` or `scheduled`."""

    model_config = ConfigDict(extra="forbid")

    recipient_name: RecipientName | None = None
    recipient_email: EmailStr | None = Field(default=None, max_length=320)
    subject: Subject | None = None
    body: Body | None = None
    send_at: AwareDatetime | None = None
    max_follow_ups: int | None = Field(default=None, ge=0, le=3)
    follow_up_interval: Duration | None = None
    status: Literal["draft", "scheduled"] | None = Field(
        default=None, description="`scheduled` schedules a draft e-mail request."
    )

    @model_validator(mode="after")
    def _required_fields_not_cleared(self) -> FeedbackRequestUpdate:
        required = ("subject", "body", "send_at", "max_follow_ups", "follow_up_interval", "status")
        cleared = [
            name
            for name in required
            if name in self.model_fields_set and getattr(self, name) is None
        ]
        if cleared:
            raise ValueError(f"{', '.join(cleared)} cannot be null")
        return self


class FeedbackAnswer(BaseModel):
    """What the employer answered."""

    outcome: Literal["responded", "declined"]
    text: str | None = None
    strengths: list[str] = Field(default_factory=list)
    improvements: list[str] = Field(default_factory=list)


class FeedbackResponseCreate(BaseModel):
    """An answer the user received another way (by e-mail, on the phone …)."""

    model_config = ConfigDict(extra="forbid")

    outcome: Literal["responded", "declined"] = Field(
        description="`declined`: they said they do not give feedback."
    )
    text: str | None = Field(default=None, max_length=10000)
    strengths: Points = Field(default_factory=list)
    improvements: Points = Field(default_factory=list)


class FeedbackRequestRead(BaseModel):
    id: str
    rejection_id: str
    recipient_name: str | None
    recipient_email: str | None
    channel: FeedbackChannel
    subject: str
    body: str
    send_at: datetime
    max_follow_ups: int
    follow_up_interval: Duration
    status: FeedbackStatus
    follow_ups_sent: int
    first_sent_at: datetime | None
    last_sent_at: datetime | None
    follow_up_due_at: datetime | None = Field(
        description="When the next follow-up goes out, while one is still to come."
    )
    closes_at: datetime | None = Field(
        description="When an unanswered request closes as `no_response`, once it is known."
    )
    responded_at: datetime | None
    closed_at: datetime | None
    response: FeedbackAnswer | None
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, request: FeedbackRequest) -> FeedbackRequestRead:
        return cls(
            id=request.id,
            rejection_id=request.rejection_id,
            recipient_name=request.recipient_name,
            recipient_email=request.recipient_email,
            channel=FeedbackChannel(request.channel),
            subject=request.subject,
            body=request.body,
            send_at=request.send_at,
            max_follow_ups=request.max_follow_ups,
            follow_up_interval=timedelta(seconds=request.follow_up_interval_seconds),
            status=FeedbackStatus(request.status),
            follow_ups_sent=request.follow_ups_sent,
            first_sent_at=request.first_sent_at,
            last_sent_at=request.last_sent_at,
            follow_up_due_at=follow_up_due_at(request),
            closes_at=closes_at(request),
            responded_at=request.responded_at,
            closed_at=request.closed_at,
            response=FeedbackAnswer.model_validate(
                {key: value for key, value in request.response.items() if key != "via"}
            )
            if request.response
            else None,
            created_at=request.created_at,
            updated_at=request.updated_at,
        )


class FeedbackEventRead(BaseModel):
    type: str = Field(description="What happened, for example `sent`, `follow_up_sent`, `delayed`.")
    at: datetime
    status: FeedbackStatus = Field(description="The request's status right after the event.")
    detail: str


class FeedbackEventPage(BaseModel):
    items: list[FeedbackEventRead]
    next_cursor: str | None
