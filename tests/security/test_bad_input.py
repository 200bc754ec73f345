"""Bad input is refused with a clear 4xx problem and writes nothing.

Every case counts the rows of every table before and after the request: a refused request
leaves the database exactly as it was.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select, text
from sqlalchemy.engine import Engine
from sqlmodel import SQLModel

from tests.factories import UserHandle, make_rejection, make_user, rejection_body


def row_counts(engine: Engine) -> dict[str, int]:
    with engine.connect() as connection:
        return {
            table.name: int(
                connection.execute(select(func.count()).select_from(table)).scalar_one()
            )
            for table in SQLModel.metadata.sorted_tables
        }


def assert_refused(
    response: Any, engine: Engine, before: dict[str, int], statuses: set[int] | None = None
) -> dict[str, Any]:
    statuses = statuses or {422}
    assert response.status_code in statuses, (response.status_code, response.text[:300])
    assert response.headers["content-type"].startswith("application/problem+json"), response.text
    problem = response.json()
    assert problem["status"] == response.status_code
    assert problem["detail"]
    after = row_counts(engine)
    changed = {name: (before[name], after[name]) for name in before if before[name] != after[name]}
    assert not changed, f"a refused request wrote rows: {changed}"
    return dict(problem)


@pytest.fixture
def user(client: TestClient) -> UserHandle:
    return make_user(client)


LONG = "x" * 100_000


@pytest.mark.parametrize(
    "fields",
    [
        {"company": "x" * 201},
        {"role_title": ""},
        {"notes": "n" * 20_001},
        {"tags": ["t"] * 1000},
        {"rejected_on": "2026-02-30"},
        {"rejected_on": "yesterday"},
        {"rejected_on": 0},
        {"applied_on": "0"},
        {"stage": "ghosted"},
        {"emotional_impact": 6},
        {"contact_email": "not an e-mail"},
        {"job_url": "javascript:alert(1)"},
        {"unknown_field": 1},
        {"company": None},
    ],
    ids=lambda fields: next(iter(fields)),
)
def test_bad_rejection_fields_are_422(
    client: TestClient, engine: Engine, user: UserHandle, fields: dict[str, Any]
) -> None:
    before = row_counts(engine)
    response = client.post("/v1/rejections", json=rejection_body(**fields), headers=user.headers)
    problem = assert_refused(response, engine, before)
    assert problem["errors"], problem


def test_a_body_over_one_mebibyte_is_413_and_written_nowhere(
    client: TestClient, engine: Engine, user: UserHandle
) -> None:
    before = row_counts(engine)
    huge = json.dumps(rejection_body(notes="n" * (2 * 1024 * 1024)))
    response = client.post(
        "/v1/rejections",
        content=huge,
        headers={**user.headers, "Content-Type": "application/json"},
    )
    assert_refused(response, engine, before, {413})
    # streamed without a length: also 413
    response = client.post(
        "/v1/rejections",
        content=iter([huge[i : i + 65536].encode() for i in range(0, len(huge), 65536)]),
        headers={**user.headers, "Content-Type": "application/json"},
    )
    assert_refused(response, engine, before, {413})


@pytest.mark.parametrize(
    ("content", "content_type"),
    [
        (b'{"company": "Acme", "role_title": "x"', "application/json"),  # truncated
        (b"\xff\xfe\x00{}", "application/json"),  # invalid UTF-8
        (b'{"company": "Ac\xc3me", "role_title": "x"}', "application/json"),  # bad sequence
        (b"[" * 50_000 + b"]" * 50_000, "application/json"),  # deeply nested
        (b'{"a":' * 10_000 + b"1" + b"}" * 10_000, "application/json"),  # deep objects
        (b"company=Acme&role_title=x", "application/x-www-form-urlencoded"),
        (b"<rejection><company>Acme</company></rejection>", "application/xml"),
        (b'{"company": "Acme", "role_title": "x"}', "text/plain"),
        (b"", "application/json"),
        (b"null", "application/json"),
        (b'"a string"', "application/json"),
        (b"NaN", "application/json"),
    ],
    ids=[
        "truncated",
        "utf16-bom",
        "bad-utf8",
        "deep-arrays",
        "deep-objects",
        "form",
        "xml",
        "text-plain",
        "empty",
        "null",
        "string",
        "nan",
    ],
)
def test_unreadable_or_wrong_bodies_are_4xx(
    client: TestClient, engine: Engine, user: UserHandle, content: bytes, content_type: str
) -> None:
    before = row_counts(engine)
    response = client.post(
        "/v1/rejections", content=content, headers={**user.headers, "Content-Type": content_type}
    )
    assert_refused(response, engine, before, {400, 413, 415, 422})


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("recipient_name", "Dana\r\nBcc: everyone@example.com"),
        ("recipient_name", "Dana\nBcc: everyone@example.com"),
        ("subject", "Feedback?\r\nBcc: everyone@example.com"),
        ("subject", "Feedback?\rX-Injected: 1"),
        ("recipient_email", "dana@acme.example\r\nBcc: everyone@example.com"),
        ("recipient_email", "dana@acme.example, eve@evil.example"),
    ],
)
def test_header_injection_in_email_fields_is_refused(
    client: TestClient, engine: Engine, user: UserHandle, field: str, value: str
) -> None:
    rejection = make_rejection(user)
    url = f"/v1/rejections/{rejection['id']}/feedback-requests"
    body = {"recipient_name": "Dana", "recipient_email": "dana@acme.example", field: value}
    before = row_counts(engine)
    assert_refused(client.post(url, json=body, headers=user.headers), engine, before)
    # and through PATCH of a draft
    created = client.post(
        url,
        json={"recipient_name": "Dana", "recipient_email": "dana@acme.example"},
        headers=user.headers,
    )
    assert created.status_code == 201, created.text
    request_url = f"/v1/feedback-requests/{created.json()['id']}"
    before = row_counts(engine)
    response = client.patch(request_url, json={field: value}, headers=user.headers)
    assert_refused(response, engine, before)
    assert client.get(request_url, headers=user.headers).json()[field] != value


@pytest.mark.parametrize("field", ["contact_name", "company", "role_title"])
def test_line_breaks_in_names_that_reach_email_headers_are_refused(
    client: TestClient, engine: Engine, user: UserHandle, field: str
) -> None:
    """The rejection's contact name is the default recipient name of a feedback e-mail."""
    before = row_counts(engine)
    response = client.post(
        "/v1/rejections",
        json=rejection_body(**{field: "Dana\r\nBcc: everyone@example.com"}),
        headers=user.headers,
    )
    assert_refused(response, engine, before)


@pytest.mark.parametrize(
    "path",
    [
        "/v1/rejections?limit=101",
        "/v1/rejections?limit=0",
        "/v1/rejections?limit=-1",
        "/v1/rejections?limit=1e9",
        "/v1/rejections?cursor=not-a-cursor",
        "/v1/rejections?stage=ghosted",
        "/v1/rejections?rejected_from=2026-13-01",
        "/v1/rejections?rejected_to=0",
        "/v1/action-items?due_before=tomorrow",
        "/v1/action-items?status=finished",
        "/v1/feedback-requests?status=lost",
        "/v1/insights?from=2026-02-30",
        "/v1/insights?to=1700000000",
        "/v1/sync?limit=100000",
        "/v1/sync?since=garbage",
        f"/v1/rejections?q={'q' * 5000}",
    ],
)
def test_bad_query_parameters_are_4xx(
    client: TestClient, engine: Engine, user: UserHandle, path: str
) -> None:
    make_rejection(user)
    before = row_counts(engine)
    response = client.get(path, headers=user.headers)
    assert_refused(response, engine, before, {400, 422})


def test_an_overlong_reflection_step_and_bad_ids_write_nothing(
    client: TestClient, engine: Engine, user: UserHandle
) -> None:
    rejection = make_rejection(user)
    url = f"/v1/rejections/{rejection['id']}/reflection/steps/emotions"
    before = row_counts(engine)
    response = client.put(
        url,
        json={"status": "done", "content": {"emotions": ["sad"], "intensity": 3, "journal": LONG}},
        headers=user.headers,
    )
    assert_refused(response, engine, before)
    response = client.put(
        f"/v1/rejections/{rejection['id']}/reflection/steps/no-such-step",
        json={"status": "done", "content": {}},
        headers=user.headers,
    )
    assert_refused(response, engine, before, {404, 422})
    response = client.get(f"/v1/rejections/{'x' * 5000}", headers=user.headers)
    assert_refused(response, engine, before, {404, 422})
    response = client.get("/v1/rejections/%00", headers=user.headers)
    assert_refused(response, engine, before, {404, 422})


def test_database_counts_see_writes(client: TestClient, engine: Engine, user: UserHandle) -> None:
    """The row counter itself notices a write (so the checks above are not vacuous)."""
    before = row_counts(engine)
    make_rejection(user)
    after = row_counts(engine)
    assert after["rejections"] == before["rejections"] + 1
    with engine.connect() as connection:
        assert connection.execute(text("SELECT 1")).scalar_one() == 1
