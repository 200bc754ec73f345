"""Columns most tables share, and the automatic bookkeeping of tracked objects.

A *tracked* object (one a user owns and syncs to devices) gets, on every flush that adds
or changes it: `version` + 1 (its ETag), `updated_at`, and `sync_seq`, the next number of
its owner's change counter. The counter lives on the user's row, so a user's writes are
numbered in commit order and `GET /v1/sync` never misses one.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, text
from sqlalchemy.orm import Session as OrmSession
from sqlmodel import Field, SQLModel

from api.db import UTCDateTime, new_id, utcnow


def id_field() -> Any:
    return Field(default_factory=new_id, primary_key=True, max_length=36)


def owner_field(*, index: bool = True) -> Any:
    return Field(foreign_key="users.id", ondelete="CASCADE", max_length=36, index=index)


def timestamp_field(*, nullable: bool = False, index: bool = False) -> Any:
    if nullable:
        return Field(default=None, sa_type=UTCDateTime, nullable=True, index=index)
    return Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False, index=index)


class Timestamped(SQLModel):
    created_at: datetime = timestamp_field()
    updated_at: datetime = timestamp_field()


class Tracked(Timestamped):
    """A user's object with a version (ETag), a sync sequence and a soft-delete tombstone."""

    user_id: str = owner_field(index=False)
    version: int = Field(default=1, nullable=False)
    sync_seq: int = Field(default=0, sa_type=BigInteger, nullable=False)
    deleted_at: datetime | None = timestamp_field(nullable=True)


def _claim_sync_numbers(session: OrmSession, user_id: str, count: int) -> int:
    """Reserve `count` numbers of the user's change counter; returns the last one."""
    row = (
        session.connection()
        .execute(
            text("UPDATE users SET sync_seq = sync_seq + :n WHERE id = :id RETURNING sync_seq"),
            {"n": count, "id": user_id},
        )
        .first()
    )
    if row is not None:
        return int(row[0])
    # The user is being created in this very flush: count on its new row instead.
    for obj in session.new:
        if getattr(obj, "__tablename__", None) == "users" and obj.id == user_id:
            obj.sync_seq = (obj.sync_seq or 0) + count
            return int(obj.sync_seq)
    raise RuntimeError(f"tracked object of unknown user {user_id}")


def track_changes(session: OrmSession, _context: Any, _instances: Any) -> None:
    changed: dict[str, list[Tracked]] = defaultdict(list)
    now = utcnow()
    for obj in session.new:
        if isinstance(obj, Tracked):
            obj.version = 1
            obj.updated_at = now
            changed[obj.user_id].append(obj)
    for obj in session.dirty:
        if isinstance(obj, Tracked) and session.is_modified(obj, include_collections=False):
            obj.version = (obj.version or 0) + 1
            obj.updated_at = now
            changed[obj.user_id].append(obj)
    for user_id, objects in changed.items():
        last = _claim_sync_numbers(session, user_id, len(objects))
        for offset, obj in enumerate(objects):
            obj.sync_seq = last - len(objects) + 1 + offset
