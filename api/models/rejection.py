"""Rejections and the reflection each one carries."""

from __future__ import annotations

from datetime import date, datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import Index, UniqueConstraint
from sqlmodel import Field, SQLModel

from api.db import JSONType
from api.models.base import Timestamped, Tracked, id_field, owner_field, timestamp_field


class Stage(StrEnum):
    applied = "applied"
    screen = "screen"
    phone = "phone"
    technical = "technical"
    onsite = "onsite"
    final = "final"
    offer = "offer"


STAGE_ORDER: list[Stage] = list(Stage)


class DecidedBy(StrEnum):
    employer = "employer"
    candidate = "candidate"
    unknown = "unknown"


class ReasonCode(StrEnum):
    skills_gap = "skills_gap"
    other_candidate = "other_candidate"
    culture_fit = "culture_fit"
    compensation = "compensation"
    role_closed = "role_closed"
    logistics = "logistics"
    withdrew = "withdrew"
    no_reason_given = "no_reason_given"
    other = "other"


class Channel(StrEnum):
    email = "email"
    phone = "phone"
    portal = "portal"
    in_person = "in_person"
    ghosted = "ghosted"


class Rejection(Tracked, table=True):
    __tablename__ = "rejections"
    __table_args__ = (
        Index("ix_rejections_user_id_id", "user_id", "id"),
        Index("ix_rejections_user_id_sync_seq", "user_id", "sync_seq"),
        Index("ix_rejections_user_id_rejected_on", "user_id", "rejected_on"),
    )

    id: str = id_field()
    company: str = Field(max_length=200)
    role_title: str = Field(max_length=200)
    job_url: str | None = Field(default=None, max_length=2048)
    location: str | None = Field(default=None, max_length=200)
    applied_on: date | None = None
    rejected_on: date
    stage: str = Field(default=Stage.applied.value, max_length=20)
    decided_by: str = Field(default=DecidedBy.employer.value, max_length=20)
    reason_code: str = Field(default=ReasonCode.no_reason_given.value, max_length=30)
    reason_text: str | None = Field(default=None, max_length=5000)
    channel: str = Field(default=Channel.email.value, max_length=20)
    contact_name: str | None = Field(default=None, max_length=200)
    contact_email: str | None = Field(default=None, max_length=320)
    tags: list[str] = Field(default_factory=list, sa_type=JSONType)
    notes: str | None = Field(default=None, max_length=20000)
    emotional_impact: int | None = None


class Reflection(Tracked, table=True):
    """The seven-step reflection on one rejection; its steps are rows of their own."""

    __tablename__ = "reflections"
    __table_args__ = (Index("ix_reflections_user_id_sync_seq", "user_id", "sync_seq"),)

    id: str = id_field()
    rejection_id: str = Field(
        foreign_key="rejections.id", ondelete="CASCADE", max_length=36, unique=True
    )
    completed_at: datetime | None = timestamp_field(nullable=True)
    # Denormalised from the steps for insights' mood series: step 1's `intensity` and
    # step 7's `confidence`, null while that step is skipped, not started or has no value
    # (kept by api.reflections.service.write_step).
    emotion_intensity: int | None = None
    confidence: int | None = None


class ReflectionStep(Timestamped, table=True):
    """One step; writing it bumps its reflection, which carries the ETag and the sync number."""

    __tablename__ = "reflection_steps"
    __table_args__ = (UniqueConstraint("reflection_id", "key"),)

    id: str = id_field()
    user_id: str = owner_field()
    reflection_id: str = Field(foreign_key="reflections.id", ondelete="CASCADE", max_length=36)
    key: str = Field(max_length=32)
    order: int
    status: str = Field(default="not_started", max_length=20)
    content: dict[str, Any] = Field(default_factory=dict, sa_type=JSONType)


class ReflectionSkill(SQLModel, table=True):
    """A normalised skill named in step 2, one row per (reflection, kind, skill), for insights.

    Rewritten whenever step 2 is written; `kind` is "strength" or "weakness".
    """

    __tablename__ = "reflection_skills"
    __table_args__ = (
        UniqueConstraint("reflection_id", "kind", "skill"),
        Index("ix_reflection_skills_user_id_kind_skill", "user_id", "kind", "skill"),
        # Insights' skill counts, from each rejection in range, read from the index alone.
        Index("ix_reflection_skills_rejection_id_kind_skill", "rejection_id", "kind", "skill"),
    )

    id: str = id_field()
    user_id: str = owner_field(index=False)
    reflection_id: str = Field(foreign_key="reflections.id", ondelete="CASCADE", max_length=36)
    # Indexed by the covering index above, which starts with it.
    rejection_id: str = Field(foreign_key="rejections.id", ondelete="CASCADE", max_length=36)
    kind: str = Field(max_length=10)
    skill: str = Field(max_length=100)
