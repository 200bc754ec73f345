"""The migrations build exactly the models' schema, and go down and up again with data."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect, text
from sqlmodel import SQLModel

from api.config import Settings
from api.db import make_engine
from api.migrations import alembic_config, downgrade, upgrade
from tests.conftest import _create_postgres_database, _drop_postgres_database


@pytest.fixture
def scratch_url(tmp_path: Path) -> Iterator[str]:
    """An empty database of the engine under test, for this test alone."""
    requested = os.environ.get("REBOUND_TEST_DATABASE_URL", "")
    if requested.startswith("postgresql"):
        url = _create_postgres_database(requested)
        yield url
        _drop_postgres_database(url)
    else:
        yield f"sqlite:///{tmp_path / 'scratch.db'}"


def test_models_and_migrations_agree(database_url: str) -> None:
    engine = make_engine(Settings(database_url=database_url))
    with engine.connect() as connection:
        context = MigrationContext.configure(
            connection, opts={"compare_type": True, "render_as_batch": True}
        )
        differences = compare_metadata(context, SQLModel.metadata)
    engine.dispose()
    assert differences == []


def test_single_head() -> None:
    heads = ScriptDirectory.from_config(alembic_config("sqlite://")).get_heads()
    assert len(heads) == 1, f"migrations have several heads: {heads}"


def test_downgrade_and_upgrade_again_keep_the_rows(scratch_url: str) -> None:
    upgrade(scratch_url)
    engine = make_engine(Settings(database_url=scratch_url))
    with engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO users (id, email, password_hash, display_name, timezone, locale, "
                "session_version, sync_seq, version, reminders_enabled, reminder_hour, created_at, updated_at) "
                "VALUES ('u1', 'kept@example.com', 'x', 'Kept', 'UTC', 'en', 1, 0, 1, false, 8, "
                "CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)"
            )
        )
    script = ScriptDirectory.from_config(alembic_config(scratch_url))
    first = next(iter(script.walk_revisions())).revision  # the newest revision
    revisions = [rev.revision for rev in script.walk_revisions()]
    # Down to the first revision (keeping the users table), then up to head again.
    base = revisions[-1]
    if first != base:
        downgrade(scratch_url, base)
    upgrade(scratch_url)
    with engine.connect() as connection:
        emails = connection.execute(text("SELECT email FROM users")).scalars().all()
    tables = set(inspect(engine).get_table_names())
    engine.dispose()
    assert emails == ["kept@example.com"]
    assert {table.name for table in SQLModel.metadata.sorted_tables} <= tables
    # And all the way down leaves nothing behind.
    downgrade(scratch_url, "base")
    engine = make_engine(Settings(database_url=scratch_url))
    assert set(inspect(engine).get_table_names()) <= {"alembic_version"}
    engine.dispose()
