from __future__ import annotations

import re
from datetime import date, datetime
from typing import Annotated

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    EmailStr,
    Field,
    HttpUrl,
    model_validator,
)

from api.models.rejection import Channel, DecidedBy, ReasonCode, Stage

# One line of text: names reach e-mail headers (a feedback request's default recipient
# name and subject), where CR/LF would inject headers.
ONE_LINE = r"^[^\x00-\x1f\x7f]*$"
Name = Annotated[str, Field(min_length=1, max_length=200, pattern=ONE_LINE)]

_ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


def _iso_date_only(value: object) -> object:
    """Pydantic would read 0 or "0" as a Unix time (1970-01-01); a date is YYYY-MM-DD."""
    if isinstance(value, date):
        return value
    if isinstance(value, str) and _ISO_DATE.fullmatch(value):
        return value
    raise ValueError("a date is written YYYY-MM-DD")


IsoDate = Annotated[date, BeforeValidator(_iso_date_only)]


def _clean_tags(tags: list[str]) -> list[str]:
    seen: dict[str, None] = {}
    for tag in tags:
        seen.setdefault(" ".join(tag.split()), None)
    return list(seen)


Tag = Annotated[str, Field(min_length=1, max_length=40, pattern=r"^[^\x00-\x1f]+$")]
Tags = Annotated[list[Tag], Field(max_length=20), AfterValidator(_clean_tags)]


class RejectionFields(BaseModel):
    model_config = ConfigDict(extra="forbid")

    job_url: HttpUrl | None = Field(default=None, max_length=2048)
    location: str | None = Field(default=None, max_length=200, pattern=ONE_LINE)
    applied_on: IsoDate | None = None
    reason_text: str | None = Field(default=None, max_length=5000)
    contact_name: str | None = Field(default=None, max_length=200, pattern=ONE_LINE)
    contact_email: EmailStr | None = Field(default=None, max_length=320)
    notes: str | None = Field(default=None, max_length=20000)
    emotional_impact: int | None = Field(default=None, ge=1, le=5)


class RejectionCreate(RejectionFields):
    company: Name
    role_title: Name
    rejected_on: IsoDate | None = Field(
        default=None, description="Defaults to today in the user's time zone."
    )
    stage: Stage = Stage.applied
    decided_by: DecidedBy = DecidedBy.employer
    reason_code: ReasonCode = ReasonCode.no_reason_given
    channel: Channel = Channel.email
    tags: Tags = Field(default_factory=list)


class RejectionUpdate(RejectionFields):
    """Only the fields given change; `null` clears an optional field."""

    company: Name | None = None
    role_title: Name | None = None
    rejected_on: IsoDate | None = None
    stage: Stage | None = None
    decided_by: DecidedBy | None = None
    reason_code: ReasonCode | None = None
    channel: Channel | None = None
    tags: Tags | None = None

    @model_validator(mode="after")
    def _required_fields_not_cleared(self) -> RejectionUpdate:
        required = (
            "company",
            "role_title",
            "rejected_on",
            "stage",
            "decided_by",
            "reason_code",
            "channel",
            "tags",
        )
        cleared = [
            name
            for name in required
            if name in self.model_fields_set and getattr(self, name) is None
        ]
        if cleared:
            raise ValueError(f"{', '.join(cleared)} cannot be null")
        return self


class RejectionRead(BaseModel):
    id: str
    company: str
    role_title: str
    job_url: str | None
    location: str | None
    applied_on: date | None
    rejected_on: date
    stage: Stage
    decided_by: DecidedBy
    reason_code: ReasonCode
    reason_text: str | None
    channel: Channel
    contact_name: str | None
    contact_email: str | None
    tags: list[str]
    notes: str | None
    emotional_impact: int | None
    created_at: datetime
    updated_at: datetime


class RejectionFilters(BaseModel):
    """The list's query string: a page, and filters that all must match."""

    limit: int = Field(default=20, ge=1, le=100, description="Items per page (1-100).")
    cursor: str | None = Field(
        default=None, max_length=200, description="`next_cursor` of the previous page."
    )
    stage: Stage | None = None
    reason_code: ReasonCode | None = None
    company: str | None = Field(default=None, max_length=200)
    tag: str | None = Field(default=None, max_length=40)
    rejected_from: IsoDate | None = None
    rejected_to: IsoDate | None = None
    q: str | None = Field(
        default=None,
        max_length=200,
        description="Text to find in company, role, reason, notes or location.",
    )
