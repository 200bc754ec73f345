"""Property-based API testing: schemathesis drives every operation of the app's own OpenAPI
document, in process (ASGI), as a user who has data, and checks each answer.

Checks: no server error, status code documented, content type documented, response body
valid against its schema, and invalid input (negative data) refused with a 4xx. Positive
cases get real ids of the user's objects in their path parameters half of the time, so the
fuzzer reaches past the 404 of an unknown id.

Bounded for CI with hypothesis settings (`MAX_EXAMPLES` per operation, no database of
examples, no deadline: the machine is shared). Nothing is excluded.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_schema_conformance,
    status_code_conformance,
)

from api.config import Settings
from api.main import create_app
from tests.factories import make_api_key, make_grant, make_org, make_rejection, make_user

pytestmark = pytest.mark.slow

MAX_EXAMPLES = 6
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    negative_data_rejection,
]
COUNTS: dict[str, Any] = {"cases": 0, "operations": set()}
_flip = itertools.count()


@pytest.fixture
def world(client: TestClient) -> dict[str, Any]:
    user = make_user(client)
    rejection = make_rejection(user)
    request = client.post(
        f"/v1/rejections/{rejection['id']}/feedback-requests",
        json={"recipient_name": "Dana", "recipient_email": "dana@acme.example"},
        headers=user.headers,
    ).json()
    plan = client.post(
        "/v1/action-plans",
        json={"title": "Practise", "rejection_ids": [rejection["id"]]},
        headers=user.headers,
    ).json()
    item = client.post(
        f"/v1/action-plans/{plan['id']}/items",
        json={"title": "Mock interview"},
        headers=user.headers,
    ).json()
    org = make_org(user)
    key, _ = make_api_key(user, org["id"])
    grant = make_grant(user, org["id"], ["rejections:read", "insights:read"])
    return {
        "headers": user.headers,
        "ids": {
            "rejection_id": rejection["id"],
            "request_id": request["id"],
            "plan_id": plan["id"],
            "item_id": item["id"],
            "org_id": org["id"],
            "user_id": user.id,
            "key_id": key["id"],
            "grant_id": grant["id"],
            "key": "emotions",
        },
    }


# The schema is read at import time from an app that is never called (its OpenAPI document
# does not depend on the database); each case is sent to the test's own app (`app=`).
@pytest.fixture(scope="module", autouse=True)
def report_figures() -> Iterator[None]:
    """The figures for SECURITY.md, printed at the end (`pytest -s`)."""
    yield
    print(f"\nschemathesis: {len(COUNTS['operations'])} operations, {COUNTS['cases']} cases")  # noqa: T201


schema = schemathesis.openapi.from_asgi(
    "/openapi.json",
    create_app(Settings(database_url="sqlite://", embedded_worker=False, log_level="WARNING")),
)


@schema.parametrize()
@settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    database=None,
    suppress_health_check=list(HealthCheck),
)
def test_api(case: Any, app: Any, world: dict[str, Any]) -> None:
    mode = str(getattr(case.meta.generation, "mode", "positive")) if case.meta else "positive"
    if "negative" not in mode.lower() and case.path_parameters and next(_flip) % 2 == 0:
        for name in list(case.path_parameters):
            if name in world["ids"]:
                case.path_parameters[name] = world["ids"][name]
    COUNTS["cases"] += 1
    COUNTS["operations"].add(case.operation.label)
    case.call_and_validate(headers=world["headers"], checks=CHECKS, app=app)
