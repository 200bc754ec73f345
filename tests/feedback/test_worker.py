"""The spec's "Done when", end to end: the API, `rebound worker --once` runs, a real SMTP
server, the recipient's link, real seconds passing."""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
import threading
import time
from datetime import datetime, timedelta
from pathlib import Path

from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from api.config import Settings
from api.db import make_engine, utcnow
from api.models import Job
from api.models.feedback import FeedbackMessage, FeedbackRequest
from tests.factories import UserHandle, make_rejection, make_user
from tests.feedback.conftest import (
    create_request,
    drive,
    get_request,
    link_path,
    run_worker,
    text_of,
    timeline,
)
from tests.plugins.smtp import SmtpTestServer


def _to(server: SmtpTestServer, address: str) -> list:  # type: ignore[type-arg]
    return [
        m for m in server.messages if str(m["To"]).endswith(f"<{address}>") or m["To"] == address
    ]


def _wait_until(moment: str) -> None:
    delay = (datetime.fromisoformat(moment) - utcnow()).total_seconds()
    if delay > 0:
        time.sleep(delay + 0.05)


def test_sent_then_followed_up_in_thread_then_answered_through_the_link(
    client: TestClient,
    engine: Engine,
    settings: Settings,
    smtp_server: SmtpTestServer,
    user: UserHandle,
) -> None:
    created = create_request(
        user,
        send_at="2020-01-01T00:00:00Z",  # in the past: now
        follow_up_interval="PT2S",
        max_follow_ups=2,
    )
    assert created["status"] == "scheduled"

    run_worker(engine, settings)
    first = smtp_server.wait_for(1)[0]
    assert first["To"] == "Dana Recruiter <dana@acme.example>"
    assert first["From"] == settings.email_from
    assert first["Reply-To"] == f"Ada Lovelace <{user.email}>"
    assert first["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    path = link_path(first)
    assert f"{settings.base_url}{path}" in text_of(first)
    sent = get_request(user, created["id"])
    assert sent["status"] == "sent"
    assert sent["first_sent_at"] is not None
    assert sent["follow_up_due_at"] is not None

    run_worker(engine, settings)  # nothing is due yet
    assert len(smtp_server.messages) == 1

    _wait_until(sent["follow_up_due_at"])
    run_worker(engine, settings)
    second = smtp_server.wait_for(2)[1]
    assert second["In-Reply-To"] == first["Message-ID"]
    assert first["Message-ID"] in str(second["References"])
    assert second["Subject"] == f"Re: {first['Subject']}"
    assert second["Message-ID"] != first["Message-ID"]
    followed = get_request(user, created["id"])
    assert followed["status"] == "followed_up"
    assert followed["follow_ups_sent"] == 1
    # Due one interval after the follow-up actually went out.
    assert datetime.fromisoformat(followed["follow_up_due_at"]) == datetime.fromisoformat(
        followed["last_sent_at"]
    ) + timedelta(seconds=2)

    # The recipient answers through the link in the follow-up.
    answer = client.post(
        link_path(second),
        data={"outcome": "responded", "text": "Strong on SQL; the system design was thin."},
        follow_redirects=False,
    )
    assert answer.status_code == 303
    answered = get_request(user, created["id"])
    assert answered["status"] == "responded"
    assert answered["responded_at"] is not None
    assert answered["response"]["text"] == "Strong on SQL; the system design was thin."
    assert answered["follow_up_due_at"] is None

    time.sleep(2.2)
    run_worker(engine, settings)
    # Nothing more to the recipient; the user heard of the answer.
    assert len(_to(smtp_server, "dana@acme.example")) == 2
    notice = _to(smtp_server, user.email)
    assert len(notice) == 1
    assert "system design was thin" in text_of(notice[0])
    assert notice[0]["List-Unsubscribe"] is None

    assert [event["type"] for event in timeline(user, created["id"])] == [
        "scheduled",
        "sent",
        "follow_up_sent",
        "responded",
    ]


def test_an_unanswered_request_ends_no_response(
    engine: Engine,
    settings: Settings,
    smtp_server: SmtpTestServer,
    user: UserHandle,
) -> None:
    created = create_request(user, follow_up_interval="PT1S", max_follow_ups=2)
    drive(engine, settings, lambda: get_request(user, created["id"])["status"] == "no_response")
    final = get_request(user, created["id"])
    assert final["follow_ups_sent"] == 2
    assert final["closed_at"] is not None
    assert final["responded_at"] is None
    messages = smtp_server.messages
    assert len(messages) == 3
    assert messages[1]["In-Reply-To"] == messages[0]["Message-ID"]
    assert messages[2]["In-Reply-To"] == messages[0]["Message-ID"]
    # Each message has its own link.
    assert len({link_path(message) for message in messages}) == 3
    events = timeline(user, created["id"])
    assert [(e["type"], e["status"]) for e in events] == [
        ("scheduled", "scheduled"),
        ("sent", "sent"),
        ("follow_up_sent", "followed_up"),
        ("follow_up_sent", "followed_up"),
        ("no_response", "no_response"),
    ]
    times = [datetime.fromisoformat(e["at"]) for e in events[1:]]
    assert all(
        later - earlier >= timedelta(seconds=1) for earlier, later in itertools.pairwise(times)
    )


def test_no_follow_ups_closes_one_interval_after_the_first_message(
    engine: Engine, settings: Settings, smtp_server: SmtpTestServer, user: UserHandle
) -> None:
    created = create_request(user, follow_up_interval="PT1S", max_follow_ups=0)
    run_worker(engine, settings)
    assert get_request(user, created["id"])["closes_at"] is not None
    drive(engine, settings, lambda: get_request(user, created["id"])["status"] == "no_response")
    assert len(smtp_server.messages) == 1


def test_cancel_stops_the_follow_ups(
    client: TestClient,
    engine: Engine,
    settings: Settings,
    smtp_server: SmtpTestServer,
    user: UserHandle,
) -> None:
    created = create_request(user, follow_up_interval="PT1S", max_follow_ups=2)
    run_worker(engine, settings)
    smtp_server.wait_for(1)
    cancelled = client.post(f"/v1/feedback-requests/{created['id']}/cancel", headers=user.headers)
    assert cancelled.status_code == 200
    assert cancelled.json()["status"] == "cancelled"
    time.sleep(1.2)
    run_worker(engine, settings)
    assert len(smtp_server.messages) == 1
    assert timeline(user, created["id"])[-1]["type"] == "cancelled"


def test_opt_out_blocks_every_user(
    client: TestClient,
    engine: Engine,
    settings: Settings,
    smtp_server: SmtpTestServer,
    user: UserHandle,
) -> None:
    other = make_user(client)
    mine = create_request(user, follow_up_interval="PT1S")
    theirs = create_request(
        other,
        make_rejection(other, contact_email="DANA@Acme.Example")["id"],
        send_at=(utcnow() + timedelta(hours=1)).isoformat(),
    )
    draft = create_request(other, status="draft")
    run_worker(engine, settings)
    path = link_path(smtp_server.wait_for(1)[0])

    page = client.get(f"{path}/opt-out")
    assert page.status_code == 200
    assert "dana@acme.example" in page.text
    assert get_request(user, mine["id"])["status"] == "sent"  # GET changed nothing

    # What a mailbox provider sends for RFC 8058 one-click.
    done = client.post(
        f"{path}/opt-out",
        content="List-Unsubscribe=One-Click",
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    assert done.status_code == 200
    assert get_request(user, mine["id"])["status"] == "opted_out"
    assert get_request(other, theirs["id"])["status"] == "opted_out"
    assert get_request(other, draft["id"])["status"] == "opted_out"
    assert timeline(other, theirs["id"])[-1]["type"] == "opted_out"

    refused = client.post(
        f"/v1/rejections/{make_rejection(other)['id']}/feedback-requests",
        json={"recipient_email": "Dana@ACME.example"},
        headers=other.headers,
    )
    assert refused.status_code == 422
    assert "asked not to receive" in refused.json()["detail"]
    # A request the user sends by hand is still theirs to track.
    by_hand = client.post(
        f"/v1/rejections/{make_rejection(other)['id']}/feedback-requests",
        json={"recipient_email": "dana@acme.example", "channel": "linkedin"},
        headers=other.headers,
    )
    assert by_hand.status_code == 201

    time.sleep(1.2)
    run_worker(engine, settings)
    assert len(smtp_server.messages) == 1


def test_a_refused_recipient_bounces(
    engine: Engine, settings: Settings, smtp_server: SmtpTestServer, user: UserHandle
) -> None:
    smtp_server.refuse("dana@acme.example")
    created = create_request(user)
    run_worker(engine, settings)
    final = get_request(user, created["id"])
    assert final["status"] == "bounced"
    assert "550" in timeline(user, created["id"])[-1]["detail"]
    assert smtp_server.messages == []


def test_a_temporary_failure_is_retried(
    engine: Engine, db: Session, settings: Settings, smtp_server: SmtpTestServer, user: UserHandle
) -> None:
    smtp_server.refuse("dana@acme.example", code=450)
    created = create_request(user)
    run_worker(engine, settings)
    assert get_request(user, created["id"])["status"] == "scheduled"
    assert timeline(user, created["id"])[-1]["type"] == "delivery_failed"
    job = db.exec(select(Job).where(Job.dedupe_key == f"feedback:{created['id']}:message:0")).one()
    assert job.status == "pending"
    assert job.attempts == 1

    smtp_server.refuse("other@example.com", code=450)  # dana is accepted again
    del smtp_server._recorder.refusals["dana@acme.example"]
    with Session(engine) as session:
        row = session.get(Job, job.id)
        assert row is not None
        row.run_at = utcnow()
        session.add(row)
        session.commit()
    run_worker(engine, settings)
    assert get_request(user, created["id"])["status"] == "sent"
    assert len(smtp_server.messages) == 1


def test_caps_hold_messages_back_and_say_so(
    client: TestClient,
    engine: Engine,
    settings: Settings,
    smtp_server: SmtpTestServer,
    user: UserHandle,
) -> None:
    capped = settings.model_copy(
        update={"email_daily_cap_per_user": 1, "email_weekly_cap_per_recipient": 1}
    )
    first = create_request(user)
    second = create_request(user, recipient_email="lee@other.example")
    other = make_user(client)
    third = create_request(other, make_rejection(other, contact_email="dana@acme.example")["id"])
    run_worker(engine, capped)
    assert len(smtp_server.messages) == 1
    assert get_request(user, first["id"])["status"] == "sent"

    for handle, request, why in (
        (user, second, "1 e-mails a day"),
        (other, third, "1 e-mails a week to one address"),
    ):
        assert get_request(handle, request["id"])["status"] == "scheduled"
        last = timeline(handle, request["id"])[-1]
        assert last["type"] == "delayed"
        assert why in last["detail"]
    # Another run adds no second "delayed" line.
    run_worker(engine, capped)
    assert [e["type"] for e in timeline(user, second["id"])].count("delayed") == 1

    with Session(engine) as session:
        jobs = {
            job.payload["request_id"]: job
            for job in session.exec(select(Job).where(col(Job.kind) == "feedback.send_message"))
        }
        # The daily window frees a day after the first message, the weekly one a week after.
        assert jobs[second["id"]].run_at > utcnow() + timedelta(hours=23)
        assert jobs[third["id"]].run_at > utcnow() + timedelta(days=6, hours=23)
        # A day later (moved back in the log, rather than waited for):
        message = session.exec(select(FeedbackMessage)).one()
        message.created_at = utcnow() - timedelta(days=1, seconds=1)
        session.add(message)
        jobs[second["id"]].run_at = utcnow()
        jobs[third["id"]].run_at = utcnow()
        session.add_all(jobs.values())
        session.commit()
    run_worker(engine, capped)
    assert get_request(user, second["id"])["status"] == "sent"
    assert get_request(other, third["id"])["status"] == "scheduled"  # the weekly cap holds
    assert len(smtp_server.messages) == 2


def test_deleting_the_rejection_stops_the_request(
    client: TestClient,
    engine: Engine,
    settings: Settings,
    smtp_server: SmtpTestServer,
    user: UserHandle,
) -> None:
    rejection = make_rejection(user)
    created = create_request(user, rejection["id"], follow_up_interval="PT1S")
    run_worker(engine, settings)
    path = link_path(smtp_server.wait_for(1)[0])
    assert (
        client.delete(f"/v1/rejections/{rejection['id']}", headers=user.headers).status_code == 204
    )
    assert client.get(path).status_code == 410
    time.sleep(1.2)
    run_worker(engine, settings)
    assert len(smtp_server.messages) == 1
    with Session(engine) as session:
        request = session.get(FeedbackRequest, created["id"])
        assert request is not None
        assert request.status == "cancelled"


def test_rebound_worker_once_sends_it(
    database_url: str, settings: Settings, smtp_server: SmtpTestServer, user: UserHandle
) -> None:
    created = create_request(user)
    environment = {
        **os.environ,
        "REBOUND_DATABASE_URL": database_url,
        "REBOUND_EMAIL_BACKEND": "smtp",
        "REBOUND_SMTP_URL": smtp_server.url,
        "REBOUND_BASE_URL": settings.base_url,
        "REBOUND_MIN_FOLLOW_UP_INTERVAL": "PT1S",
        "REBOUND_LOG_LEVEL": "WARNING",
    }
    command = Path(sys.executable).with_name("rebound")
    finished = subprocess.run(
        [str(command), "worker", "--once"],
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert finished.returncode == 0, finished.stderr
    assert smtp_server.wait_for(1)[0]["To"] == "Dana Recruiter <dana@acme.example>"
    assert get_request(user, created["id"])["status"] == "sent"


def test_a_batch_of_one_users_messages_stops_at_the_daily_cap(
    client: TestClient,
    engine: Engine,
    settings: Settings,
    smtp_server: SmtpTestServer,
    user: UserHandle,
) -> None:
    # All four are claimed and prepared together; the cap still counts each message
    # as if the ones before it had been sent.
    capped = settings.model_copy(update={"email_daily_cap_per_user": 2})
    created = [
        create_request(user, make_rejection(user, contact_email=f"hr{n}@acme.example")["id"])
        for n in range(4)
    ]
    run_worker(engine, capped)
    assert len(smtp_server.wait_for(2)) == 2
    statuses = sorted(get_request(user, request["id"])["status"] for request in created)
    assert statuses == ["scheduled", "scheduled", "sent", "sent"]
    for request in created:
        if get_request(user, request["id"])["status"] == "scheduled":
            assert timeline(user, request["id"])[-1]["type"] == "delayed"


def test_a_broken_job_does_not_hold_back_the_others_claimed_with_it(
    engine: Engine, settings: Settings, smtp_server: SmtpTestServer, user: UserHandle
) -> None:
    created = [
        create_request(user, make_rejection(user, contact_email=f"hr{n}@acme.example")["id"])
        for n in range(3)
    ]
    broken_key = f"feedback:{created[1]['id']}:message:0"
    with Session(engine) as session:
        job = session.exec(select(Job).where(Job.dedupe_key == broken_key)).one()
        job.payload = {"request_id": created[1]["id"], "number": "not a number"}
        session.add(job)
        session.commit()

    run_worker(engine, settings)
    assert len(smtp_server.wait_for(2)) == 2
    assert [get_request(user, request["id"])["status"] for request in created] == [
        "sent",
        "scheduled",
        "sent",
    ]
    with Session(engine) as session:
        job = session.exec(select(Job).where(Job.dedupe_key == broken_key)).one()
        assert job.status == "pending"
        assert job.attempts == 1
        assert job.last_error is not None and "ValueError" in job.last_error


def test_workers_claiming_batches_at_once_send_each_message_once(
    client: TestClient, settings: Settings, smtp_server: SmtpTestServer
) -> None:
    users = [make_user(client) for _ in range(3)]
    for index in range(24):
        owner = users[index % 3]
        create_request(owner, make_rejection(owner, contact_email=f"hr{index}@acme.example")["id"])
    # Batches of a few jobs, so the three workers' batches (and their locks) interleave.
    small = settings.model_copy(update={"worker_batch_size": 4})
    start = threading.Barrier(3)
    errors: list[BaseException] = []

    def work(number: int) -> None:
        engine = make_engine(small)
        try:
            start.wait()
            run_worker(engine, small, worker_id=f"w{number}")
        except BaseException as exc:
            errors.append(exc)
        finally:
            engine.dispose()

    threads = [threading.Thread(target=work, args=(n,)) for n in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not errors, errors

    messages = smtp_server.wait_for(24)
    assert len(messages) == 24
    assert len({str(message["To"]) for message in messages}) == 24
    assert len({str(message["Message-ID"]) for message in messages}) == 24
