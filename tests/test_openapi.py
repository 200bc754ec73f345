from __future__ import annotations

import json
from pathlib import Path

from fastapi.testclient import TestClient

from api.openapi import render_openapi

COMMITTED = Path(__file__).resolve().parent.parent / "openapi" / "openapi.json"


def test_committed_openapi_is_current() -> None:
    assert COMMITTED.read_text() == render_openapi(), (
        "openapi/openapi.json is stale: run `.venv/bin/rebound openapi` and commit it"
    )


def test_every_route_has_a_summary_and_a_tag(client: TestClient) -> None:
    schema = client.get("/openapi.json").json()
    assert schema == json.loads(COMMITTED.read_text())
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            assert operation.get("summary"), f"{method.upper()} {path} has no summary"
            assert operation.get("tags"), f"{method.upper()} {path} has no tag"


def test_unknown_route_and_method_are_problems(client: TestClient) -> None:
    missing = client.get("/v1/nothing-here")
    assert missing.status_code == 404
    assert missing.headers["content-type"] == "application/problem+json"
    wrong_method = client.put("/v1/rejections")
    assert wrong_method.status_code == 405
    assert wrong_method.headers["content-type"] == "application/problem+json"


def test_health_and_request_id(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    assert client.get("/readyz").status_code == 200
    echoed = client.get("/healthz", headers={"X-Request-ID": "abc-123"})
    assert echoed.headers["X-Request-ID"] == "abc-123"
    replaced = client.get("/healthz", headers={"X-Request-ID": "bad id with spaces"})
    assert replaced.headers["X-Request-ID"] != "bad id with spaces"


def test_oversized_body_is_413(client: TestClient) -> None:
    response = client.post(
        "/v1/auth/register",
        content=b"{" + b" " * (1024 * 1024 + 10) + b"}",
        headers={"content-type": "application/json"},
    )
    assert response.status_code == 413
    assert response.headers["content-type"] == "application/problem+json"
