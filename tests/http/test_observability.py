"""Observability: request ids, the JSON request log (with nothing secret in it), Prometheus
metrics, liveness and readiness."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import structlog
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine

from api.config import Settings
from api.db import open_session
from api.logging import configure_logging
from api.main import create_app
from api.worker.queue import enqueue
from api.worker.registry import TASKS, WorkerContext, task
from api.worker.runner import run_until_idle
from tests.factories import PASSWORD, make_rejection, make_user

JOURNAL = "I cried in the car park after the onsite"


@pytest.fixture
def json_logs(settings: Settings, capsys: pytest.CaptureFixture[str]) -> Iterator[Settings]:
    """Logging as in production (JSON lines on stdout), at DEBUG to see every line."""
    saved = structlog.get_config()
    configured = settings.model_copy(update={"log_json": True, "log_level": "DEBUG"})
    configure_logging(configured)
    # Not cached: a logger cached now would keep writing to this test's captured stdout.
    structlog.configure(cache_logger_on_first_use=False)
    yield configured
    structlog.configure(**saved)


def _lines(capsys: pytest.CaptureFixture[str]) -> list[dict[str, Any]]:
    out = capsys.readouterr().out
    return [json.loads(line) for line in out.splitlines() if line.startswith("{")]


def test_request_ids_are_echoed_when_sane_and_made_otherwise(client: TestClient) -> None:
    echoed = client.get("/healthz", headers={"X-Request-ID": "mobile.retry_2-abc"})
    assert echoed.headers["X-Request-ID"] == "mobile.retry_2-abc"
    for bad in ("has spaces", "x" * 129, "semi;colon", ""):
        made = client.get("/v1/nothing", headers={"X-Request-ID": bad})
        assert made.status_code == 404
        assert made.headers["X-Request-ID"] not in ("", bad)
        assert len(made.headers["X-Request-ID"]) == 32
    assert (
        client.get("/healthz").headers["X-Request-ID"]
        != client.get("/healthz").headers["X-Request-ID"]
    )


def test_the_request_log_line(
    json_logs: Settings, engine: Engine, capsys: pytest.CaptureFixture[str]
) -> None:
    with TestClient(create_app(json_logs)) as client:
        user = make_user(client)
        rejection = make_rejection(user)
        capsys.readouterr()
        response = client.get(
            f"/v1/rejections/{rejection['id']}",
            headers={**user.headers, "X-Request-ID": "trace-me"},
        )
    [line] = [line for line in _lines(capsys) if line.get("event") == "request"]
    assert line["request_id"] == "trace-me" == response.headers["X-Request-ID"]
    assert line["user_id"] == user.id
    assert line["method"] == "GET"
    assert line["route"] == "/v1/rejections/{rejection_id}"
    assert line["status"] == 200
    assert isinstance(line["duration_ms"], float) and line["duration_ms"] >= 0
    assert line["level"] == "info" and line["timestamp"].endswith("Z")
    assert rejection["id"] not in json.dumps(line)  # the template, not the path


def test_no_password_token_or_journal_ever_reaches_the_log(
    json_logs: Settings, engine: Engine, capsys: pytest.CaptureFixture[str]
) -> None:
    secrets: list[str] = [PASSWORD, JOURNAL]
    with TestClient(create_app(json_logs)) as client:
        user = make_user(client)
        login = client.post("/v1/auth/token", data={"username": user.email, "password": PASSWORD})
        tokens = login.json()
        secrets += [tokens["access_token"], tokens["refresh_token"]]
        client.post("/v1/auth/token", data={"username": user.email, "password": "Wrong pass 1"})
        secrets.append("Wrong pass 1")
        client.post("/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
        client.post("/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]})  # reuse
        rejection = make_rejection(user, notes="fine to log? no, but not a secret")
        client.put(
            f"/v1/rejections/{rejection['id']}/reflection/steps/emotions",
            json={
                "status": "done",
                "content": {"emotions": ["sad"], "intensity": 3, "journal": JOURNAL},
            },
            headers=user.headers,
        )
        client.get("/v1/me", headers={"Authorization": "Bearer rbk_secretkeymaterial"})
        secrets.append("rbk_secretkeymaterial")
        structlog.get_logger("test").info(
            "careless", password="p4ss", token="t0k", nested={"journal": "j0urnal"}
        )
        secrets += ["p4ss", "t0k", "j0urnal"]
        client.patch(
            "/v1/me",
            json={"password": "New passphrase 2", "current_password": PASSWORD},
            headers=user.headers,
        )
        secrets.append("New passphrase 2")
    out = capsys.readouterr().out
    assert '"event":"request"' in out
    for secret in secrets:
        assert secret not in out, f"{secret[:12]}… is in the log"


def test_an_unhandled_error_is_a_logged_counted_500_with_a_request_id(
    json_logs: Settings, engine: Engine, capsys: pytest.CaptureFixture[str]
) -> None:
    app = create_app(json_logs)

    @app.get("/boom", tags=["test"])
    def boom() -> None:
        """Fails."""
        raise RuntimeError("kaput")

    with TestClient(app, raise_server_exceptions=False) as client:
        response = client.get("/boom", headers={"X-Request-ID": "boom-1"})
        metrics = client.get("/metrics").text
    assert response.status_code == 500
    assert response.headers["content-type"] == "application/problem+json"
    assert response.headers["X-Request-ID"] == "boom-1"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.json()["status"] == 500
    assert "kaput" not in response.text
    lines = _lines(capsys)
    assert {"event": "request", "status": 500, "route": "/boom"}.items() <= next(
        line for line in lines if line.get("event") == "request"
    ).items()
    assert any(line.get("request_id") == "boom-1" and line["level"] == "error" for line in lines)
    assert 'http_requests_total{method="GET",route="/boom",status="500"} 1.0' in metrics


def _sample(metrics: str, prefix: str) -> float:
    for line in metrics.splitlines():
        if line.startswith(prefix):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_metrics_count_requests_by_route_and_jobs_by_outcome(
    client: TestClient, engine: Engine, settings: Settings
) -> None:
    user = make_user(client)
    series = 'http_requests_total{method="GET",route="/v1/rejections",status="200"}'
    before = _sample(client.get("/metrics").text, series)
    for _ in range(3):
        client.get("/v1/rejections", headers=user.headers)
    client.get("/v1/rejections/01900000-0000-7000-8000-000000000000", headers=user.headers)
    client.get("/no/such/path")
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    metrics = response.text
    assert _sample(metrics, series) == before + 3
    assert _sample(
        metrics,
        'http_requests_total{method="GET",route="/v1/rejections/{rejection_id}",status="404"}',
    )
    assert _sample(metrics, 'http_requests_total{method="GET",route="unmatched",status="404"}')
    assert 'http_request_duration_seconds_bucket{le="0.1",method="GET",route="/v1/rejections"}' in (
        metrics
    )

    @task("test.metrics_probe")
    async def probe(job: Any, _ctx: WorkerContext) -> None:
        if job.payload.get("fail"):
            raise ValueError("probe failed")

    try:
        with open_session(engine) as session:
            enqueue(session, "test.metrics_probe", {})
            enqueue(session, "test.metrics_probe", {"fail": True})
            session.commit()
        queued = client.get("/metrics").text
        assert _sample(queued, 'rebound_jobs{kind="test.metrics_probe",status="pending"}') == 2
        done = 'rebound_jobs_total{kind="test.metrics_probe",outcome="done"}'
        retried = 'rebound_jobs_total{kind="test.metrics_probe",outcome="retry"}'
        done_before, retried_before = _sample(queued, done), _sample(queued, retried)
        asyncio.run(run_until_idle(WorkerContext(engine=engine, settings=settings, worker_id="t")))
        after = client.get("/metrics").text
        assert _sample(after, done) == done_before + 1
        assert _sample(after, retried) == retried_before + 1
    finally:
        TASKS.pop("test.metrics_probe", None)


def test_metrics_need_the_token_when_one_is_set(settings: Settings, engine: Engine) -> None:
    app = create_app(settings.model_copy(update={"metrics_token": "scrape-secret"}))
    with TestClient(app) as client:
        assert client.get("/metrics").status_code == 401
        wrong = client.get("/metrics", headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401
        assert wrong.headers["content-type"] == "application/problem+json"
        right = client.get("/metrics", headers={"Authorization": "Bearer scrape-secret"})
        assert right.status_code == 200 and "http_requests_total" in right.text


def _app_on(settings: Settings, url: str) -> FastAPI:
    return create_app(settings.model_copy(update={"database_url": url}))


def test_readiness_needs_the_database_at_the_migration_head(
    client: TestClient, settings: Settings, tmp_path: Path
) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    assert client.get("/readyz").json() == {"status": "ok"}
    # A database nobody migrated: alive, not ready.
    with TestClient(_app_on(settings, f"sqlite:///{tmp_path / 'empty.db'}")) as fresh:
        assert fresh.get("/healthz").status_code == 200
        response = fresh.get("/readyz")
        assert response.status_code == 503
        assert "rebound migrate" in response.json()["detail"]
        assert response.headers["retry-after"] == "5"
    # A database that does not answer.
    down = _app_on(settings, "postgresql+psycopg://nobody@127.0.0.1:1/none")
    with TestClient(down) as unreachable:
        assert unreachable.get("/healthz").status_code == 200
        response = unreachable.get("/readyz")
        assert response.status_code == 503
        assert response.headers["content-type"] == "application/problem+json"
        assert response.headers["retry-after"] == "5"
