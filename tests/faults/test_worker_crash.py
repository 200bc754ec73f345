"""A worker killed with SIGKILL in the middle of sending loses no e-mail.

A batch of feedback e-mails is due; a real `rebound worker` child process sends them to
the `smtp_server` fixture, which answers each DATA slowly so that the kill lands while
messages are in flight. Another worker then runs after the dead worker's lease has run out:
every due e-mail arrives at least once, and the duplicates are no more than the jobs that
were in flight (leased) at the moment of the kill.

The lease is minutes long in production; the test does not wait for it: it moves
`jobs.locked_until` of the dead worker's jobs into the past in the database, which is
exactly the state the lease reaches when it expires.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import time
from collections import Counter
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text
from sqlalchemy.engine import Engine

from api.config import Settings
from api.worker.registry import WorkerContext
from api.worker.runner import run_until_idle
from tests.factories import make_rejection, make_user
from tests.faults.server import REBOUND, ROOT
from tests.plugins.smtp import SmtpTestServer, smtp_settings_for

pytestmark = pytest.mark.slow

MESSAGES = 12
SMTP_DELAY = 0.4  # seconds the SMTP server takes to accept each message


def slow_down(server: SmtpTestServer, seconds: float) -> None:
    recorder: Any = server._recorder
    original = recorder.handle_DATA

    async def slow_data(*args: Any) -> str:
        await asyncio.sleep(seconds)
        return str(await original(*args))

    recorder.handle_DATA = slow_data


def worker_process(database_url: str, smtp_url: str) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "REBOUND_DATABASE_URL": database_url,
        "REBOUND_EMAIL_BACKEND": "smtp",
        "REBOUND_SMTP_URL": smtp_url,
        "REBOUND_LOG_LEVEL": "WARNING",
    }
    return subprocess.Popen(
        [str(REBOUND), "worker"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def test_killed_worker_loses_no_email(
    client: TestClient,
    engine: Engine,
    settings: Settings,
    database_url: str,
    smtp_server: SmtpTestServer,
) -> None:
    user = make_user(client)
    recipients = [f"hiring{i}@acme.example" for i in range(MESSAGES)]
    for address in recipients:
        rejection = make_rejection(user, contact_email=address)
        created = client.post(
            f"/v1/rejections/{rejection['id']}/feedback-requests",
            json={"recipient_name": "Dana", "recipient_email": address},
            headers=user.headers,
        )
        assert created.status_code == 201, created.text
        sent = client.post(
            f"/v1/feedback-requests/{created.json()['id']}/send", headers=user.headers
        )
        assert sent.status_code == 200, sent.text

    slow_down(smtp_server, SMTP_DELAY)
    worker = worker_process(database_url, smtp_server.url)
    try:
        smtp_server.wait_for(1, timeout=90)
    finally:
        worker.send_signal(signal.SIGKILL)
        worker.wait(timeout=10)
    delivered_before_kill = len(smtp_server.messages)
    with engine.begin() as connection:
        in_flight = connection.execute(
            text("SELECT count(*) FROM jobs WHERE status = 'running'")
        ).scalar_one()
        # The lease runs out (see the module docstring).
        connection.execute(
            text("UPDATE jobs SET locked_until = :past WHERE status = 'running'"),
            {"past": "2000-01-01 00:00:00"},
        )
    assert delivered_before_kill < MESSAGES, "the kill came too late to prove anything"
    assert in_flight > 0, "nothing was in flight when the worker died"

    # A second worker picks everything up.
    time.sleep(SMTP_DELAY * 2)  # let the dead worker's last DATA answers land
    second = smtp_settings_for(settings, smtp_server)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        asyncio.run(run_until_idle(WorkerContext(engine=engine, settings=second, worker_id="w2")))
        got = {str(message["To"]).split("<")[-1].rstrip(">") for message in smtp_server.messages}
        if set(recipients) <= got:
            break
        time.sleep(0.5)

    received = Counter(
        str(message["To"]).split("<")[-1].rstrip(">") for message in smtp_server.messages
    )
    missing = [address for address in recipients if received[address] == 0]
    assert not missing, f"lost e-mails: {missing}"
    duplicates = sum(count - 1 for count in received.values())
    assert duplicates <= in_flight, (duplicates, in_flight)
    with engine.connect() as connection:
        statuses = dict(
            connection.execute(
                text("SELECT status, count(*) FROM feedback_requests GROUP BY status")
            ).all()
        )
    assert statuses.get("sent", 0) == MESSAGES, statuses
