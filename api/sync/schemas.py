"""The sync page on the wire (spec: `upserted`, `deleted`, `next_cursor`, `has_more`)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field


class SyncUpsert(BaseModel):
    type: str = Field(
        description="rejection, reflection, feedback_request, action_plan, action_item or profile."
    )
    object: dict[str, Any] = Field(
        description="The object in full, exactly as its own GET returns it."
    )


class SyncDeletion(BaseModel):
    type: str
    id: str


class SyncPage(BaseModel):
    """Changes after a cursor, oldest first; each changed object once, in its latest state."""

    upserted: list[SyncUpsert]
    deleted: list[SyncDeletion]
    next_cursor: str = Field(
        description="Give it as `since` for the next page, or later to get what changed since."
    )
    has_more: bool = Field(description="True while more changes wait after `next_cursor`.")
