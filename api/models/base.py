"""Columns most tables share, and the automatic bookkeeping of tracked objects.

A *tracked* object (one a user owns and syncs to devices) gets, on every flush that adds
or changes it: `version` + 1 (its ETag), `updated_at`, and `sync_seq`, the next number of
its owner's change counter. The counter lives on the user's row, so a user's writes are
numbered in commit order and `GET /v1/sync` never misses one.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime
from itertools import groupby
from typing import Any

from sqlalchemy import BigInteger, Table, insert, text
from sqlalchemy.orm import Session as OrmSession
from sqlalchemy.orm import make_transient_to_detached
from sqlmodel import Field, SQLModel

from api.db import NewRow, UTCDateTime, new_id, number_tracked_rows, tracked, utcnow


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


_CLAIM = text("UPDATE users SET sync_seq = sync_seq + :n WHERE id = :id RETURNING sync_seq")


def claim_sync_numbers(session: OrmSession, user_id: str, count: int) -> range:
    """Reserve the next `count` numbers of the user's change counter, in one UPDATE."""
    row = session.connection().execute(_CLAIM, {"n": count, "id": user_id}).first()
    if row is not None:
        last = int(row[0])
        return range(last - count + 1, last + 1)
    # The user is being created in this very flush: count on its new row instead.
    for obj in session.new:
        if getattr(obj, "__tablename__", None) == "users" and obj.id == user_id:
            first = (obj.sync_seq or 0) + 1
            obj.sync_seq = first + count - 1
            return range(first, first + count)
    raise RuntimeError(f"tracked object of unknown user {user_id}")


def insert_rows(session: OrmSession, user_id: str, rows: Sequence[NewRow]) -> None:
    """Insert new rows of the user's data in the session's transaction, in order, the
    tracked ones numbered on the user's counter: `api.db.insert_owned_rows` for code
    that holds a session (scripts, seeds, tests) rather than a request."""
    numbers = claim_sync_numbers(session, user_id, sum(tracked(table) for table, _ in rows))
    number_tracked_rows(rows, numbers.stop - 1)
    connection = session.connection()
    for table, group in groupby(rows, key=lambda row: row[0]):
        connection.execute(insert(table), [values for _, values in group])


def table_of(model: type[SQLModel]) -> Table:
    table: Table = model.__table__  # type: ignore[attr-defined]
    return table


def insert_now(session: OrmSession, obj: SQLModel) -> None:
    """INSERT a new object at once with a plain statement, and keep it in the session as
    if it had just been loaded (persistent, nothing pending).

    For the hot create path: no unit-of-work flush, so no flush hook either; for a tracked
    object the caller sets what the hook would (version 1, `updated_at`, a number from
    `claim_sync_numbers`).
    """
    table = table_of(type(obj))
    session.connection().execute(
        insert(table), {column.key: getattr(obj, column.key) for column in table.columns}
    )
    make_transient_to_detached(obj)
    session.add(obj)


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
    # In one order (of user id), so two transactions numbering several users' changes
    # cannot deadlock on their rows.
    for user_id, objects in sorted(changed.items()):
        numbers = claim_sync_numbers(session, user_id, len(objects))
        for obj, number in zip(objects, numbers, strict=True):
            obj.sync_seq = number
