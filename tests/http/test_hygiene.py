"""HTTP hygiene: CORS from the allow-list, no-store, nosniff, a strict CSP on HTML, /docs."""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.responses import HTMLResponse
from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine

from api.config import Settings
from api.http.middleware import HTML_CONTENT_SECURITY_POLICY
from api.main import create_app
from tests.factories import make_user

ORIGIN = "https://app.rebound.example"


def _app(settings: Settings, **changes: object) -> FastAPI:
    return create_app(settings.model_copy(update=changes))


def test_cors_answers_only_listed_origins(settings: Settings, engine: Engine) -> None:
    with TestClient(_app(settings, cors_origins=[ORIGIN])) as client:
        preflight = client.options(
            "/v1/rejections",
            headers={
                "Origin": ORIGIN,
                "Access-Control-Request-Method": "PATCH",
                "Access-Control-Request-Headers": "authorization, if-match, idempotency-key",
            },
        )
        assert preflight.status_code == 200
        assert preflight.headers["Access-Control-Allow-Origin"] == ORIGIN
        assert "PATCH" in preflight.headers["Access-Control-Allow-Methods"]
        allowed = preflight.headers["Access-Control-Allow-Headers"].lower()
        assert {"authorization", "if-match", "idempotency-key"} <= {
            part.strip() for part in allowed.split(",")
        }
        user = make_user(client)
        response = client.get("/v1/rejections", headers={**user.headers, "Origin": ORIGIN})
        assert response.headers["Access-Control-Allow-Origin"] == ORIGIN
        exposed = response.headers["Access-Control-Expose-Headers"].lower()
        for header in ("etag", "x-request-id", "retry-after", "ratelimit-remaining"):
            assert header in exposed
        stranger = client.get(
            "/v1/rejections", headers={**user.headers, "Origin": "https://evil.example"}
        )
        assert "Access-Control-Allow-Origin" not in stranger.headers
        refused = client.options(
            "/v1/rejections",
            headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "GET"},
        )
        assert refused.status_code == 400


def test_no_cors_without_an_allow_list(client: TestClient) -> None:
    response = client.get("/healthz", headers={"Origin": ORIGIN})
    assert "Access-Control-Allow-Origin" not in response.headers


def test_authenticated_answers_are_not_stored_and_nothing_is_sniffed(client: TestClient) -> None:
    user = make_user(client)
    for response in (
        client.get("/v1/me", headers=user.headers),
        client.get("/v1/rejections", headers=user.headers),
        client.get("/v1/rejections/nope", headers=user.headers),
        client.get("/v1/me", headers={"Authorization": "Bearer expired"}),
    ):
        assert response.headers["Cache-Control"] == "no-store", response.request.url
        assert response.headers["X-Content-Type-Options"] == "nosniff"
    public = client.get("/healthz")
    assert public.headers["X-Content-Type-Options"] == "nosniff"
    assert "Cache-Control" not in public.headers
    assert "Content-Security-Policy" not in public.headers  # JSON needs none


def test_html_pages_get_a_strict_content_security_policy(
    settings: Settings, engine: Engine
) -> None:
    app = _app(settings)

    @app.get("/page", response_class=HTMLResponse, tags=["test"])
    def page() -> str:
        """An HTML page."""
        return "<!doctype html><form method=post><button>Send</button></form>"

    @app.get("/own-policy", response_class=HTMLResponse, tags=["test"])
    def own_policy() -> HTMLResponse:
        """A page with a policy of its own."""
        return HTMLResponse(
            "<p>hi</p>",
            headers={
                "Content-Security-Policy": "default-src 'none'",
                "Referrer-Policy": "same-origin",
                "X-Content-Type-Options": "nosniff",
            },
        )

    with TestClient(app) as client:
        response = client.get("/page")
        policy = response.headers["Content-Security-Policy"]
        assert policy == HTML_CONTENT_SECURITY_POLICY
        directives = {
            name: value
            for name, _, value in (part.strip().partition(" ") for part in policy.split(";"))
        }
        assert directives["default-src"] == "'none'"
        assert directives["form-action"] == "'self'"
        assert directives["frame-ancestors"] == "'none'"
        assert directives["base-uri"] == "'none'"
        assert "script-src" not in directives  # no script at all
        assert response.headers["Referrer-Policy"] == "no-referrer"
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        own = client.get("/own-policy").headers
        # A header the page sets is kept, once; the defaults fill only what it left out.
        assert own.get_list("Content-Security-Policy") == ["default-src 'none'"]
        assert own.get_list("Referrer-Policy") == ["same-origin"]
        assert own.get_list("X-Content-Type-Options") == ["nosniff"]
        assert own.get_list("X-Frame-Options") == ["DENY"]


def test_docs_can_be_turned_off(settings: Settings, engine: Engine) -> None:
    with TestClient(_app(settings, docs_enabled=True)) as client:
        docs = client.get("/docs")
        assert docs.status_code == 200 and "swagger" in docs.text.lower()
        # Swagger UI loads its script from a CDN: the docs keep the browser's defaults.
        assert "Content-Security-Policy" not in docs.headers
        assert client.get("/redoc").status_code == 200
        assert client.get("/openapi.json").json()["info"]["title"] == "Rebound"
    with TestClient(_app(settings, docs_enabled=False)) as client:
        for path in ("/docs", "/redoc", "/openapi.json", "/docs/oauth2-redirect"):
            response = client.get(path)
            assert response.status_code == 404, path
            assert response.headers["content-type"] == "application/problem+json"
        assert client.get("/healthz").status_code == 200
