"""Rate limits: per user, per API key and per address; 429 with Retry-After; Redis shared."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine

from api.config import Settings
from api.main import create_app
from tests.factories import PASSWORD, make_user
from tests.plugins.services import missing_service

REDIS_URL = "redis://127.0.0.1:6379"


def _app(settings: Settings, **changes: object) -> FastAPI:
    return create_app(settings.model_copy(update=changes))


@pytest.fixture
def limited(settings: Settings, engine: Engine) -> Iterator[TestClient]:
    """The app with a limit of 5 requests a day.

    A day, not a minute: the sliding window weighs the previous window's count by how much
    of it still overlaps, so counts in a test are exact only far from a window's edge.
    """
    with TestClient(_app(settings, rate_limit="5/day")) as client:
        yield client


def _assert_429(response: object) -> None:
    from httpx import Response

    assert isinstance(response, Response)
    assert response.status_code == 429, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert body["status"] == 429 and body["title"] == "Too Many Requests"
    retry_after = int(response.headers["Retry-After"])
    assert 1 <= retry_after <= 86400
    assert response.headers["RateLimit-Limit"] == "5"
    assert response.headers["RateLimit-Remaining"] == "0"
    assert int(response.headers["RateLimit-Reset"]) == retry_after
    assert response.headers["X-Request-ID"]


def test_each_user_has_a_bucket_of_its_own(limited: TestClient, client: TestClient) -> None:
    alice, bob = make_user(client), make_user(client)  # made through the unlimited app
    remaining = []
    for _ in range(5):
        response = limited.get("/v1/rejections", headers=alice.headers)
        assert response.status_code == 200
        assert response.headers["RateLimit-Limit"] == "5"
        assert response.headers["RateLimit-Policy"] == "5;w=86400"
        remaining.append(int(response.headers["RateLimit-Remaining"]))
    assert remaining == [4, 3, 2, 1, 0]
    _assert_429(limited.get("/v1/rejections", headers=alice.headers))
    _assert_429(limited.post("/v1/rejections", json={}, headers=alice.headers))
    # Bob, and anonymous callers from the same address, are not held back by Alice.
    assert limited.get("/v1/rejections", headers=bob.headers).status_code == 200
    assert limited.get("/v1/me", headers={"X-Request-ID": "anon"}).status_code == 401


def test_anonymous_callers_are_limited_by_address(limited: TestClient) -> None:
    for _ in range(5):
        limited.post("/v1/auth/token", data={"username": "nobody@example.com", "password": "x"})
    _assert_429(limited.post("/v1/auth/register", json={"email": "late@example.com"}))
    # An invalid token is anonymous: it counts against the address too.
    _assert_429(limited.get("/v1/me", headers={"Authorization": "Bearer not-a-token"}))
    # Probes and scrapes are never limited.
    assert limited.get("/healthz").status_code == 200
    assert limited.get("/readyz").status_code == 200
    assert limited.get("/metrics").status_code == 200


def test_api_keys_have_buckets_of_their_own(limited: TestClient) -> None:
    # A public route, so that the keys are not refused (a refused key counts for the address).
    key_one = {"Authorization": f"Bearer rbk_{uuid.uuid4().hex}"}
    key_two = {"Authorization": f"Bearer rbk_{uuid.uuid4().hex}"}
    for _ in range(5):
        assert limited.get("/openapi.json", headers=key_one).status_code == 200
    _assert_429(limited.get("/openapi.json", headers=key_one))
    assert limited.get("/openapi.json", headers=key_two).status_code == 200
    assert limited.get("/openapi.json").status_code == 200  # the address is untouched


def test_made_up_api_keys_exhaust_the_address(limited: TestClient) -> None:
    """Each invented key would get a fresh bucket; failing ones also count for the address."""
    statuses = [
        limited.get(
            "/v1/orgs/x/clients", headers={"Authorization": f"Bearer rbk_{uuid.uuid4().hex}"}
        ).status_code
        for _ in range(8)
    ]
    assert statuses[-1] == 429, statuses
    _assert_429(limited.get("/v1/auth/nothing"))


def test_failed_logins_per_account_are_429_with_retry_after(
    settings: Settings, engine: Engine
) -> None:
    with TestClient(_app(settings, login_rate_limit="3/15minutes")) as client:
        user = make_user(client)
        form = {"username": user.email, "password": "wrong password"}
        statuses = [client.post("/v1/auth/token", data=form).status_code for _ in range(4)]
        assert statuses == [401, 401, 401, 429]
        refused = client.post("/v1/auth/token", data={**form, "password": PASSWORD})
        assert refused.status_code == 429
        assert int(refused.headers["Retry-After"]) > 0


def test_redis_storage_is_shared_by_replicas(
    settings: Settings, engine: Engine, client: TestClient
) -> None:
    try:
        import redis

        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=1).ping()
    except Exception as exc:
        missing_service(f"Redis at {REDIS_URL} is needed: {exc}")
        return
    storage = f"{REDIS_URL}/0"
    with (
        TestClient(_app(settings, rate_limit="4/day", rate_limit_storage=storage)) as one,
        TestClient(_app(settings, rate_limit="4/day", rate_limit_storage=storage)) as two,
    ):
        user = make_user(client)  # a new user: a bucket no earlier run has touched
        assert [one.get("/v1/me", headers=user.headers).status_code for _ in range(2)] == [
            200,
            200,
        ]
        assert two.get("/v1/me", headers=user.headers).headers["RateLimit-Remaining"] == "1"
        assert one.get("/v1/me", headers=user.headers).status_code == 200
        refused = two.get("/v1/me", headers=user.headers)
        assert refused.status_code == 429
        assert int(refused.headers["Retry-After"]) >= 1


def test_an_unreachable_store_does_not_take_the_api_down(
    settings: Settings, engine: Engine
) -> None:
    with TestClient(
        _app(settings, rate_limit_storage="redis://127.0.0.1:1/0", rate_limit="1/minute")
    ) as client:
        for _ in range(3):
            assert client.get("/healthz").status_code == 200
            assert client.get("/v1/me").status_code == 401
