from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic.json_schema import SkipJsonSchema

from api.models.action_plan import ActionItemKind, ActionItemStatus
from api.rejections.schemas import IsoDate

Title = Annotated[str, Field(min_length=1, max_length=200)]
Skill = Annotated[str, Field(min_length=1, max_length=100)]
RejectionIdList = Annotated[list[Annotated[str, Field(max_length=36)]], Field(max_length=100)]
SkillList = Annotated[list[Skill], Field(max_length=30)]
Progress = Annotated[int, Field(ge=0, le=100)]


class _DerivedProgress(BaseModel):
    """A plan's `progress` comes from its items: a body that sets it is refused by name."""

    model_config = ConfigDict(extra="forbid")

    progress: SkipJsonSchema[Any] = Field(default=None, exclude=True)

    @field_validator("progress", mode="before")
    @classmethod
    def _refuse_progress(cls, _value: Any) -> Any:
        raise ValueError("progress is derived from the plan's items and cannot be set")


class ActionPlanCreate(_DerivedProgress):
    title: Title
    goal: str | None = Field(default=None, max_length=5000)
    rejection_ids: RejectionIdList = Field(
        default_factory=list, description="Ids of the user's rejections this plan answers."
    )
    skills: SkillList = Field(
        default_factory=list,
        description="Weakness skills the plan works on; normalised as reflections normalise them.",
    )


class ActionPlanUpdate(_DerivedProgress):
    """Only the fields given change; `goal: null` clears the goal."""

    title: Title | None = None
    goal: str | None = Field(default=None, max_length=5000)
    rejection_ids: RejectionIdList | None = None
    skills: SkillList | None = None

    @model_validator(mode="after")
    def _required_fields_not_cleared(self) -> ActionPlanUpdate:
        cleared = [
            name
            for name in ("title", "rejection_ids", "skills")
            if name in self.model_fields_set and getattr(self, name) is None
        ]
        if cleared:
            raise ValueError(f"{', '.join(cleared)} cannot be null")
        return self


class ActionPlanRead(BaseModel):
    id: str
    title: str
    goal: str | None
    rejection_ids: list[str]
    skills: list[str]
    progress: int = Field(
        description="Rounded mean of the items' progress, dropped items left out; 0 with none."
    )
    created_at: datetime
    updated_at: datetime


class ActionItemCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    title: Title
    kind: ActionItemKind = ActionItemKind.other
    due_on: IsoDate | None = Field(default=None, description="A date in the user's time zone.")
    status: ActionItemStatus = ActionItemStatus.todo
    progress: Progress | None = Field(
        default=None, description="0-100; defaults to 0, or 100 when the status is `done`."
    )
    notes: str | None = Field(default=None, max_length=10000)


class ActionItemUpdate(BaseModel):
    """Only the fields given change; `null` clears `due_on` or `notes`."""

    model_config = ConfigDict(extra="forbid")

    plan_id: str | None = Field(
        default=None, max_length=36, description="Move the item to another of the user's plans."
    )
    title: Title | None = None
    kind: ActionItemKind | None = None
    due_on: IsoDate | None = None
    status: ActionItemStatus | None = None
    progress: Progress | None = None
    notes: str | None = Field(default=None, max_length=10000)

    @model_validator(mode="after")
    def _required_fields_not_cleared(self) -> ActionItemUpdate:
        cleared = [
            name
            for name in ("plan_id", "title", "kind", "status", "progress")
            if name in self.model_fields_set and getattr(self, name) is None
        ]
        if cleared:
            raise ValueError(f"{', '.join(cleared)} cannot be null")
        return self


class ActionItemRead(BaseModel):
    id: str
    plan_id: str
    title: str
    kind: ActionItemKind
    due_on: date | None
    status: ActionItemStatus
    progress: int
    notes: str | None
    created_at: datetime
    updated_at: datetime


class CalendarFeedRead(BaseModel):
    url: str = Field(
        description="The feed's address; anyone holding it can read the feed, so keep it private."
    )
