"""Query strings parsed into one model (api/http/query.py), seen through the rejections list."""

from __future__ import annotations

from fastapi.testclient import TestClient

from api.rejections.schemas import RejectionFilters
from tests.factories import make_rejection, make_user


def test_a_bad_value_is_a_422_problem_naming_the_parameter(client: TestClient) -> None:
    user = make_user(client)
    for query, name in (
        ("limit=abc", "limit"),
        ("limit=0", "limit"),
        ("stage=bogus", "stage"),
        ("rejected_from=0", "rejected_from"),
        ("rejected_to=2026-13-01", "rejected_to"),
        ("company=" + "x" * 201, "company"),
    ):
        response = client.get(f"/v1/rejections?{query}", headers=user.headers)
        assert response.status_code == 422, query
        assert response.headers["content-type"] == "application/problem+json"
        problem = response.json()
        assert problem["errors"][0]["loc"] == ["query", name]
        assert problem["detail"].startswith(f"query.{name}: ")


def test_unknown_names_are_ignored_and_a_repeated_name_takes_its_last_value(
    client: TestClient,
) -> None:
    user = make_user(client)
    for n in range(3):
        make_rejection(user, company=f"Company {n}")
    listed = client.get("/v1/rejections?limit=1&limit=2&colour=blue", headers=user.headers)
    assert listed.status_code == 200
    assert len(listed.json()["items"]) == 2


def test_filters_combine_and_page_together(client: TestClient) -> None:
    user = make_user(client)
    wanted = [
        make_rejection(user, company=f"Acme {n}", stage="final", tags=["remote"])["id"]
        for n in range(5)
    ]
    make_rejection(user, company="Acme other stage", stage="applied", tags=["remote"])
    make_rejection(user, company="Acme no tag", stage="final", tags=[])
    seen: list[str] = []
    query = "stage=final&tag=remote&q=acme&limit=2"
    page = client.get(f"/v1/rejections?{query}", headers=user.headers).json()
    while True:
        seen += [item["id"] for item in page["items"]]
        if not page["next_cursor"]:
            break
        page = client.get(
            f"/v1/rejections?{query}&cursor={page['next_cursor']}", headers=user.headers
        ).json()
    assert seen == wanted[::-1]


def test_the_parameters_are_documented_as_fastapi_would(client: TestClient) -> None:
    document = client.get("/openapi.json").json()
    parameters = document["paths"]["/v1/rejections"]["get"]["parameters"]
    assert [p["name"] for p in parameters] == list(RejectionFilters.model_fields)
    assert all(p["in"] == "query" and p["required"] is False for p in parameters)
    limit = parameters[0]["schema"]
    assert (limit["minimum"], limit["maximum"], limit["default"]) == (1, 100, 20)
    stage = parameters[2]["schema"]["anyOf"][0]["$ref"]
    assert stage.removeprefix("#/components/schemas/") in document["components"]["schemas"]
