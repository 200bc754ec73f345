"""Action plans, their items, and the calendar feed that publishes the items' due dates."""

from __future__ import annotations

from datetime import date, datetime
from enum import StrEnum

from sqlalchemy import Index
from sqlmodel import Field, SQLModel

from api.db import JSONType
from api.models.base import Tracked, id_field, timestamp_field


class ActionItemKind(StrEnum):
    upskill = "upskill"
    practice = "practice"
    experience = "experience"
    mentorship = "mentorship"
    networking = "networking"
    application_tailoring = "application_tailoring"
    wellbeing = "wellbeing"
    other = "other"


class ActionItemStatus(StrEnum):
    todo = "todo"
    doing = "doing"
    done = "done"
    dropped = "dropped"


OPEN_STATUSES = (ActionItemStatus.todo.value, ActionItemStatus.doing.value)


class ActionPlan(Tracked, table=True):
    """A titled plan answering some rejections and weakness skills.

    `progress` is derived from the items (see api.action_plans.service) and stored so that
    lists, the ETag and the sync feed all see the same value; nobody sets it by hand.
    """

    __tablename__ = "action_plans"
    __table_args__ = (
        Index("ix_action_plans_user_id_id", "user_id", "id"),
        Index("ix_action_plans_user_id_sync_seq", "user_id", "sync_seq"),
    )

    id: str = id_field()
    title: str = Field(max_length=200)
    goal: str | None = Field(default=None, max_length=5000)
    rejection_ids: list[str] = Field(default_factory=list, sa_type=JSONType)
    # Normalised skill names, as reflections store them in reflection_skills.
    skills: list[str] = Field(default_factory=list, sa_type=JSONType)
    progress: int = Field(default=0)


class ActionItem(Tracked, table=True):
    """One step of a plan; `due_on` is a date in the owner's time zone."""

    __tablename__ = "action_items"
    __table_args__ = (
        Index("ix_action_items_user_id_sync_seq", "user_id", "sync_seq"),
        # The agenda's keyset: live items by due date, then id.
        Index("ix_action_items_user_id_due_on_id", "user_id", "due_on", "id"),
        Index("ix_action_items_plan_id", "plan_id"),
    )

    id: str = id_field()
    plan_id: str = Field(foreign_key="action_plans.id", ondelete="CASCADE", max_length=36)
    title: str = Field(max_length=200)
    kind: str = Field(default=ActionItemKind.other.value, max_length=30)
    due_on: date | None = None
    status: str = Field(default=ActionItemStatus.todo.value, max_length=10)
    progress: int = Field(default=0)
    notes: str | None = Field(default=None, max_length=10000)


class CalendarFeed(SQLModel, table=True):
    """A user's calendar capability: only the SHA-256 of the token is kept; one per user."""

    __tablename__ = "calendar_feeds"

    id: str = id_field()
    user_id: str = Field(foreign_key="users.id", ondelete="CASCADE", max_length=36, unique=True)
    token_hash: str = Field(max_length=64, unique=True)
    created_at: datetime = timestamp_field()


__all__ = [
    "OPEN_STATUSES",
    "ActionItem",
    "ActionItemKind",
    "ActionItemStatus",
    "ActionPlan",
    "CalendarFeed",
]
