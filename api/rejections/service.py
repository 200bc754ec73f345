"""Rejections: logging them, finding them, changing and deleting them."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import (
    ColumnElement,
    Select,
    String,
    Table,
    bindparam,
    cast,
    func,
    or_,
    type_coerce,
)
from sqlalchemy import select as select_columns
from sqlalchemy.dialects.postgresql import JSONB
from sqlmodel import Session, col, select

from api.auth.service import session_is_open
from api.db import NewRow, new_id, utcnow
from api.errors import NotFound, Unprocessable
from api.events import event_rows, record_event
from api.feedback.service import retire_for_deleted_rejection
from api.http.pagination import PageQuery, json_item, keyset_page, page_query
from api.models import Reflection, Rejection, User
from api.models.base import insert_rows
from api.reflections.service import reflection_rows
from api.rejections.schemas import (
    RejectionCreate,
    RejectionFilters,
    RejectionRead,
    RejectionUpdate,
)

# The list reads the table, not the model, and the database writes its items' JSON (see
# api/http/pagination.py).
_rejections: Table = Rejection.__table__  # type: ignore[attr-defined]


def local_today(user: User) -> date:
    return _today_in(user.timezone)


def _today_in(timezone: str) -> date:
    return datetime.now(ZoneInfo(timezone)).date()


def _check_not_in_future(day: date, today: date, field: str) -> None:
    if day > today:
        raise Unprocessable(f"{field} cannot be in the future.", loc=["body", field])


@dataclass(frozen=True)
class NewRejection:
    """A rejection to log: the answer, and the rows that make it."""

    read: RejectionRead
    rows: list[NewRow]


def new_rejection(*, owner_id: str, timezone: str, data: RejectionCreate) -> NewRejection:
    """A rejection to log, with its reflection, and the event that tells subscribers;
    checked against the owner's calendar, not written yet: the create inserts the rows
    (`api.db.insert_owned_rows`; in a session, `create_rejection`).

    The rejection and its reflection are two changes of the owner's data, numbered in
    that order when inserted, and both start at version 1 (as the flush hook does).
    """
    today = _today_in(timezone)
    rejected_on = data.rejected_on or today
    _check_not_in_future(rejected_on, today, "rejected_on")
    if data.applied_on and data.applied_on > rejected_on:
        raise Unprocessable("applied_on must not be after rejected_on.", loc=["body", "applied_on"])
    now = utcnow()
    rejection = {
        # Text as stored (enums by value, the URL as a string); dates stay dates.
        **data.model_dump(mode="json"),
        "applied_on": data.applied_on,
        "rejected_on": rejected_on,
        "id": new_id(),
        "user_id": owner_id,
        "version": 1,
        "created_at": now,
        "updated_at": now,
    }
    return NewRejection(
        read=RejectionRead.model_validate(rejection),
        rows=[
            (_rejections, rejection),
            *reflection_rows(user_id=owner_id, rejection_id=rejection["id"], now=now),
            *event_rows(type="rejection.created", user_id=owner_id, subject_id=rejection["id"]),
        ],
    )


def create_rejection(*, session: Session, owner: User, data: RejectionCreate) -> Rejection:
    """Log a rejection in an open session (scripts, seeds, tests); the API's create
    inserts the same rows on the driver (api/rejections/router.py)."""
    new = new_rejection(owner_id=owner.id, timezone=owner.timezone, data=data)
    insert_rows(session, owner.id, new.rows)
    return session.get_one(Rejection, new.read.id)


def get_rejection(
    *, session: Session, owner: User, rejection_id: str, lock: bool = False
) -> Rejection:
    """The owner's live rejection, or 404 (deleted and other users' ones alike)."""
    statement = select(Rejection).where(
        Rejection.id == rejection_id,
        Rejection.user_id == owner.id,
        col(Rejection.deleted_at).is_(None),
    )
    rejection = session.exec(statement.with_for_update() if lock else statement).first()
    if rejection is None:
        raise NotFound("There is no rejection with this id.")
    return rejection


def list_rejections(
    *,
    session: Session,
    owner_id: str,
    filters: RejectionFilters,
    session_version: int | None = None,
) -> PageQuery:
    """The page of the owner's live rejections, newest first, filtered: rows of the id
    and the item's JSON (`RejectionRead`). With `session_version`, only while the owner's
    sessions are open (`api.auth.service.session_is_open`)."""
    values: dict[str, Any] = {"user_id": owner_id}
    if session_version is not None:  # only while the owner's session is open
        values["session_version"] = session_version
    if filters.stage is not None:
        values["stage"] = filters.stage.value
    if filters.reason_code is not None:
        values["reason_code"] = filters.reason_code.value
    if filters.company:
        values["company"] = filters.company.strip().lower()
    if filters.tag:
        values["tag"] = filters.tag
    if filters.rejected_from is not None:
        values["rejected_from"] = filters.rejected_from
    if filters.rejected_to is not None:
        values["rejected_to"] = filters.rejected_to
    if filters.q:
        escaped = filters.q.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        values["q"] = f"%{escaped}%"
    statement = _list_statement(
        session.get_bind().dialect.name, frozenset(values), after_cursor=filters.cursor is not None
    )
    return page_query(statement, values, limit=filters.limit, cursor=filters.cursor)


@functools.cache
def _list_statement(dialect: str, given: frozenset[str], *, after_cursor: bool) -> Select[Any]:
    """The list's select for one combination of filters, with every value bound, built
    once: SQLAlchemy then reuses its compiled form, and a request only binds values."""
    c = _rejections.c
    conditions: list[ColumnElement[bool]] = [
        c.user_id == bindparam("user_id"),
        c.deleted_at.is_(None),
    ]
    if "session_version" in given:
        conditions.append(session_is_open())
    if "stage" in given:
        conditions.append(c.stage == bindparam("stage"))
    if "reason_code" in given:
        conditions.append(c.reason_code == bindparam("reason_code"))
    if "company" in given:
        conditions.append(func.lower(c.company) == bindparam("company"))
    if "tag" in given:
        conditions.append(_has_tag(dialect))
    if "rejected_from" in given:
        conditions.append(c.rejected_on >= bindparam("rejected_from"))
    if "rejected_to" in given:
        conditions.append(c.rejected_on <= bindparam("rejected_to"))
    if "q" in given:
        text_columns = (c.company, c.role_title, c.reason_text, c.notes, c.location)
        conditions.append(
            or_(*(func.lower(column).like(bindparam("q"), escape="\\") for column in text_columns))
        )
    items = select_columns(c.id, json_item(Rejection, RejectionRead, dialect))
    return keyset_page(items.where(*conditions), c.id, after_cursor=after_cursor)


def _has_tag(dialect: str) -> ColumnElement[bool]:
    tags = _rejections.c.tags
    if dialect == "postgresql":
        return type_coerce(tags, JSONB).contains(
            func.jsonb_build_array(cast(bindparam("tag"), String))
        )
    each = func.json_each(tags).table_valued("value")
    return select(each.c.value).where(each.c.value == bindparam("tag")).exists()


def update_rejection(
    *, session: Session, owner: User, rejection: Rejection, data: RejectionUpdate
) -> Rejection:
    """Change the given fields and tell subscribers."""
    changes = data.model_dump(mode="json", exclude_unset=True)
    if data.rejected_on is not None:
        _check_not_in_future(data.rejected_on, local_today(owner), "rejected_on")
    applied_on = data.applied_on if "applied_on" in changes else rejection.applied_on
    rejected_on = data.rejected_on if "rejected_on" in changes else rejection.rejected_on
    if applied_on and rejected_on and applied_on > rejected_on:
        raise Unprocessable("applied_on must not be after rejected_on.", loc=["body", "applied_on"])
    if "applied_on" in changes:
        changes["applied_on"] = applied_on
    if "rejected_on" in changes:
        changes["rejected_on"] = rejected_on
    for name, value in changes.items():
        setattr(rejection, name, value)
    if session.is_modified(rejection):
        session.add(rejection)
        record_event(
            session, type="rejection.updated", user_id=rejection.user_id, subject_id=rejection.id
        )
    return rejection


def delete_rejection(*, session: Session, rejection: Rejection) -> None:
    """Soft-delete: a tombstone stays for devices to sync; the reflection and the feedback
    requests go with it (open requests are cancelled: nothing more is sent)."""
    # First, so the requests are locked before the user's row, the order the worker uses.
    retire_for_deleted_rejection(session=session, rejection=rejection)
    now = utcnow()
    rejection.deleted_at = now
    session.add(rejection)
    reflection = session.exec(
        select(Reflection).where(Reflection.rejection_id == rejection.id)
    ).first()
    if reflection is not None:
        reflection.deleted_at = now
        session.add(reflection)
