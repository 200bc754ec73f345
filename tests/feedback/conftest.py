"""Feedback tests run against a real SMTP server on loopback, with a one-second minimum
follow-up interval so that follow-ups and closing can be watched in real time."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine

from api.config import Settings
from api.worker.registry import WorkerContext
from api.worker.runner import run_until_idle
from tests.factories import UserHandle, make_rejection, make_user
from tests.plugins.smtp import SmtpTestServer, smtp_settings_for


@pytest.fixture
def settings(settings: Settings, smtp_server: SmtpTestServer) -> Settings:
    """The test settings, e-mailing through `smtp_server`, minimum interval one second."""
    return smtp_settings_for(settings, smtp_server).model_copy(
        update={"min_follow_up_interval": timedelta(seconds=1)}
    )


def run_worker(engine: Engine, settings: Settings, worker_id: str = "t") -> int:
    """What `rebound worker --once` does: everything due now."""
    return asyncio.run(
        run_until_idle(WorkerContext(engine=engine, settings=settings, worker_id=worker_id))
    )


def drive(
    engine: Engine,
    settings: Settings,
    done: Callable[[], bool],
    *,
    timeout: float = 20.0,
) -> None:
    """Run the worker again and again (real time passing) until `done()`."""
    deadline = time.monotonic() + timeout
    while True:
        run_worker(engine, settings)
        if done():
            return
        if time.monotonic() > deadline:
            raise AssertionError("the worker did not get there in time")
        time.sleep(0.2)


def create_request(
    user: UserHandle, rejection_id: str | None = None, **fields: Any
) -> dict[str, Any]:
    if rejection_id is None:
        rejection_id = make_rejection(user)["id"]
    response = user.client.post(
        f"/v1/rejections/{rejection_id}/feedback-requests", json=fields, headers=user.headers
    )
    assert response.status_code == 201, response.text
    return dict(response.json())


def get_request(user: UserHandle, request_id: str) -> dict[str, Any]:
    response = user.client.get(f"/v1/feedback-requests/{request_id}", headers=user.headers)
    assert response.status_code == 200, response.text
    return dict(response.json())


def timeline(user: UserHandle, request_id: str) -> list[dict[str, Any]]:
    response = user.client.get(f"/v1/feedback-requests/{request_id}/events", headers=user.headers)
    assert response.status_code == 200, response.text
    return list(response.json()["items"])


def link_path(message: Any) -> str:
    """The /f/{token} path from the List-Unsubscribe header of a received message."""
    header = str(message["List-Unsubscribe"]).strip("<>")
    path = urlsplit(header).path
    assert path.endswith("/opt-out")
    return path.removesuffix("/opt-out")


def text_of(message: Any) -> str:
    return str(message.get_body(preferencelist=("plain",)).get_content())


@pytest.fixture
def user(client: TestClient) -> UserHandle:
    return make_user(client, display_name="Ada Lovelace", timezone="Europe/London")
