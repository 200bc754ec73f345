from __future__ import annotations

from datetime import datetime
from typing import Annotated
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import AfterValidator, BaseModel, ConfigDict, EmailStr, Field, model_validator


def _known_time_zone(value: str) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"{value!r} is not an IANA time zone such as 'Europe/London'") from exc
    return value


TimeZoneName = Annotated[str, Field(min_length=1, max_length=64), AfterValidator(_known_time_zone)]
ShortText = Annotated[str, Field(min_length=1, max_length=200)]


class UserRead(BaseModel):
    id: str
    email: str
    display_name: str
    timezone: str
    locale: str
    reminders_enabled: bool
    reminder_hour: int
    created_at: datetime
    updated_at: datetime


class UserUpdate(BaseModel):
    """Fields to change; a new password needs the current one."""

    model_config = ConfigDict(extra="forbid")

    email: Annotated[EmailStr, Field(max_length=320)] | None = None
    display_name: str | None = Field(default=None, max_length=100)
    timezone: TimeZoneName | None = None
    locale: str | None = Field(
        default=None, min_length=2, max_length=35, pattern=r"^[A-Za-z]{2,3}([-_][A-Za-z0-9]{2,8})*$"
    )
    reminders_enabled: bool | None = None
    reminder_hour: int | None = Field(
        default=None, ge=0, le=23, description="Local hour (0-23) from which the digest goes."
    )
    password: str | None = Field(default=None, min_length=8, max_length=128)
    current_password: str | None = Field(default=None, max_length=128)

    @model_validator(mode="after")
    def _password_change_needs_current(self) -> UserUpdate:
        if (self.password is not None or self.email is not None) and not self.current_password:
            raise ValueError("changing the e-mail or password needs current_password")
        return self


class ProfileValue(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Annotated[str, Field(min_length=1, max_length=60)]
    weight: int = Field(ge=1, le=5)


class ProfileWrite(BaseModel):
    model_config = ConfigDict(extra="forbid")

    goals: list[ShortText] = Field(default_factory=list, max_length=20)
    values: list[ProfileValue] = Field(default_factory=list, max_length=20)
    target_roles: list[ShortText] = Field(default_factory=list, max_length=20)

    @model_validator(mode="after")
    def _value_names_unique(self) -> ProfileWrite:
        names = [value.name.strip().casefold() for value in self.values]
        if len(names) != len(set(names)):
            raise ValueError("each value may appear only once")
        return self


class ProfileRead(ProfileWrite):
    id: str
    created_at: datetime
    updated_at: datetime
