"""`GET /v1/me/export`: everything a user owns, as one JSON document.

Built from the database metadata, not from a list of features: a table is the user's
when it has a `user_id` column (which cascades from `users`), or when it cascades from
such a table (a feedback request's timeline, say). So a table added later is exported
without touching this module, unless it is listed below as not the user's data.
Soft-deleted rows are left out, and with them the rows that hang off them (the steps of
a deleted rejection's reflection). Secret columns (password, token and key hashes,
signing secrets) are never written.

tests/accounts/test_export.py walks the metadata and fails when a table is neither
exported nor listed here, or when erasing a user (`DELETE /v1/me`, which relies on the
foreign keys' ON DELETE CASCADE) would leave its rows behind.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from datetime import date, datetime
from typing import Any

from pydantic import BaseModel, Field
from sqlalchemy import ForeignKey, Row, Table, select
from sqlmodel import Session, SQLModel

from api.db import utcnow
from api.models import User

SCHEMA_VERSION = 1

# Tables that cascade from a user (so erasure removes them) but are not the user's data
# to take away: machinery, secrets, or a copy derived from data that is exported.
NOT_EXPORTED: dict[str, str] = {
    "refresh_tokens": "login sessions: only hashes of secret tokens",
    "idempotency_records": "cached responses to retried requests, kept two days",
    "jobs": "the background work queue",
    "domain_events": "the outbox feeding organisations' webhooks",
    "reflection_skills": "an index derived from the reflection steps, which are exported",
}

# Tables that do not hold a user's data at all: the deployment's and organisations'.
# A reference from them to a user is ON DELETE SET NULL (a creator, an inviter).
NOT_USER_DATA: dict[str, str] = {
    "users": "the account itself: exported as `user`, erased by DELETE /v1/me",
    "organisations": "an organisation's own record",
    "org_invites": "an organisation's invitations (to e-mail addresses)",
    "api_keys": "an organisation's keys",
    "webhook_subscriptions": "an organisation's webhook endpoints",
    "webhook_deliveries": "an organisation's delivery log",
    "webhook_attempts": "an organisation's delivery log",
    "email_suppressions": "recipients who opted out, for the whole deployment",
}

# Columns that never leave the server, in any table, and bookkeeping of no use outside.
_SECRET_FRAGMENTS = ("password", "secret", "token", "_hash")
_BOOKKEEPING = frozenset({"user_id", "sync_seq", "session_version"})
_CHUNK = 500  # ids per IN (…) list, well under every engine's limit of parameters


def is_secret_column(name: str) -> bool:
    return name == "key" or any(fragment in name for fragment in _SECRET_FRAGMENTS)


def _cascading_parents(table: Table) -> list[ForeignKey]:
    return [fk for fk in table.foreign_keys if (fk.ondelete or "").upper() == "CASCADE"]


def exported_tables() -> list[Table]:
    """The user's tables, parents before children."""
    exported: list[Table] = []
    names: set[str] = set()
    for table in SQLModel.metadata.sorted_tables:
        if table.name in NOT_EXPORTED or table.name in NOT_USER_DATA:
            continue
        owned = "user_id" in table.c and any(
            fk.column.table.name == "users" for fk in table.c.user_id.foreign_keys
        )
        hangs_off_exported = any(fk.column.table.name in names for fk in _cascading_parents(table))
        if owned or hangs_off_exported:
            exported.append(table)
            names.add(table.name)
    return exported


class ExportDocument(BaseModel):
    """Everything the user owns. Rows are the tables' columns, secrets left out."""

    schema_version: int = Field(description="Raised when the shape of this document changes.")
    exported_at: datetime
    user: dict[str, Any]
    data: dict[str, list[dict[str, Any]]] = Field(
        description="The user's rows, by table name (rejections, reflections, …)."
    )


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    return value


def _row(columns: Iterable[str], values: Iterable[Any]) -> dict[str, Any]:
    return {
        str(name): _jsonable(value)  # str(): column names are a subclass of str
        for name, value in zip(columns, values, strict=True)
        if name not in _BOOKKEEPING and not is_secret_column(name)
    }


def _rows_of(
    session: Session,
    table: Table,
    *,
    user_id: str,
    parent: ForeignKey | None,
    parent_ids: set[Any],
) -> Iterator[Row[Any]]:
    """The table's rows of the user: by `user_id`, or else the rows under `parent_ids`."""
    order = list(table.primary_key.columns)
    if "user_id" in table.c or parent is None:
        yield from session.execute(select(table).where(table.c.user_id == user_id).order_by(*order))
        return
    wanted = sorted(parent_ids)
    for start in range(0, len(wanted), _CHUNK):
        chunk = wanted[start : start + _CHUNK]
        yield from session.execute(select(table).where(parent.parent.in_(chunk)).order_by(*order))


def export_user(*, session: Session, user: User) -> dict[str, Any]:
    """The export document of `user`, ready for JSON."""
    users = SQLModel.metadata.tables["users"]
    user_row = session.execute(select(users).where(users.c.id == user.id)).one()
    data: dict[str, list[dict[str, Any]]] = {}
    # Per table, the ids of the rows exported and of those left out (soft-deleted, or
    # under one that is): a child row goes with its parent.
    kept: dict[str, set[Any]] = {}
    hidden: dict[str, set[Any]] = {}
    for table in exported_tables():
        parents = [fk for fk in _cascading_parents(table) if fk.column.table.name in kept]
        parent = parents[0] if parents else None
        parent_ids = (
            kept[parent.column.table.name] | hidden[parent.column.table.name] if parent else set()
        )
        primary = next(iter(table.primary_key.columns)).name
        rows: list[dict[str, Any]] = []
        kept[table.name], hidden[table.name] = set(), set()
        for record in _rows_of(
            session, table, user_id=user.id, parent=parent, parent_ids=parent_ids
        ):
            mapping = record._mapping
            under_hidden = any(
                mapping[fk.parent.name] in hidden[fk.column.table.name] for fk in parents
            )
            if under_hidden or mapping.get("deleted_at") is not None:
                hidden[table.name].add(mapping[primary])
                continue
            kept[table.name].add(mapping[primary])
            row = _row(mapping.keys(), mapping.values())
            row.pop("deleted_at", None)
            rows.append(row)
        data[str(table.name)] = rows
    return {
        "schema_version": SCHEMA_VERSION,
        "exported_at": utcnow().isoformat(),
        "user": _row(user_row._mapping.keys(), user_row._mapping.values()),
        "data": data,
    }
