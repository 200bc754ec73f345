"""Cursor pagination: `?limit=` (1-100, default 20) and an opaque `?cursor=`.

Ids are UUIDv7 (ordered by creation), so a keyset on the id alone pages newest first,
stays correct while rows are added, and costs the same at any depth.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Annotated, Any, Generic, Protocol, TypeVar

import orjson
from fastapi import Query, Request, Response
from pydantic import BaseModel
from sqlalchemy import (
    JSON,
    Column,
    ColumnElement,
    Label,
    Row,
    Select,
    String,
    Text,
    TypeDecorator,
    bindparam,
    cast,
    func,
    literal_column,
)
from sqlmodel import Session, SQLModel
from sqlmodel.sql.expression import SelectOfScalar

from api.db import UTCDateTime, fetch_all
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
    `after_cursor`. Built once and run as a `PageQuery`, so that a hot list binds its
    values into a statement SQLAlchemy has already compiled, instead of building one."""
    if after_cursor:
        statement = statement.where(id_column < bindparam("cursor"))
    return statement.order_by(id_column.desc()).limit(bindparam("limit"))


@dataclass(frozen=True)
class PageQuery:
    """A `keyset_page` statement with its values bound, ready to run for one page."""

    statement: Select[Any]
    values: dict[str, Any]
    limit: int

    def run(self, session: Session) -> tuple[list[Row[Any]], str | None]:
        """The rows of the page and the next page's cursor, read on `session`."""
        rows = session.connection().execute(self.statement, self.values).all()
        return _with_next_cursor(list(rows), self.limit)

    async def fetch(self, request: Request) -> tuple[list[Any], str | None]:
        """`run`, awaited where the database is remote (`api.db.fetch_all`)."""
        return _with_next_cursor(await fetch_all(request, self.statement, self.values), self.limit)


def page_query(
    statement: Select[Any], values: dict[str, Any], *, limit: int, cursor: str | None
) -> PageQuery:
    """`statement` (a `keyset_page`) with `values`, the page size and the cursor bound."""
    bound = {**values, "limit": limit + 1}
    if cursor is not None:
        bound["cursor"] = decode_cursor(cursor)
    return PageQuery(statement, bound, limit)


def _one_page(statement: S, id_column: Any, *, limit: int, cursor: str | None) -> S:
    if cursor is not None:
        statement = statement.where(id_column < decode_cursor(cursor))
    return statement.order_by(id_column.desc()).limit(limit + 1)


def _with_next_cursor(rows: list[R], limit: int) -> tuple[list[R], str | None]:
    if len(rows) <= limit:
        return rows, None
    rows = rows[:limit]
    return rows, encode_cursor(rows[-1].id)


# --- lists written as JSON by the database ----------------------------------------------
#
# A hot list (the rejections a client opens the app on) skips the ORM, the per-row models
# and even the per-value conversions: the database writes each item as a JSON object of
# exactly the columns of the read schema, in its field order, formatted as the schema
# formats them, and the response joins those objects. The route keeps `Page[Schema]` as
# its documented response, and tests check, value by value, that an item of the list is
# the same JSON as the schema makes of the same row, on both engines.


def json_item(table: type[SQLModel], schema: type[BaseModel], dialect: str) -> Label[str]:
    """The columns of `table` that make up `schema`, as one JSON object per row (`item`)."""
    columns = table.__table__.c  # type: ignore[attr-defined]
    missing = [name for name in schema.model_fields if name not in columns]
    if missing:
        raise TypeError(f"{schema.__name__} has fields that are not columns: {missing}")
    members: list[Any] = []
    for name in schema.model_fields:
        members += [_constant(name), _json_value(columns[name], dialect)]
    build = func.json_build_object if dialect == "postgresql" else func.json_object
    return cast(build(*members), Text).label("item")  # as text: no driver parses it


def _json_value(column: Column[Any], dialect: str) -> ColumnElement[Any]:
    kind = column.type
    if isinstance(kind, UTCDateTime):
        # ISO 8601 in UTC with "Z", and microseconds only when there are any: as pydantic.
        text: ColumnElement[str]
        if dialect == "postgresql":
            utc = func.timezone(_constant("UTC"), column)
            text = func.to_char(utc, _constant('YYYY-MM-DD"T"HH24:MI:SS.US"Z"'))
        else:  # stored as "YYYY-MM-DD HH:MM:SS.ffffff", UTC
            text = func.replace(column, _constant(" "), _constant("T")).concat(_constant("Z"))
        return func.replace(text, _constant(".000000Z"), _constant("Z"))
    if isinstance(kind, JSON):
        return column if dialect == "postgresql" else func.json(column)
    python_type = (kind.impl_instance if isinstance(kind, TypeDecorator) else kind).python_type
    if issubclass(python_type, str | date) and not issubclass(python_type, datetime):
        return column  # text (enums too) and ISO dates are stored as the schema writes them
    if issubclass(python_type, int) and not issubclass(python_type, bool):
        return column
    raise TypeError(f"{column.name}: no JSON form for {kind!r} yet")


def _constant(value: str) -> ColumnElement[str]:
    """A string written into the SQL, not bound: these are the code's own constants."""
    return literal_column("'" + value.replace("'", "''") + "'", String)


def page_response(rows: Sequence[Any], next_cursor: str | None) -> Response:
    """A `Page` of rows that carry a `json_item` (SQLAlchemy rows, or the named tuples of
    `api.db.fetch_all`), as an `application/json` response."""
    items = ",".join([row.item for row in rows]).encode()
    body = b'{"items":[%b],"next_cursor":%b}' % (items, orjson.dumps(next_cursor))
    return Response(body, media_type="application/json")
