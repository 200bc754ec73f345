"""Cursor pagination: `?limit=` (1-100, default 20) and an opaque `?cursor=`.

Ids are UUIDv7 (ordered by creation), so a keyset on the id alone pages newest first,
stays correct while rows are added, and costs the same at any depth.
"""

from __future__ import annotations

import base64
import binascii
from typing import Annotated, Any, Generic, Protocol, TypeVar

from fastapi import Query
from pydantic import BaseModel
from sqlmodel import Session
from sqlmodel.sql.expression import SelectOfScalar

from api.errors import Unprocessable

T = TypeVar("T")


class HasId(Protocol):
    id: str


M = TypeVar("M", bound=HasId)

Limit = Annotated[int, Query(ge=1, le=100, description="Items per page (1-100).")]
Cursor = Annotated[
    str | None, Query(max_length=200, description="`next_cursor` of the previous page.")
]


class Page(BaseModel, Generic[T]):
    items: list[T]
    next_cursor: str | None


def encode_cursor(value: str) -> str:
    return base64.urlsafe_b64encode(value.encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> str:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        value = base64.b64decode(padded.encode(), altchars=b"-_", validate=True).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        value = ""
    if not value or not value.isprintable():
        raise Unprocessable("The cursor is not one this API gave out.", loc=["query", "cursor"])
    return value


def paginate(
    session: Session,
    statement: SelectOfScalar[M],
    id_column: Any,
    *,
    limit: int,
    cursor: str | None,
) -> tuple[list[M], str | None]:
    """One page of `statement`, newest id first, and the cursor of the next page."""
    if cursor is not None:
        statement = statement.where(id_column < decode_cursor(cursor))
    rows = list(session.exec(statement.order_by(id_column.desc()).limit(limit + 1)))
    if len(rows) <= limit:
        return rows, None
    rows = rows[:limit]
    return rows, encode_cursor(rows[-1].id)
