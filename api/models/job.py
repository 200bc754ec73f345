"""The work queue (a transactional outbox), domain events and idempotency records."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Index, UniqueConstraint
from sqlmodel import Field, SQLModel

from api.db import JSONType
from api.models.base import id_field, timestamp_field


class Job(SQLModel, table=True):
    """A unit of background work, written in the transaction of the change that causes it.

    `status`: pending -> running -> done | dead; a running job whose lease has run out is
    claimed again. `dedupe_key`, when set, makes a second enqueue of the same work a no-op.
    """

    __tablename__ = "jobs"
    __table_args__ = (Index("ix_jobs_status_run_at", "status", "run_at"),)

    id: str = id_field()
    kind: str = Field(max_length=64)
    payload: dict[str, Any] = Field(default_factory=dict, sa_type=JSONType)
    user_id: str | None = Field(
        default=None, foreign_key="users.id", ondelete="CASCADE", max_length=36, index=True
    )
    status: str = Field(default="pending", max_length=16)
    run_at: datetime = timestamp_field()
    attempts: int = 0
    max_attempts: int = 10
    locked_until: datetime | None = timestamp_field(nullable=True)
    locked_by: str | None = Field(default=None, max_length=64)
    last_error: str | None = Field(default=None, max_length=2000)
    dedupe_key: str | None = Field(default=None, max_length=200, unique=True)
    created_at: datetime = timestamp_field()
    finished_at: datetime | None = timestamp_field(nullable=True)


class DomainEvent(SQLModel, table=True):
    """Something that happened to a user's data, kept for webhooks to fan out."""

    __tablename__ = "domain_events"

    id: str = id_field()
    type: str = Field(max_length=64)
    user_id: str = Field(foreign_key="users.id", ondelete="CASCADE", max_length=36, index=True)
    subject_id: str = Field(max_length=36)
    occurred_at: datetime = timestamp_field()


class IdempotencyRecord(SQLModel, table=True):
    """The first response to a POST carrying an Idempotency-Key, replayed on retries."""

    __tablename__ = "idempotency_records"
    __table_args__ = (UniqueConstraint("principal", "key"),)

    id: str = id_field()
    # "user:<id>" or "api_key:<id>"; keys are scoped to whoever sent them.
    principal: str = Field(max_length=80)
    key: str = Field(max_length=255)
    user_id: str | None = Field(
        default=None, foreign_key="users.id", ondelete="CASCADE", max_length=36, index=True
    )
    method: str = Field(max_length=10)
    path: str = Field(max_length=2048)
    request_hash: str = Field(max_length=64)
    status_code: int
    response_body: str
    response_headers: dict[str, str] = Field(default_factory=dict, sa_type=JSONType)
    created_at: datetime = timestamp_field(index=True)
