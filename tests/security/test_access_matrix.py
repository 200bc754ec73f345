"""The access-control matrix, generated from the application's own routes.

Every route of the app is enumerated (`iter_route_contexts(app.routes)`), so a route added
later is checked without anyone editing this file: it must either require credentials
(and then be refused to the anonymous, and answer 404 to anyone holding another party's
ids) or be named in PUBLIC below, with the reason it is public.

The parties: user A (who owns one object of every kind and an organisation with an API
key and a webhook), user B (a stranger), organisation G (A granted it access; it has an
owner, an advisor and an API key), organisation H (nobody granted it anything) and user C
(who never granted anything to anyone).
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute, iter_route_contexts
from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine

from api.auth.dependencies import oauth2_scheme
from api.config import Settings
from api.worker.registry import WorkerContext
from api.worker.runner import run_until_idle
from tests.factories import (
    UserHandle,
    make_advisor,
    make_api_key,
    make_grant,
    make_org,
    make_rejection,
    make_user,
)

# Routes that answer without credentials, on purpose. Keep this list small; each entry says
# why it is public. A route missing from here that does not ask for credentials fails.
PUBLIC: dict[tuple[str, str], str] = {
    ("POST", "/v1/auth/register"): "creates the account",
    ("POST", "/v1/auth/token"): "the login itself",
    ("POST", "/v1/auth/refresh"): "authenticated by the refresh token in the body",
    ("POST", "/v1/auth/logout"): "authenticated by the refresh token in the body",
    ("GET", "/v1/reflection-guide"): "the same static guide for everyone",
    ("GET", "/v1/calendar/{token}.ics"): "capability URL: the token is the credential",
    ("GET", "/f/{token}"): "recipient page: the token is the credential",
    ("POST", "/f/{token}"): "recipient answer: the token is the credential",
    ("GET", "/f/{token}/thanks"): "static thank-you page",
    ("GET", "/f/{token}/opt-out"): "recipient opt-out page: the token is the credential",
    ("POST", "/f/{token}/opt-out"): "RFC 8058 one-click opt-out: the token is the credential",
    ("GET", "/f-assets/feedback.css"): "static stylesheet",
    ("GET", "/healthz"): "liveness probe",
    ("GET", "/readyz"): "readiness probe",
    ("GET", "/metrics"): "Prometheus; closed by REBOUND_METRICS_TOKEN when set",
    ("GET", "/openapi.json"): "the API description",
    ("GET", "/docs"): "documentation page",
    ("GET", "/docs/oauth2-redirect"): "documentation page",
    ("GET", "/redoc"): "documentation page",
}

# Authenticated routes whose path holds a capability token, not an object id: there is no
# "another party's id" to try. The invite token is checked by tests/orgs (an invite can be
# accepted only by the invited address).
TOKEN_ROUTES = {("POST", "/v1/invites/{token}/accept")}

# Path parameters that name a kind, not an object: filled with a valid value.
STEP_KEY = "emotions"

UUID_RE = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


@dataclass(frozen=True)
class Route:
    method: str
    path: str
    authenticated: bool

    @property
    def params(self) -> list[str]:
        return re.findall(r"{([^}]+)}", self.path)

    def __str__(self) -> str:
        return f"{self.method} {self.path}"


def _uses(dependant: Dependant, call: Any) -> bool:
    """Whether `call` is anywhere in the route's dependency tree."""
    return dependant.call is call or any(_uses(sub, call) for sub in dependant.dependencies)


def app_routes(app: FastAPI) -> list[Route]:
    routes: list[Route] = []
    for context in iter_route_contexts(app.routes):
        path = context.path
        if path is None:
            continue
        original = context.original_route
        authenticated = False
        if isinstance(original, APIRoute):
            authenticated = _uses(original.dependant, oauth2_scheme)
        for method in sorted((context.methods or set()) - {"HEAD"}):
            routes.append(Route(method, path, authenticated))
    return routes


@pytest.fixture
def settings(settings: Settings) -> Settings:
    # The webhook below points at a loopback address that is never called.
    return settings.model_copy(update={"webhook_allow_private_targets": True})


@dataclass
class Party:
    name: str
    headers: dict[str, str]


@dataclass
class World:
    a: UserHandle
    b: UserHandle
    c: UserHandle
    ids: dict[str, str]  # A's objects, by path parameter name
    g_org: str
    g_key_headers: dict[str, str]
    g_advisor: UserHandle
    g_owner: UserHandle
    h_org: str
    h_key_headers: dict[str, str]
    h_advisor: UserHandle
    h_owner: UserHandle
    c_rejection: str
    a_secret_ids: set[str] = field(default_factory=set)


def _ok(response: Any, status: int = 201) -> dict[str, Any]:
    assert response.status_code == status, response.text
    return dict(response.json())


def build_world(client: TestClient, engine: Engine, settings: Settings) -> World:
    a = make_user(client)
    rejection = make_rejection(a, company="Alpha Secret Ltd")
    _ok(
        client.put(
            f"/v1/rejections/{rejection['id']}/reflection/steps/{STEP_KEY}",
            json={"status": "done", "content": {"emotions": ["sad"], "intensity": 3}},
            headers=a.headers,
        ),
        200,
    )
    request = _ok(
        client.post(
            f"/v1/rejections/{rejection['id']}/feedback-requests",
            json={"recipient_name": "Dana", "recipient_email": "dana@acme.example"},
            headers=a.headers,
        )
    )
    plan = _ok(
        client.post(
            "/v1/action-plans",
            json={"title": "Get better at systems design", "rejection_ids": [rejection["id"]]},
            headers=a.headers,
        )
    )
    item = _ok(
        client.post(
            f"/v1/action-plans/{plan['id']}/items", json={"title": "Read DDIA"}, headers=a.headers
        )
    )
    # A's own organisation, with an API key and a webhook that has one delivery.
    a_org = make_org(a, name="Alpha Org")
    a_key, _ = make_api_key(a, a_org["id"])
    hook = _ok(
        client.post(
            f"/v1/orgs/{a_org['id']}/webhooks",
            json={"url": "http://127.0.0.1:9/hook", "events": ["rejection.created"]},
            headers=a.headers,
        )
    )
    # Organisation G: A grants it access (so a delivery is fanned out to A's own org too).
    g_owner = make_user(client)
    g_org = make_org(g_owner, name="Granted Careers")
    g_advisor = make_advisor(client, g_owner, g_org["id"])
    _, g_key_headers = make_api_key(g_owner, g_org["id"])
    grant = make_grant(
        a,
        g_org["id"],
        ["rejections:read", "reflections:read", "feedback:read", "actions:read", "insights:read"],
    )
    make_grant(a, a_org["id"], ["rejections:read"])
    make_rejection(a, company="Alpha Second Ltd")
    # The worker fans the event out into a delivery (its POST to port 9 fails: fine).
    asyncio.run(run_until_idle(WorkerContext(engine=engine, settings=settings, worker_id="t")))
    deliveries = _ok(
        client.get(f"/v1/orgs/{a_org['id']}/webhooks/{hook['id']}/deliveries", headers=a.headers),
        200,
    )["items"]
    ids = {
        "rejection_id": rejection["id"],
        "key": STEP_KEY,
        "request_id": request["id"],
        "plan_id": plan["id"],
        "item_id": item["id"],
        "org_id": a_org["id"],
        "user_id": a.id,
        "key_id": a_key["id"],
        "grant_id": grant["id"],
        "hook_id": hook["id"],
    }
    assert deliveries, "the webhook got no delivery to try ids with"
    ids["delivery_id"] = deliveries[0]["id"]
    # Organisation H: nobody granted it anything.
    h_owner = make_user(client)
    h_org = make_org(h_owner, name="Ungranted Careers")
    h_advisor = make_advisor(client, h_owner, h_org["id"])
    _, h_key_headers = make_api_key(h_owner, h_org["id"])
    # C never granted anything; B is a stranger with objects of its own.
    c = make_user(client)
    c_rejection = make_rejection(c, company="Charlie Private Inc")
    b = make_user(client)
    make_rejection(b, company="Bravo Ltd")
    world = World(
        a=a,
        b=b,
        c=c,
        ids=ids,
        g_org=g_org["id"],
        g_key_headers=g_key_headers,
        g_advisor=g_advisor,
        g_owner=g_owner,
        h_org=h_org["id"],
        h_key_headers=h_key_headers,
        h_advisor=h_advisor,
        h_owner=h_owner,
        c_rejection=c_rejection["id"],
    )
    world.a_secret_ids = {v for k, v in ids.items() if k not in {"key", "org_id", "user_id"}} | {
        a.id,
        a_org["id"],
    }
    return world


# A body valid enough to get past validation, so that the answer is about access.
BODIES: dict[tuple[str, str], Any] = {
    ("PATCH", "/v1/rejections/{rejection_id}"): {"notes": "mine now"},
    ("PUT", "/v1/rejections/{rejection_id}/reflection/steps/{key}"): {
        "status": "done",
        "content": {"emotions": ["angry"], "intensity": 5},
    },
    ("POST", "/v1/rejections/{rejection_id}/feedback-requests"): {
        "recipient_name": "Eve",
        "recipient_email": "eve@evil.example",
    },
    ("PATCH", "/v1/feedback-requests/{request_id}"): {"subject": "Hello"},
    ("POST", "/v1/feedback-requests/{request_id}/responses"): {
        "outcome": "responded",
        "text": "forged",
    },
    ("PATCH", "/v1/action-plans/{plan_id}"): {"title": "Hijacked"},
    ("POST", "/v1/action-plans/{plan_id}/items"): {"title": "Injected"},
    ("PATCH", "/v1/action-items/{item_id}"): {"title": "Hijacked"},
    ("POST", "/v1/orgs/{org_id}/invites"): {"email": "eve@evil.example", "role": "owner"},
    ("POST", "/v1/orgs/{org_id}/api-keys"): {"name": "stolen"},
    ("POST", "/v1/orgs/{org_id}/webhooks"): {
        "url": "http://127.0.0.1:9/evil",
        "events": ["rejection.created"],
    },
    ("PATCH", "/v1/orgs/{org_id}/webhooks/{hook_id}"): {"enabled": False},
}


def call(client: TestClient, route: Route, ids: dict[str, str], headers: dict[str, str]) -> Any:
    path = route.path
    for name in route.params:
        path = path.replace("{" + name + "}", ids[name])
    body = BODIES.get((route.method, route.path))
    kwargs: dict[str, Any] = {"headers": headers}
    if route.method in {"POST", "PUT", "PATCH"}:
        kwargs["json"] = body if body is not None else {}
    return client.request(route.method, path, **kwargs)


def is_problem(response: Any) -> bool:
    return response.headers.get("content-type", "").startswith("application/problem+json")


def leaked(response: Any, secret_ids: set[str]) -> set[str]:
    return set(UUID_RE.findall(response.text)) & secret_ids


def id_routes(app: FastAPI) -> Iterator[Route]:
    for route in app_routes(app):
        if not route.authenticated or not route.params:
            continue
        if (route.method, route.path) in TOKEN_ROUTES:
            continue
        yield route


def check_foreign(
    client: TestClient,
    routes: list[Route],
    ids: dict[str, str],
    headers: dict[str, str],
    secret_ids: set[str],
    who: str,
    allowed: frozenset[int] = frozenset({404}),
) -> list[str]:
    """Call every route with `ids`; each must answer a problem in `allowed`, leaking none
    of `secret_ids`."""
    failures = []
    for route in routes:
        if any(name not in ids for name in route.params):
            failures.append(f"{who}: {route}: no id to fill {route.params}")
            continue
        response = call(client, route, ids, headers)
        if (
            response.status_code not in allowed
            or not is_problem(response)
            or leaked(response, secret_ids)
        ):
            failures.append(f"{who}: {route} -> {response.status_code} {response.text[:200]}")
    return failures


def test_every_route_is_public_by_name_or_refuses_the_anonymous(
    app: FastAPI, client: TestClient
) -> None:
    routes = app_routes(app)
    assert len(routes) > 60  # the generator sees the included routers
    failures = []
    checked = 0
    for route in routes:
        key = (route.method, route.path)
        if not route.authenticated:
            if key not in PUBLIC:
                failures.append(f"{route} asks for no credentials and is not in PUBLIC")
            continue
        assert key not in PUBLIC, f"{route} is in PUBLIC but asks for credentials"
        ids = dict.fromkeys(route.params, "00000000-0000-7000-8000-000000000000")
        for headers in (
            {},
            {"Authorization": "Bearer not-a-token"},
            {"Authorization": "Basic eDp5"},
        ):
            response = call(client, route, ids, headers)
            checked += 1
            if response.status_code != 401 or not is_problem(response):
                failures.append(
                    f"{route} {headers} -> {response.status_code} {response.text[:120]}"
                )
            elif "bearer" not in response.headers.get("www-authenticate", "").lower():
                failures.append(f"{route}: 401 without WWW-Authenticate: Bearer")
    assert not failures, "\n".join(failures)
    assert checked > 150


def test_a_stranger_gets_404_for_every_route_with_another_users_ids(
    app: FastAPI, client: TestClient, engine: Engine, settings: Settings
) -> None:
    world = build_world(client, engine, settings)
    routes = list(id_routes(app))
    assert len(routes) > 40
    failures = check_foreign(
        client, routes, world.ids, world.b.headers, world.a_secret_ids, "user B"
    )
    # Organisation-level routes under H's own id still never reach A's objects.
    # H's own org id with the ids of A's organisation's keys, members, webhooks and
    # deliveries: 404, or the function-level denial of that role (advisor 403, key 401).
    h_ids = {**world.ids, "org_id": world.h_org}
    h_routes = [r for r in routes if r.path.startswith("/v1/orgs/{org_id}/") and len(r.params) > 1]
    for who, headers in (
        ("H owner", world.h_owner.headers),
        ("H advisor", world.h_advisor.headers),
        ("H key", world.h_key_headers),
    ):
        failures += check_foreign(
            client,
            h_routes,
            h_ids,
            headers,
            world.a_secret_ids,
            who,
            allowed=frozenset({401, 403, 404}),
        )
        # and nothing of A's organisation with A's org id either
        failures += check_foreign(
            client,
            [r for r in routes if r.path.startswith("/v1/orgs/{org_id}")],
            world.ids,
            headers,
            world.a_secret_ids,
            who + " on A's org",
            # an API key is refused by the login-only routes before any lookup
            allowed=frozenset({401, 404}) if who == "H key" else frozenset({404}),
        )
    assert not failures, "\n".join(failures)
    # Nothing B tried changed A's objects.
    a = world.a
    assert (
        client.get(f"/v1/rejections/{world.ids['rejection_id']}", headers=a.headers).json()["notes"]
        != "mine now"
    )
    for path in (
        f"/v1/rejections/{world.ids['rejection_id']}",
        f"/v1/feedback-requests/{world.ids['request_id']}",
        f"/v1/action-plans/{world.ids['plan_id']}",
        f"/v1/action-items/{world.ids['item_id']}",
        f"/v1/me/grants/{world.ids['grant_id']}",
        f"/v1/orgs/{world.ids['org_id']}/webhooks/{world.ids['hook_id']}",
    ):
        response = client.get(path, headers=a.headers)
        assert response.status_code == 200, (path, response.text)
        assert response.json().get("title") not in {"Hijacked"}
        assert response.json().get("revoked_at") is None
    keys = client.get(f"/v1/orgs/{world.ids['org_id']}/api-keys", headers=a.headers).json()
    assert [k["id"] for k in keys["items"]] == [world.ids["key_id"]]


def test_org_client_endpoints_follow_the_grant(
    app: FastAPI, client: TestClient, engine: Engine, settings: Settings
) -> None:
    world = build_world(client, engine, settings)
    client_routes = [
        r
        for r in app_routes(app)
        if r.path.startswith("/v1/orgs/{org_id}/clients/{user_id}") and r.method == "GET"
    ]
    assert len(client_routes) >= 6
    failures: list[str] = []
    g_readers = (("G key", world.g_key_headers), ("G advisor", world.g_advisor.headers))
    # With A's grant, G reads A's data: the routes are really reachable (else 404s prove nothing).
    g_on_a = {**world.ids, "org_id": world.g_org}
    for who, headers in g_readers:
        for route in client_routes:
            response = call(client, route, g_on_a, headers)
            if response.status_code != 200:
                failures.append(f"{who} on A (granted): {route} -> {response.status_code}")
    # C never granted G anything: every client route is 404, C's rows never show.
    g_on_c = {**g_on_a, "user_id": world.c.id, "rejection_id": world.c_rejection}
    c_secret = {world.c.id, world.c_rejection}
    for who, headers in g_readers:
        failures += check_foreign(client, client_routes, g_on_c, headers, c_secret, who + " on C")
        # A's id with C's rejection: still 404
        mixed = {**g_on_a, "rejection_id": world.c_rejection}
        failures += check_foreign(
            client,
            [r for r in client_routes if "rejection_id" in r.params],
            mixed,
            headers,
            c_secret,
            who + " on A with C's rejection",
        )
    # H (no grant from anyone) sees nothing of A through its own org id.
    h_on_a = {**world.ids, "org_id": world.h_org}
    for who, headers in (
        ("H key", world.h_key_headers),
        ("H advisor", world.h_advisor.headers),
        ("H owner", world.h_owner.headers),
    ):
        failures += check_foreign(client, client_routes, h_on_a, headers, world.a_secret_ids, who)
        listing = client.get(f"/v1/orgs/{world.h_org}/clients", headers=headers)
        if listing.status_code != 200 or leaked(listing, world.a_secret_ids | {world.c.id}):
            failures.append(f"{who}: client list -> {listing.status_code} {listing.text[:200]}")
    # A user who is no member of G, with G's id: 404 as well.
    failures += check_foreign(
        client, client_routes, g_on_a, world.b.headers, world.a_secret_ids, "user B via G"
    )
    assert not failures, "\n".join(failures)
    # G's client list holds A, never C.
    listing = client.get(f"/v1/orgs/{world.g_org}/clients", headers=world.g_key_headers)
    assert world.a.id in listing.text and world.c.id not in listing.text
    # An API key is no user: user routes refuse it with 401.
    for route in app_routes(app):
        if route.authenticated and not route.path.startswith("/v1/orgs") and not route.params:
            response = call(client, route, {}, world.g_key_headers)
            assert response.status_code in {401, 403}, (str(route), response.text)
            assert leaked(response, world.a_secret_ids) == set()


def test_lists_never_hold_another_users_rows(
    app: FastAPI, client: TestClient, engine: Engine, settings: Settings
) -> None:
    world = build_world(client, engine, settings)
    b_rejection = make_rejection(world.b)["id"]
    b_ids = {"rejection_id": b_rejection, "key": STEP_KEY}
    lists = [
        r
        for r in app_routes(app)
        if r.method == "GET"
        and r.authenticated
        and all(p in b_ids for p in r.params)
        and not r.path.startswith("/v1/orgs")
    ]
    assert len(lists) >= 8
    for route in lists:
        response = call(client, route, b_ids, world.b.headers)
        assert response.status_code == 200, (str(route), response.text)
        assert leaked(response, world.a_secret_ids) == set(), str(route)
        assert "Alpha Secret" not in response.text, str(route)
    # B's own org listings hold none of A's orgs.
    assert client.get("/v1/orgs", headers=world.b.headers).json()["items"] == []
