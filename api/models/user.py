"""The account: users, their refresh-token families, and their profile."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger
from sqlmodel import Field

from api.db import JSONType
from api.models.base import Timestamped, Tracked, id_field, owner_field, timestamp_field


class User(Timestamped, table=True):
    __tablename__ = "users"

    id: str = id_field()
    # Stored lower-cased: e-mail addresses are unique without regard to case.
    email: str = Field(max_length=320, unique=True)
    password_hash: str = Field(max_length=255)
    display_name: str = Field(default="", max_length=100)
    timezone: str = Field(default="UTC", max_length=64)
    locale: str = Field(default="en", max_length=35)
    # Raised on password change and logout-everywhere: older access tokens stop working.
    session_version: int = Field(default=1)
    # The user's change counter, see api.models.base.
    sync_seq: int = Field(default=0, sa_type=BigInteger)
    version: int = Field(default=1)
    reminders_enabled: bool = Field(default=False)
    reminder_hour: int = Field(default=8)


class RefreshToken(Timestamped, table=True):
    """One refresh token; tokens that replace one another share a `family_id`."""

    __tablename__ = "refresh_tokens"

    id: str = id_field()
    user_id: str = owner_field()
    family_id: str = Field(max_length=36, index=True)
    token_hash: str = Field(max_length=64, unique=True)
    expires_at: datetime = timestamp_field()
    used_at: datetime | None = timestamp_field(nullable=True)
    revoked_at: datetime | None = timestamp_field(nullable=True)


class Profile(Tracked, table=True):
    """Long-term goals, values and target roles; one per user."""

    __tablename__ = "profiles"

    id: str = id_field()
    user_id: str = Field(foreign_key="users.id", ondelete="CASCADE", max_length=36, unique=True)
    goals: list[str] = Field(default_factory=list, sa_type=JSONType)
    values: list[dict[str, Any]] = Field(default_factory=list, sa_type=JSONType)
    target_roles: list[str] = Field(default_factory=list, sa_type=JSONType)
