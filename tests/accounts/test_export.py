"""Export and erasure: everything a user owns goes out in `GET /v1/me/export` and goes
away with `DELETE /v1/me`, for every table, including tables added after this test."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Table, func, select
from sqlalchemy.engine import Engine
from sqlmodel import SQLModel

from api.accounts.export import (
    NOT_EXPORTED,
    NOT_USER_DATA,
    SCHEMA_VERSION,
    exported_tables,
    is_secret_column,
)
from api.config import Settings
from api.main import create_app
from api.worker.registry import WorkerContext
from api.worker.runner import run_until_idle
from tests.factories import PASSWORD, UserHandle, make_rejection, make_user

JOURNAL = "Felt flat all evening; the panel never smiled."


def _tables() -> dict[str, Table]:
    return dict(SQLModel.metadata.tables)


def _cascades(fk: Any) -> bool:
    return (fk.ondelete or "").upper() == "CASCADE"


def _erased_with_the_user(table: Table, seen: frozenset[str] = frozenset()) -> bool:
    """Whether deleting a user deletes this table's rows of theirs: a chain of ON DELETE
    CASCADE foreign keys from the row up to `users`."""
    for fk in table.foreign_keys:
        parent = fk.column.table
        if not _cascades(fk) or parent.name in seen:
            continue
        if parent.name == "users" or _erased_with_the_user(parent, seen | {table.name}):
            return True
    return False


def test_every_table_is_exported_or_explained_and_erased_with_its_user() -> None:
    tables = _tables()
    exported = {table.name for table in exported_tables()}
    unexplained = set(tables) - exported - set(NOT_EXPORTED) - set(NOT_USER_DATA)
    assert not unexplained, (
        f"tables neither exported nor listed in api/accounts/export.py: {sorted(unexplained)}; "
        "give user data a user_id (ON DELETE CASCADE) or list the table with its reason"
    )
    assert set(NOT_EXPORTED) <= set(tables), "NOT_EXPORTED names a table that does not exist"
    assert set(NOT_USER_DATA) <= set(tables), "NOT_USER_DATA names a table that does not exist"
    assert not exported & (set(NOT_EXPORTED) | set(NOT_USER_DATA))

    for name in sorted(exported | set(NOT_EXPORTED)):
        assert _erased_with_the_user(tables[name]), (
            f"{name} holds user data but erasing the user leaves it behind: "
            "its foreign key to users (or to its parent) needs ON DELETE CASCADE"
        )
    for name, table in tables.items():
        if "user_id" in table.c and name != "users":
            assert name not in NOT_USER_DATA, f"{name} has a user_id: it is user data"
            targets = {fk.column.table.name for fk in table.c.user_id.foreign_keys}
            assert targets == {"users"}, f"{name}.user_id must reference users"
        for fk in table.foreign_keys:
            if fk.column.table.name == "users":
                # Anything else would make DELETE /v1/me fail, or keep a dangling link.
                assert (fk.ondelete or "").upper() in {"CASCADE", "SET NULL"}, (
                    f"{name}.{fk.parent.name} -> users needs ON DELETE CASCADE or SET NULL"
                )


def test_no_secret_column_is_exported() -> None:
    for table in [*exported_tables(), _tables()["users"]]:
        for column in table.c:
            if column.name.endswith("_hash") or "secret" in column.name:
                assert is_secret_column(column.name), f"{table.name}.{column.name}"
    assert is_secret_column("password_hash") and is_secret_column("token_hash")
    assert not is_secret_column("company") and not is_secret_column("recipient_email")


def test_the_document_has_a_schema_version_and_leaves_deleted_objects_out(
    client: TestClient,
) -> None:
    user = make_user(client, display_name="Ada")
    kept = make_rejection(user, company="Kept Ltd")
    gone = make_rejection(user, company="Gone Ltd")
    client.delete(f"/v1/rejections/{gone['id']}", headers=user.headers)
    response = client.get("/v1/me/export", headers=user.headers)
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.headers["Content-Disposition"].startswith("attachment; filename=")
    assert response.headers["Cache-Control"] == "no-store"
    document = response.json()
    assert document["schema_version"] == SCHEMA_VERSION
    assert document["user"]["email"] == user.email
    assert document["user"]["display_name"] == "Ada"
    assert "password_hash" not in document["user"]
    assert [row["company"] for row in document["data"]["rejections"]] == ["Kept Ltd"]
    reflections = document["data"]["reflections"]
    assert [row["rejection_id"] for row in reflections] == [kept["id"]]
    steps = document["data"]["reflection_steps"]
    assert len(steps) == 7 and {step["reflection_id"] for step in steps} == {reflections[0]["id"]}
    assert "Gone Ltd" not in response.text
    assert set(document["data"]) == {table.name for table in exported_tables()}
    assert client.get("/v1/me/export").status_code == 401


# -- end to end: data in every table the API reaches, exported, then erased ----------------


@pytest.fixture
def everything_client(settings: Settings, engine: Engine) -> Iterator[TestClient]:
    app = create_app(settings.model_copy(update={"webhook_allow_private_targets": True}))
    with TestClient(app) as client:
        yield client


def _ok(response: Any, *statuses: int) -> dict[str, Any]:
    assert response.status_code in (statuses or (200, 201)), response.text
    return dict(response.json()) if response.content else {}


def _fill_every_table(client: TestClient, engine: Engine, settings: Settings) -> dict[str, Any]:
    """The user's data in every table the API can reach, and an organisation reading it."""
    user = make_user(client)
    advisor = make_user(client)
    secrets: dict[str, Any] = {"password": PASSWORD}

    tokens = _ok(client.post("/v1/auth/token", data={"username": user.email, "password": PASSWORD}))
    secrets["refresh_token"] = tokens["refresh_token"]
    secrets["access_token"] = tokens["access_token"]
    _ok(
        client.put(
            "/v1/me/profile",
            json={"goals": ["Staff engineer"], "values": [{"name": "growth", "weight": 5}]},
            headers=user.headers,
        )
    )
    rejection = _ok(
        client.post(
            "/v1/rejections",
            json={
                "company": "Acme",
                "role_title": "Engineer",
                "rejected_on": "2026-11-02",
                "contact_email": "hiring@acme.example",
                "contact_name": "Dana",
            },
            headers={**user.headers, "Idempotency-Key": "export-e2e"},
        )
    )
    deleted = make_rejection(user, company="Deleted Co")
    base = f"/v1/rejections/{rejection['id']}"
    _ok(
        client.put(
            f"{base}/reflection/steps/emotions",
            json={
                "status": "done",
                "content": {"emotions": ["sad"], "intensity": 3, "journal": JOURNAL},
            },
            headers=user.headers,
        )
    )
    _ok(
        client.put(
            f"{base}/reflection/steps/strengths_weaknesses",
            json={
                "status": "done",
                "content": {
                    "strengths": [{"skill": "Python"}],
                    "weaknesses": [{"skill": "Kubernetes"}],
                },
            },
            headers=user.headers,
        )
    )
    request = _ok(
        client.post(f"{base}/feedback-requests", json={"channel": "email"}, headers=user.headers)
    )
    _ok(client.post(f"/v1/feedback-requests/{request['id']}/send", headers=user.headers))
    asyncio.run(run_until_idle(WorkerContext(engine=engine, settings=settings, worker_id="t")))
    plan = _ok(
        client.post(
            "/v1/action-plans",
            json={"title": "Get hands-on with Kubernetes", "rejection_ids": [rejection["id"]]},
            headers=user.headers,
        )
    )
    _ok(
        client.post(
            f"/v1/action-plans/{plan['id']}/items",
            json={"title": "Run a cluster at home", "due_on": "2026-12-01"},
            headers=user.headers,
        )
    )
    feed = _ok(client.post("/v1/me/calendar-feed", headers=user.headers))
    secrets["calendar_url"] = feed["url"].rsplit("/", 1)[-1].removesuffix(".ics")
    own_org = _ok(client.post("/v1/orgs", json={"name": "My study group"}, headers=user.headers))

    org = _ok(client.post("/v1/orgs", json={"name": "Careers Service"}, headers=advisor.headers))
    key = _ok(
        client.post(f"/v1/orgs/{org['id']}/api-keys", json={"name": "crm"}, headers=advisor.headers)
    )
    secrets["api_key"] = key["key"]
    hook = _ok(
        client.post(
            f"/v1/orgs/{org['id']}/webhooks",
            json={"url": "http://127.0.0.1:9/hook", "events": ["rejection.updated"]},
            headers=advisor.headers,
        )
    )
    secrets["webhook_secret"] = hook["secret"]
    _ok(
        client.post(
            "/v1/me/grants",
            json={"org_id": org["id"], "scopes": ["rejections:read", "reflections:read"]},
            headers=user.headers,
        )
    )
    by_key = {"Authorization": f"Bearer {key['key']}"}
    _ok(client.get(f"/v1/orgs/{org['id']}/clients/{user.id}/rejections", headers=by_key))
    _ok(client.patch(base, json={"notes": "Ask again in spring"}, headers=user.headers))
    client.delete(f"/v1/rejections/{deleted['id']}", headers=user.headers)
    return {
        "user": user,
        "advisor": advisor,
        "org": org,
        "own_org": own_org,
        "secrets": secrets,
        "rejection": rejection,
    }


def _rows_of_user(engine: Engine, user_id: str) -> dict[str, set[Any]]:
    """Primary keys, per table, of every row that is the user's or hangs off one of theirs
    (whatever the table, exported or not), by walking the foreign keys from `users`."""
    found: dict[str, set[Any]] = {"users": {user_id}}
    with engine.connect() as connection:
        for table in SQLModel.metadata.sorted_tables:
            if table.name == "users":
                continue
            primary = next(iter(table.primary_key.columns))
            ids: set[Any] = set()
            for fk in table.foreign_keys:
                parents = found.get(fk.column.table.name)
                if parents and _cascades(fk):
                    ids |= set(
                        connection.execute(
                            select(primary).where(fk.parent.in_(sorted(parents)))
                        ).scalars()
                    )
            if ids:
                found[table.name] = ids
    return found


def test_export_then_erase_covers_every_table(
    everything_client: TestClient, engine: Engine, settings: Settings
) -> None:
    client = everything_client
    made = _fill_every_table(client, engine, settings)
    user: UserHandle = made["user"]
    before = _rows_of_user(engine, user.id)
    exported_names = {table.name for table in exported_tables()}
    # The tables this test reaches; a table missing here is a feature not reached by it.
    reached = set(before) - {"users"}
    assert {
        "profiles",
        "rejections",
        "reflections",
        "reflection_steps",
        "reflection_skills",
        "feedback_requests",
        "feedback_request_events",
        "action_plans",
        "action_items",
        "calendar_feeds",
        "grants",
        "access_log",
        "org_members",
        "refresh_tokens",
        "idempotency_records",
        "jobs",
        "domain_events",
    } <= reached, sorted(reached)

    response = client.get("/v1/me/export", headers=user.headers)
    assert response.status_code == 200
    document = response.json()
    text = response.text
    for name in reached & exported_names:
        assert document["data"][name], f"{name} has the user's rows but none were exported"
    for name in reached - exported_names:
        assert name in NOT_EXPORTED and name not in document["data"]
    assert JOURNAL in text  # the user's own journal is theirs to take
    assert "Deleted Co" not in text
    assert made["org"]["id"] in json.dumps(document["data"]["grants"])
    assert document["data"]["access_log"][0]["org_id"] == made["org"]["id"]
    for name, value in made["secrets"].items():
        assert value not in text, f"the {name} is in the export"
    for rows in document["data"].values():
        for row in rows:
            assert not any(is_secret_column(column) for column in row), row
    with engine.connect() as connection:
        hashes = (
            connection.execute(select(SQLModel.metadata.tables["users"].c.password_hash))
            .scalars()
            .all()
        )
    assert all(value not in text for value in hashes)

    # Erase: every row found above is gone, other people's data stays.
    assert client.delete("/v1/me", headers=user.headers).status_code == 204
    with engine.connect() as connection:
        for name, ids in before.items():
            table = SQLModel.metadata.tables[name]
            primary = next(iter(table.primary_key.columns))
            left = connection.execute(
                select(func.count()).select_from(table).where(primary.in_(sorted(ids)))
            ).scalar_one()
            assert left == 0, f"{left} row(s) of the erased user left in {name}"
        for table in SQLModel.metadata.sorted_tables:
            for fk in table.foreign_keys:
                if fk.column.table.name == "users":
                    left = connection.execute(
                        select(func.count()).select_from(table).where(fk.parent == user.id)
                    ).scalar_one()
                    assert left == 0, f"{table.name}.{fk.parent.name} still names the user"
    advisor: UserHandle = made["advisor"]
    assert client.get(f"/v1/orgs/{made['org']['id']}", headers=advisor.headers).status_code == 200
    assert client.get("/v1/me", headers=advisor.headers).status_code == 200
    assert client.get("/v1/me", headers=user.headers).status_code == 401
