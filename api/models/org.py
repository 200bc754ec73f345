"""Organisations (careers services), their members and invites, the grants users give
them, their API keys, and the log of every read they make."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Index, UniqueConstraint
from sqlmodel import Field, SQLModel

from api.db import JSONType
from api.models.base import Timestamped, id_field, owner_field, timestamp_field

SCOPES = (
    "rejections:read",
    "reflections:read",
    "journal:read",
    "feedback:read",
    "actions:read",
    "insights:read",
)


class Organisation(Timestamped, table=True):
    __tablename__ = "organisations"

    id: str = id_field()
    name: str = Field(max_length=200)
    version: int = Field(default=1)


class OrgMember(Timestamped, table=True):
    __tablename__ = "org_members"
    __table_args__ = (UniqueConstraint("org_id", "user_id"),)

    id: str = id_field()
    org_id: str = Field(foreign_key="organisations.id", ondelete="CASCADE", max_length=36)
    user_id: str = owner_field()
    role: str = Field(max_length=16)  # owner | advisor


class OrgInvite(Timestamped, table=True):
    __tablename__ = "org_invites"

    id: str = id_field()
    org_id: str = Field(
        foreign_key="organisations.id", ondelete="CASCADE", max_length=36, index=True
    )
    email: str = Field(max_length=320)
    role: str = Field(max_length=16)
    token_hash: str = Field(max_length=64, unique=True)
    invited_by: str | None = Field(
        default=None, foreign_key="users.id", ondelete="SET NULL", max_length=36
    )
    expires_at: datetime = timestamp_field()
    accepted_at: datetime | None = timestamp_field(nullable=True)
    accepted_by: str | None = Field(
        default=None, foreign_key="users.id", ondelete="SET NULL", max_length=36
    )


class Grant(Timestamped, table=True):
    """What a user lets one organisation read; the user owns it and may revoke it."""

    __tablename__ = "grants"
    __table_args__ = (Index("ix_grants_org_id_user_id", "org_id", "user_id"),)

    id: str = id_field()
    user_id: str = owner_field()
    org_id: str = Field(foreign_key="organisations.id", ondelete="CASCADE", max_length=36)
    scopes: list[str] = Field(default_factory=list, sa_type=JSONType)
    expires_at: datetime | None = timestamp_field(nullable=True)
    revoked_at: datetime | None = timestamp_field(nullable=True)
    version: int = Field(default=1)


class ApiKey(Timestamped, table=True):
    __tablename__ = "api_keys"

    id: str = id_field()
    org_id: str = Field(
        foreign_key="organisations.id", ondelete="CASCADE", max_length=36, index=True
    )
    name: str = Field(max_length=100)
    # The first characters of the key, shown so people can tell their keys apart.
    prefix: str = Field(max_length=16)
    key_hash: str = Field(max_length=64, unique=True)
    scopes: list[str] = Field(default_factory=list, sa_type=JSONType)
    created_by: str | None = Field(
        default=None, foreign_key="users.id", ondelete="SET NULL", max_length=36
    )
    last_used_at: datetime | None = timestamp_field(nullable=True)
    revoked_at: datetime | None = timestamp_field(nullable=True)


class AccessLogEntry(SQLModel, table=True):
    """One read an organisation made of a user's data, for the user to see."""

    __tablename__ = "access_log"
    __table_args__ = (Index("ix_access_log_grant_id_id", "grant_id", "id"),)

    id: str = id_field()
    grant_id: str = Field(foreign_key="grants.id", ondelete="CASCADE", max_length=36)
    user_id: str = owner_field()
    org_id: str = Field(foreign_key="organisations.id", ondelete="CASCADE", max_length=36)
    # "api_key:<id>" or "user:<id>" (an advisor).
    actor: str = Field(max_length=80)
    method: str = Field(max_length=10)
    path: str = Field(max_length=2048)
    scope: str = Field(max_length=32)
    at: datetime = timestamp_field()
