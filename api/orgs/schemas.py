"""The wire shapes of organisations, members, invites, grants, API keys and clients."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated, Literal, get_args

from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, EmailStr, Field

from api.models.org import SCOPES


class Role(StrEnum):
    owner = "owner"
    advisor = "advisor"


Scope = Literal[
    "rejections:read",
    "reflections:read",
    "journal:read",
    "feedback:read",
    "actions:read",
    "insights:read",
]
assert set(get_args(Scope)) == set(SCOPES), "Scope must list exactly SCOPES"


def _in_canonical_order(scopes: list[str]) -> list[str]:
    """Duplicates dropped, in the order SCOPES lists them, so equal sets look equal."""
    return [scope for scope in SCOPES if scope in scopes]


Scopes = Annotated[
    list[Scope], Field(min_length=1, max_length=len(SCOPES)), AfterValidator(_in_canonical_order)
]
Name = Annotated[str, Field(min_length=1, max_length=200)]


# Organisations and members


class OrgCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Name


class OrgRead(BaseModel):
    id: str
    name: str
    role: Role | None = Field(
        default=None, description="Your role in it; null when an API key asks."
    )
    created_at: datetime
    updated_at: datetime


class MemberRead(BaseModel):
    id: str
    org_id: str
    user_id: str
    role: Role
    display_name: str
    email: str
    created_at: datetime
    updated_at: datetime


class InviteCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    email: Annotated[EmailStr, Field(max_length=320)]
    role: Role = Role.advisor


class InviteRead(BaseModel):
    id: str
    org_id: str
    email: str
    role: Role
    expires_at: datetime
    accepted_at: datetime | None
    created_at: datetime
    updated_at: datetime


class InviteCreated(InviteRead):
    token: str = Field(
        description="The invite's secret, shown only now (it is also e-mailed to the invitee); "
        "the invitee accepts with `POST /v1/invites/{token}/accept`."
    )


# API keys


class ApiKeyCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Annotated[str, Field(min_length=1, max_length=100)]
    scopes: Scopes | None = Field(default=None, description="Defaults to every scope.")


class ApiKeyRead(BaseModel):
    id: str
    org_id: str
    name: str
    scopes: list[Scope]
    prefix: str = Field(description="The key's first characters, to tell keys apart.")
    last_used_at: datetime | None
    revoked_at: datetime | None
    created_at: datetime
    updated_at: datetime


class ApiKeyCreated(ApiKeyRead):
    key: str = Field(description="The secret key, shown only now: Rebound keeps only its hash.")


# Grants and the access log


class GrantCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    org_id: Annotated[str, Field(min_length=1, max_length=36)]
    scopes: Scopes
    expires_at: AwareDatetime | None = Field(
        default=None,
        description="When the grant ends by itself (with a time zone); null: until revoked.",
    )


GrantStatus = Literal["active", "expired", "revoked"]


class GrantRead(BaseModel):
    id: str
    org_id: str
    org_name: str
    scopes: list[Scope]
    expires_at: datetime | None
    revoked_at: datetime | None
    status: GrantStatus
    created_at: datetime
    updated_at: datetime


class AccessLogEntryRead(BaseModel):
    id: str
    at: datetime
    actor: str = Field(description='Who read: "api_key:<id>" or "user:<id>" (an advisor).')
    actor_type: Literal["api_key", "user"]
    actor_name: str | None = Field(description="The key's name or the advisor's display name.")
    method: str
    path: str
    scope: Scope


# What organisations see of their clients


class ClientRead(BaseModel):
    id: str = Field(description="The client's user id.")
    display_name: str
    email: str
    grant_id: str
    scopes: list[Scope] = Field(description="What the client's grant allows.")
    readable_scopes: list[Scope] = Field(
        description="What you may read: the grant's scopes within your API key's."
    )
    granted_at: datetime
    expires_at: datetime | None
