"""Test set-up: a real database (SQLite by default, PostgreSQL when
REBOUND_TEST_DATABASE_URL names a server), built by running the migrations once per
session and emptied before every test."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, text
from sqlalchemy.engine import Engine, make_url
from sqlmodel import Session, SQLModel

from api.config import Settings
from api.db import make_engine, open_session
from api.main import create_app
from api.migrations import upgrade

pytest_plugins = ["tests.plugins.smtp", "tests.plugins.browser", "tests.plugins.private_postgres"]


def _create_postgres_database(url: str) -> str:
    """A fresh database on the server `url` names; CI fails here if the server is down."""
    base = make_url(url)
    name = f"{base.database or 'rebound'}_{uuid.uuid4().hex[:10]}"
    admin = create_engine(base.set(database="postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return base.set(database=name).render_as_string(hide_password=False)


def _drop_postgres_database(url: str) -> None:
    target = make_url(url)
    admin = create_engine(target.set(database="postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'DROP DATABASE IF EXISTS "{target.database}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture(scope="session")
def database_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    requested = os.environ.get("REBOUND_TEST_DATABASE_URL", "")
    if requested.startswith("postgresql"):
        url = _create_postgres_database(requested)
        upgrade(url)
        yield url
        _drop_postgres_database(url)
        return
    path: Path = tmp_path_factory.mktemp("db") / "rebound-test.db"
    url = f"sqlite:///{path}"
    upgrade(url)
    yield url


@pytest.fixture
def settings(database_url: str) -> Settings:
    return Settings(
        database_url=database_url,
        embedded_worker=False,
        base_url="http://testserver",
        rate_limit="100000/minute",
        log_json=False,
        log_level="WARNING",
    )


def _empty_all_tables(engine: Engine) -> None:
    tables = [table.name for table in reversed(SQLModel.metadata.sorted_tables)]
    with engine.begin() as connection:
        if engine.dialect.name == "postgresql":
            connection.execute(text(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE"))
        else:
            for table in tables:
                connection.execute(text(f"DELETE FROM {table}"))


@pytest.fixture
def engine(settings: Settings) -> Iterator[Engine]:
    engine = make_engine(settings)
    _empty_all_tables(engine)
    yield engine
    engine.dispose()


@pytest.fixture
def app(settings: Settings, engine: Engine):  # type: ignore[no-untyped-def]
    return create_app(settings)


@pytest.fixture
def client(app) -> Iterator[TestClient]:  # type: ignore[no-untyped-def]
    with TestClient(app) as client:
        yield client


@pytest.fixture
def db(engine: Engine) -> Iterator[Session]:
    """A session for looking at (or arranging) the database directly."""
    session = open_session(engine, write=False)
    yield session
    session.close()
