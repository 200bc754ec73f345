"""The wire shapes of webhook subscriptions and their delivery log."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal, get_args

from pydantic import AfterValidator, AnyHttpUrl, BaseModel, ConfigDict, Field

from api.events import EVENT_TYPES
from api.models.webhook import DeliveryStatus

EventType = Literal[
    "rejection.created",
    "rejection.updated",
    "reflection.completed",
    "feedback_request.sent",
    "feedback_request.responded",
    "feedback_request.closed",
    "action_item.completed",
    "grant.created",
    "grant.revoked",
]
assert set(get_args(EventType)) == set(EVENT_TYPES), "EventType must list exactly EVENT_TYPES"


def _in_canonical_order(events: list[str]) -> list[str]:
    """Duplicates dropped, in the spec's order, so equal sets look equal."""
    return [name for name in EVENT_TYPES if name in events]


EventTypes = Annotated[
    list[EventType],
    Field(min_length=1, max_length=len(EVENT_TYPES)),
    AfterValidator(_in_canonical_order),
]


def _as_text(url: AnyHttpUrl) -> str:
    return str(url)


WebhookUrl = Annotated[
    AnyHttpUrl,
    Field(
        max_length=2048,
        description="Where deliveries are POSTed: `https`, resolving only to public addresses.",
    ),
    AfterValidator(_as_text),
]


class WebhookCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: WebhookUrl
    events: EventTypes


class WebhookUpdate(BaseModel):
    """Only the fields given change. `enabled: true` switches a disabled subscription back on."""

    model_config = ConfigDict(extra="forbid")

    url: WebhookUrl | None = None
    events: EventTypes | None = None
    enabled: bool | None = None


class WebhookRead(BaseModel):
    id: str
    org_id: str
    url: str
    events: list[str]
    enabled: bool
    disabled_reason: str | None = Field(
        description="Why Rebound switched the subscription off (a 410, or retries exhausted)."
    )
    disabled_at: datetime | None
    previous_secret_expires_at: datetime | None = Field(
        description="Until then the previous secret also signs every delivery."
    )
    created_at: datetime
    updated_at: datetime


class WebhookWithSecret(WebhookRead):
    secret: str = Field(
        description="The signing secret (`whsec_…`); shown only now, store it safely."
    )


class AttemptRead(BaseModel):
    at: datetime
    response_status: int | None = Field(description="The receiver's HTTP status, if it answered.")
    error: str | None = Field(description="What went wrong; null for a 2xx answer.")
    duration_ms: int | None


class DeliveryRead(BaseModel):
    id: str
    webhook_id: str = Field(
        description="The `webhook-id` header of this delivery: the same on every retry "
        "and redelivery, so a receiver can drop duplicates."
    )
    subscription_id: str
    event_type: str
    status: DeliveryStatus
    attempts: list[AttemptRead] = Field(description="Every attempt, oldest first.")
    next_attempt_at: datetime | None = Field(description="When the next retry is due, if any.")
    created_at: datetime
