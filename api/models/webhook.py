"""Webhook subscriptions of organisations, the deliveries made to them, and every attempt."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import Index, UniqueConstraint
from sqlmodel import Field, SQLModel

from api.db import JSONType
from api.models.base import Timestamped, id_field, timestamp_field


class DeliveryStatus(StrEnum):
    pending = "pending"  # queued, not tried yet in this round
    succeeded = "succeeded"  # the receiver answered 2xx
    failed = "failed"  # the last try failed; another is scheduled (`next_attempt_at`)
    dead = "dead"  # given up: retries exhausted, subscription disabled, or consent gone


class WebhookSubscription(Timestamped, table=True):
    """An organisation's URL that wants to hear about some event types."""

    __tablename__ = "webhook_subscriptions"

    id: str = id_field()
    org_id: str = Field(
        foreign_key="organisations.id", ondelete="CASCADE", max_length=36, index=True
    )
    url: str = Field(max_length=2048)
    events: list[str] = Field(default_factory=list, sa_type=JSONType)
    enabled: bool = True
    # Why the subscription was switched off by Rebound (410, retries exhausted), if it was.
    disabled_reason: str | None = Field(default=None, max_length=300)
    disabled_at: datetime | None = timestamp_field(nullable=True)
    # The signing secret ("whsec_" + base64); kept readable because every delivery needs it.
    secret: str = Field(max_length=100)
    # After a rotation the previous secret also signs until `previous_secret_expires_at`.
    previous_secret: str | None = Field(default=None, max_length=100)
    previous_secret_expires_at: datetime | None = timestamp_field(nullable=True)
    created_by: str | None = Field(
        default=None, foreign_key="users.id", ondelete="SET NULL", max_length=36
    )
    version: int = Field(default=1)


class WebhookDelivery(Timestamped, table=True):
    """One event for one subscription; its id is the `webhook-id` header, kept on every retry."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        UniqueConstraint("event_id", "subscription_id"),
        Index("ix_webhook_deliveries_subscription_id_id", "subscription_id", "id"),
    )

    id: str = id_field()
    subscription_id: str = Field(
        foreign_key="webhook_subscriptions.id", ondelete="CASCADE", max_length=36
    )
    # Erasing the user erases their events, and with them what was sent about them.
    event_id: str = Field(foreign_key="domain_events.id", ondelete="CASCADE", max_length=36)
    event_type: str = Field(max_length=64)
    status: str = Field(default=DeliveryStatus.pending, max_length=16)
    # A redelivery starts a new round: jobs of an older round are stale and do nothing.
    generation: int = Field(default=1)
    # Tries in the current round, which pick the next delay of the retry schedule.
    tries: int = Field(default=0)
    next_attempt_at: datetime | None = timestamp_field(nullable=True)
    last_attempt_at: datetime | None = timestamp_field(nullable=True)


class WebhookAttempt(SQLModel, table=True):
    """One try at sending a delivery: when, what the receiver answered, what went wrong."""

    __tablename__ = "webhook_attempts"
    __table_args__ = (Index("ix_webhook_attempts_delivery_id_id", "delivery_id", "id"),)

    id: str = id_field()
    delivery_id: str = Field(foreign_key="webhook_deliveries.id", ondelete="CASCADE", max_length=36)
    at: datetime = timestamp_field()
    response_status: int | None = None
    error: str | None = Field(default=None, max_length=500)
    duration_ms: int | None = None
