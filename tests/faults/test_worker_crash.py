"""A worker killed with SIGKILL in the middle of sending loses no e-mail and no webhook.

A batch of feedback e-mails is due; a real `rebound worker` child process sends them to
the `smtp_server` fixture, which answers each DATA slowly so that the kill lands while
messages are in flight. Another worker then runs after the dead worker's lease has run out:
every due e-mail arrives at least once, and the duplicates are no more than the jobs that
were in flight (leased) at the moment of the kill.

The lease is minutes long in production; the test does not wait for it: it moves
`jobs.locked_until` of the dead worker's jobs into the past in the database, which is
exactly the state the lease reaches when it expires.

The webhook variant does the same with deliveries due to a real receiver on loopback that
answers slowly: every delivery arrives at least once, the duplicates are bounded by the
jobs in flight, and a duplicate carries the same `webhook-id` as the first copy, so the
receiver can tell it apart.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Callable
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
from tests.webhooks.conftest import Receiver, grant, make_due, make_org, run_worker, subscribe

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


def worker_process(database_url: str, extra_env: dict[str, str]) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "REBOUND_DATABASE_URL": database_url,
        "REBOUND_LOG_LEVEL": "WARNING",
        **extra_env,
    }
    return subprocess.Popen(
        [str(REBOUND), "worker"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def expire_leases(engine: Engine) -> int:
    """The dead worker's leases run out (see the module docstring); how many it held."""
    with engine.begin() as connection:
        in_flight = connection.execute(
            text("SELECT count(*) FROM jobs WHERE status = 'running'")
        ).scalar_one()
        connection.execute(
            text("UPDATE jobs SET locked_until = :past WHERE status = 'running'"),
            {"past": "2000-01-01 00:00:00"},
        )
    return int(in_flight)


def kill_at_first_arrival(
    worker: subprocess.Popen[bytes], arrived: Callable[[], int], engine: Engine, due: int
) -> tuple[int, int]:
    """SIGKILL the worker as soon as its first message arrives, then let its leases run
    out; returns how many had arrived by then and how many jobs it held."""
    try:
        deadline = time.monotonic() + 90
        while not arrived() and time.monotonic() < deadline:
            if worker.poll() is not None:
                raise RuntimeError(worker.stderr.read().decode()[-2000:])  # type: ignore[union-attr]
            time.sleep(0.05)
    finally:
        worker.send_signal(signal.SIGKILL)
        worker.wait(timeout=10)
    arrived_before_kill = arrived()
    in_flight = expire_leases(engine)
    assert arrived_before_kill < due, "the kill came too late to prove anything"
    assert in_flight > 0, "nothing was in flight when the worker died"
    return arrived_before_kill, in_flight


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
    worker = worker_process(
        database_url, {"REBOUND_EMAIL_BACKEND": "smtp", "REBOUND_SMTP_URL": smtp_server.url}
    )
    delivered_before_kill, in_flight = kill_at_first_arrival(
        worker, lambda: len(smtp_server.messages), engine, MESSAGES
    )

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
    print(  # noqa: T201
        f"\ne-mails: {MESSAGES} due, {delivered_before_kill} delivered before the kill, "
        f"{in_flight} jobs in flight, {duplicates} duplicates"
    )
    assert duplicates <= in_flight, (duplicates, in_flight)
    with engine.connect() as connection:
        statuses = dict(
            connection.execute(
                text("SELECT status, count(*) FROM feedback_requests GROUP BY status")
            ).all()
        )
    assert statuses.get("sent", 0) == MESSAGES, statuses


WEBHOOKS = 24  # more than a worker runs at once (16): some wait their turn
RECEIVER_DELAY = 0.4  # seconds the receiver takes to answer each delivery


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """Webhooks may go to the receiver on loopback, as in tests/webhooks (the SSRF guard
    refuses private addresses everywhere else)."""
    return settings.model_copy(update={"webhook_allow_private_targets": True})


def test_killed_worker_loses_no_webhook(
    client: TestClient, engine: Engine, settings: Settings, database_url: str
) -> None:
    owner, user = make_user(client), make_user(client)
    org_id = make_org(client, owner)
    receiver = Receiver().start()
    try:
        subscribe(client, owner, org_id, receiver.url, "rejection.created")
        grant(client, user, org_id, "rejections:read")
        for n in range(WEBHOOKS):
            make_rejection(user, company=f"Company {n}")

        receiver.delay = RECEIVER_DELAY
        worker = worker_process(database_url, {"REBOUND_WEBHOOK_ALLOW_PRIVATE_TARGETS": "true"})
        received_before_kill, in_flight = kill_at_first_arrival(
            worker, lambda: len(receiver.received), engine, WEBHOOKS
        )

        # A second worker picks everything up.
        time.sleep(RECEIVER_DELAY * 2)  # let the dead worker's last requests land
        receiver.delay = 0
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            run_worker(engine, settings, worker_id="w2")
            with engine.connect() as connection:
                unfinished = connection.execute(
                    text("SELECT count(*) FROM webhook_deliveries WHERE status != 'succeeded'")
                ).scalar_one()
            if not unfinished:
                break
            # A try that failed (the receiver busy with the dead worker's connections)
            # waits seconds for its retry: bring it forward.
            make_due(engine)
            time.sleep(0.2)
        with engine.connect() as connection:
            due = set(connection.execute(text("SELECT id FROM webhook_deliveries")).scalars())
        received = list(receiver.received)
    finally:
        receiver.stop()

    assert len(due) == WEBHOOKS
    by_id = Counter(webhook.webhook_id for webhook in received)
    missing = due - set(by_id)
    assert not missing, f"lost webhooks: {missing}"
    assert set(by_id) == due, "nothing arrives that was not due"
    duplicates = sum(count - 1 for count in by_id.values())
    print(  # noqa: T201
        f"\nwebhooks: {WEBHOOKS} due, {received_before_kill} received before the kill, "
        f"{in_flight} jobs in flight, {len(received)} received in all, {duplicates} duplicates"
    )
    assert duplicates <= in_flight, (duplicates, in_flight)
    # A duplicate is the same delivery again: same webhook-id, same event, same body.
    bodies: dict[str, set[bytes]] = {}
    for webhook in received:
        bodies.setdefault(webhook.webhook_id, set()).add(webhook.body)
    assert all(len(copies) == 1 for copies in bodies.values())
    events = Counter(webhook.json["data"]["id"] for webhook in received)
    assert len(events) == WEBHOOKS
    with engine.connect() as connection:
        statuses = dict(
            connection.execute(
                text("SELECT status, count(*) FROM webhook_deliveries GROUP BY status")
            ).all()
        )
    assert statuses == {"succeeded": WEBHOOKS}, statuses
