"""Migrations on real data: a database filled at every revision upgrades to head, and back.

Each revision is applied in order (alembic ScriptDirectory); after each one, a row is
inserted with raw SQL into every table that appeared at that revision, with the columns
that revision has (read from the database itself, so the test needs no edit when a
migration changes): required columns get a value of their type, foreign keys point at the
rows inserted before, enum columns take a valid value. At head every row inserted on the
way must still be there, unchanged in its id; then the database goes down to base and up
to head again.
"""

from __future__ import annotations

import datetime
import enum
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, inspect, text
from sqlalchemy.engine import Engine
from sqlmodel import SQLModel

from api.migrations import alembic_config, downgrade, upgrade
from tests.conftest import _create_postgres_database, _drop_postgres_database

pytestmark = pytest.mark.slow


@pytest.fixture
def empty_database_url(tmp_path: Any, database_url: str) -> Iterator[str]:
    if database_url.startswith("postgresql"):
        url = _create_postgres_database(database_url)
        yield url
        _drop_postgres_database(url)
    else:
        yield f"sqlite:///{tmp_path / 'steps.db'}"


def revisions_in_order() -> list[str]:
    script = ScriptDirectory.from_config(alembic_config("sqlite://"))
    return [rev.revision for rev in reversed(list(script.walk_revisions("base", "heads")))]


def value_for(table: str, column: dict[str, Any], parents: dict[str, str]) -> Any:
    model_table = SQLModel.metadata.tables.get(table)
    model_column = model_table.columns.get(column["name"]) if model_table is not None else None
    if model_column is not None:
        for fk in model_column.foreign_keys:
            return parents.get(fk.column.table.name)
        kind = model_column.type
        if isinstance(kind, sa.Enum) and kind.enums:
            return kind.enums[0]
        enum_class = getattr(kind, "enum_class", None)
        if enum_class is not None and issubclass(enum_class, enum.Enum):
            return next(iter(enum_class)).value
    kind = column["type"]
    if isinstance(kind, sa.Boolean):
        return False
    if isinstance(kind, sa.Integer | sa.Numeric):
        return 1
    if isinstance(kind, sa.DateTime):
        return datetime.datetime(2026, 1, 2, 3, 4, 5, tzinfo=datetime.UTC)
    if isinstance(kind, sa.Date):
        return datetime.date(2026, 1, 2)
    if isinstance(kind, sa.JSON) or "JSON" in type(kind).__name__.upper():
        return "[]"
    if isinstance(kind, sa.LargeBinary):
        return b"x"
    if column["name"].endswith("email"):
        return f"{uuid.uuid4().hex[:8]}@example.com"
    length = getattr(kind, "length", None) or 14
    return f"v-{uuid.uuid4().hex[:12]}"[:length]


def fill(engine: Engine, tables: list[str], parents: dict[str, str]) -> dict[str, str]:
    """One row in each of `tables` (parents first); returns table -> inserted id."""
    inspector = inspect(engine)
    order = [t.name for t in SQLModel.metadata.sorted_tables if t.name in tables]
    order += [t for t in tables if t not in order]
    inserted: dict[str, str] = {}
    with engine.begin() as connection:
        for table in order:
            columns = inspector.get_columns(table)
            row: dict[str, Any] = {}
            for column in columns:
                if column["name"] == "id":
                    row["id"] = str(uuid.uuid7()) if hasattr(uuid, "uuid7") else str(uuid.uuid4())
                elif not column["nullable"] or column["name"].endswith("_id"):
                    value = value_for(table, column, {**parents, **inserted})
                    if value is None and column["nullable"]:
                        continue
                    row[column["name"]] = value
            names = ", ".join(f'"{name}"' for name in row)
            marks = ", ".join(f":{name}" for name in row)
            connection.execute(text(f"INSERT INTO {table} ({names}) VALUES ({marks})"), row)
            if "id" in row:
                inserted[table] = row["id"]
    return inserted


def test_rows_written_at_every_revision_survive_to_head_and_back(
    empty_database_url: str,
) -> None:
    url = empty_database_url
    engine = create_engine(url)
    known: set[str] = set()
    rows: dict[str, str] = {}
    try:
        for revision in revisions_in_order():
            upgrade(url, revision)
            inspector = inspect(engine)
            now = set(inspector.get_table_names()) - {"alembic_version"}
            new = sorted(now - known)
            known |= now
            if new:
                rows.update(fill(engine, new, rows))
        upgrade(url, "heads")
        with_ids = {t.name for t in SQLModel.metadata.sorted_tables if "id" in t.columns}
        assert with_ids <= set(rows), f"tables never filled: {with_ids - set(rows)}"
        assert len(rows) >= 25
        with engine.connect() as connection:
            for table, row_id in rows.items():
                found = connection.execute(
                    text(f"SELECT count(*) FROM {table} WHERE id = :id"), {"id": row_id}
                ).scalar_one()
                assert found == 1, f"{table} lost its row {row_id}"
        engine.dispose()
        downgrade(url, "base")
        assert set(inspect(create_engine(url)).get_table_names()) <= {"alembic_version"}
        upgrade(url, "heads")
    finally:
        engine.dispose()
