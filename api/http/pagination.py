"""Cursor pagination: `?limit=` (1-100, default 20) and an opaque `?cursor=`.

Ids are UUIDv7 (ordered by creation), so a keyset on the id alone pages newest first,
stays correct while rows are added, and costs the same at any depth.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Sequence
from typing import Annotated, Any, Generic, Protocol, TypeVar

import orjson
from fastapi import Query, Response
from pydantic import BaseModel
from sqlalchemy import Column, Row, Select, bindparam
from sqlmodel import Session, SQLModel
from sqlmodel.sql.expression import SelectOfScalar

from api.errors import Unprocessable

T = TypeVar("T")


class HasId(Protocol):
    id: str


M = TypeVar("M", bound=HasId)
R = TypeVar("R", bound=Any)
S = TypeVar("S", bound=Select[Any])

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
    rows = list(session.exec(_one_page(statement, id_column, limit=limit, cursor=cursor)))
    return _with_next_cursor(rows, limit)


def keyset_page(statement: S, id_column: Any, *, after_cursor: bool) -> S:
    """`statement` as a page, newest id first: `:limit` rows, after the id `:cursor` when
    `after_cursor`. Built once and run with `fetch_page`, so that a hot list binds its
    values into a statement SQLAlchemy has already compiled, instead of building one."""
    if after_cursor:
        statement = statement.where(id_column < bindparam("cursor"))
    return statement.order_by(id_column.desc()).limit(bindparam("limit"))


def fetch_page(
    session: Session,
    statement: Select[Any],
    params: dict[str, Any],
    *,
    limit: int,
    cursor: str | None,
) -> tuple[list[Row[Any]], str | None]:
    """Run a `keyset_page` statement: the rows of one page and the next page's cursor."""
    values = {**params, "limit": limit + 1}
    if cursor is not None:
        values["cursor"] = decode_cursor(cursor)
    return _with_next_cursor(list(session.connection().execute(statement, values).all()), limit)


def _one_page(statement: S, id_column: Any, *, limit: int, cursor: str | None) -> S:
    if cursor is not None:
        statement = statement.where(id_column < decode_cursor(cursor))
    return statement.order_by(id_column.desc()).limit(limit + 1)


def _with_next_cursor(rows: list[R], limit: int) -> tuple[list[R], str | None]:
    if len(rows) <= limit:
        return rows, None
    rows = rows[:limit]
    return rows, encode_cursor(rows[-1].id)


# --- lists straight from rows to JSON --------------------------------------------------
#
# A hot list (the rejections a client opens the app on) skips the ORM and the per-row
# models: it selects exactly the columns of its read schema and writes the rows as JSON.
# The rows come from typed columns, so they already have the schema's types; the route
# keeps `Page[Schema]` as its documented response, and tests check that an item of the
# list is the same JSON as the schema makes of the same row.


def read_columns(table: type[SQLModel], schema: type[BaseModel]) -> tuple[Column[Any], ...]:
    """The columns of `table` that make up `schema`, in the schema's field order."""
    columns = table.__table__.c  # type: ignore[attr-defined]
    missing = [name for name in schema.model_fields if name not in columns]
    if missing:
        raise TypeError(f"{schema.__name__} has fields that are not columns: {missing}")
    return tuple(columns[name] for name in schema.model_fields)


def page_response(rows: Sequence[Row[Any]], next_cursor: str | None) -> Response:
    """A `Page` of rows selected with `read_columns`, as an `application/json` response."""
    names = rows[0]._fields if rows else ()
    items = [dict(zip(names, row, strict=True)) for row in rows]
    body = orjson.dumps({"items": items, "next_cursor": next_cursor}, option=orjson.OPT_UTC_Z)
    return Response(body, media_type="application/json")
