"""Several workers at once never send one e-mail twice, a worker that dies in the middle
of a send loses nothing, and one worker keeps a second batch going while the mail server
takes its time over the first."""

from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter
from datetime import timedelta

from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from api.config import Settings
from api.db import make_engine, utcnow
from api.feedback import service
from api.models import Job
from api.models.feedback import FeedbackMessage
from api.worker.registry import WorkerContext
from api.worker.runner import LEASE, run_until_idle
from tests.factories import make_rejection, make_user
from tests.feedback.conftest import create_request, get_request, run_worker, timeline
from tests.plugins.smtp import SmtpTestServer

WORKERS = 3
REQUESTS = 8


def _run_workers_at_once(settings: Settings) -> None:
    """`WORKERS` workers, each on its own thread, engine and event loop, started together."""
    start = threading.Barrier(WORKERS)
    errors: list[BaseException] = []

    def work(number: int) -> None:
        engine = make_engine(settings)
        try:
            start.wait()
            context = WorkerContext(engine=engine, settings=settings, worker_id=f"w{number}")
            asyncio.run(run_until_idle(context))
        except BaseException as exc:
            errors.append(exc)
        finally:
            engine.dispose()

    threads = [threading.Thread(target=work, args=(n,)) for n in range(WORKERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not errors, errors


def test_concurrent_workers_send_each_message_once(
    client: TestClient, settings: Settings, smtp_server: SmtpTestServer
) -> None:
    users = [make_user(client) for _ in range(2)]
    created = []
    for index in range(REQUESTS):
        user = users[index % 2]
        rejection = make_rejection(user, contact_email=f"hr{index}@example.com")
        created.append(
            (
                user,
                create_request(user, rejection["id"], follow_up_interval="PT1S", max_follow_ups=1),
            )
        )

    # One job per claim, so the workers interleave instead of one taking the whole batch.
    settings = settings.model_copy(update={"worker_batch_size": 1})
    _run_workers_at_once(settings)
    assert len(smtp_server.messages) >= REQUESTS
    time.sleep(2.2)  # the follow-ups fall due
    _run_workers_at_once(settings)

    messages = smtp_server.messages
    assert len(messages) == 2 * REQUESTS
    assert len({str(message["Message-ID"]) for message in messages}) == 2 * REQUESTS
    per_recipient = Counter(message["To"].addresses[0].addr_spec for message in messages)
    assert set(per_recipient.values()) == {2}
    for user, request in created:
        body = get_request(user, request["id"])
        assert body["status"] in ("followed_up", "no_response")  # closing may be due too
        assert body["follow_ups_sent"] == 1


def test_a_worker_that_dies_mid_send_loses_nothing(
    engine: Engine, settings: Settings, smtp_server: SmtpTestServer, client: TestClient
) -> None:
    user = make_user(client)
    request = create_request(user)
    doomed = WorkerContext(engine=engine, settings=settings, worker_id="doomed")
    # It claimed the job, as claim_due_jobs does …
    with doomed.session() as session:
        job = session.exec(select(Job).where(Job.kind == service.SEND_TASK)).one()
        job.status, job.attempts = "running", 1
        job.locked_by, job.locked_until = doomed.worker_id, utcnow() + LEASE
        session.add(job)
    # … got as far as writing the message's log row, then died before sending.
    with doomed.session() as session:
        outgoing = service.prepare_message(
            session=session, settings=settings, request_id=request["id"], number=0
        )
    assert isinstance(outgoing, service.Outgoing)
    assert get_request(user, request["id"])["status"] == "scheduled"

    run_worker(engine, settings)  # the lease still holds: nobody else takes the job
    assert smtp_server.messages == []

    with Session(engine) as session:
        row = session.get(Job, job.id)
        assert row is not None
        row.locked_until = utcnow() - timedelta(seconds=1)  # the lease ran out
        session.add(row)
        session.commit()
    run_worker(engine, settings)
    (message,) = smtp_server.wait_for(1)
    assert get_request(user, request["id"])["status"] == "sent"
    with Session(engine) as session:
        logged = session.exec(select(FeedbackMessage)).one()
    # The same message (same Message-ID) as the one the dead worker had prepared.
    assert message["Message-ID"] == logged.message_id == outgoing.email["Message-ID"]
    assert logged.status == "sent"


def test_one_worker_has_a_second_batch_in_flight_while_the_first_is_sent(
    client: TestClient, engine: Engine, settings: Settings, smtp_server: SmtpTestServer
) -> None:
    user = make_user(client)
    requests = [
        create_request(user, make_rejection(user, contact_email=f"hr{n}@example.com")["id"])
        for n in range(2)
    ]
    # The server answers neither message until both are being sent at once; a worker that
    # waited for the first before claiming the second would have it refused (451).
    smtp_server.hold_data_until_together(2)
    run_worker(engine, settings.model_copy(update={"worker_batch_size": 1}))

    assert len(smtp_server.messages) == 2
    for request in requests:
        body = get_request(user, request["id"])
        assert body["status"] == "sent"
        assert "delivery_failed" not in [event["type"] for event in timeline(user, body["id"])]
