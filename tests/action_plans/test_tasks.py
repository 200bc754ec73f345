from __future__ import annotations

import asyncio
import threading
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from api.action_plans.tasks import due_digests, reminder_key, schedule_reminders
from api.config import Settings
from api.models import Job
from api.worker.registry import WorkerContext
from api.worker.runner import run_until_idle
from tests.action_plans.test_router import make_item, make_plan
from tests.factories import UserHandle, make_user
from tests.plugins.smtp import SmtpTestServer

ZONE = "Pacific/Auckland"


def local_today(zone: str = ZONE) -> date:
    return datetime.now(ZoneInfo(zone)).date()


def run_worker(engine: Engine, settings: Settings, worker_id: str = "t") -> None:
    asyncio.run(
        run_until_idle(WorkerContext(engine=engine, settings=settings, worker_id=worker_id))
    )


def opted_in_user(client: TestClient, **fields: object) -> UserHandle:
    user = make_user(client, timezone=ZONE)
    response = client.patch(
        "/v1/me",
        json={"reminders_enabled": True, "reminder_hour": 0, **fields},
        headers=user.headers,
    )
    assert response.status_code == 200, response.text
    assert response.json()["reminder_hour"] == fields.get("reminder_hour", 0)
    return user


def test_the_digest_lists_overdue_and_soon_due_open_items_once_a_day(
    client: TestClient, engine: Engine, smtp_settings: Settings, smtp_server: SmtpTestServer
) -> None:
    user = opted_in_user(client)
    today = local_today()
    plan = make_plan(user, title="Interview practice")

    def on(days: int) -> str:
        return (today + timedelta(days=days)).isoformat()

    make_item(user, plan["id"], title="Overdue mock interview", due_on=on(-2))
    make_item(user, plan["id"], title="Due today", due_on=on(0), status="doing")
    make_item(user, plan["id"], title="In three days", due_on=on(3))
    make_item(user, plan["id"], title="In four days", due_on=on(4))
    make_item(user, plan["id"], title="Done yesterday", due_on=on(-1), status="done")
    make_item(user, plan["id"], title="Dropped", due_on=on(1), status="dropped")
    make_item(user, plan["id"], title="Undated")

    run_worker(engine, smtp_settings)
    (message,) = smtp_server.wait_for(1)
    assert message["To"] == user.email
    text = message.get_body(preferencelist=("plain",)).get_content()
    html = message.get_body(preferencelist=("html",)).get_content()
    for shown in ("Overdue mock interview", "Due today", "In three days"):
        assert shown in text and shown in html
    for hidden in ("In four days", "Done yesterday", "Dropped", "Undated"):
        assert hidden not in text and hidden not in html
    assert "2 days ago" in text
    assert str(message["Subject"]) == "1 overdue, 2 coming up in your Rebound plans"

    # Another round, or another worker, the same day: nothing more.
    run_worker(engine, smtp_settings, worker_id="second")
    run_worker(engine, smtp_settings)
    assert len(smtp_server.messages) == 1


def test_no_digest_without_items_due_or_without_opting_in(
    client: TestClient, engine: Engine, smtp_settings: Settings, smtp_server: SmtpTestServer
) -> None:
    nothing_due = opted_in_user(client)
    far = (local_today() + timedelta(days=10)).isoformat()
    make_item(nothing_due, make_plan(nothing_due)["id"], due_on=far)
    not_opted_in = make_user(client, timezone=ZONE)
    soon = local_today().isoformat()
    make_item(not_opted_in, make_plan(not_opted_in)["id"], due_on=soon)
    run_worker(engine, smtp_settings)
    assert smtp_server.messages == []


def test_reminders_wait_for_the_users_reminder_hour() -> None:
    now = datetime(2026, 11, 25, 18, 30, tzinfo=UTC)  # 07:30 on the 26th in Auckland
    rows = [
        ("early", "Pacific/Auckland", 7),  # 07:30 >= 07:00: due, for the 26th
        ("late", "Pacific/Auckland", 8),  # not yet
        ("london", "Europe/London", 8),  # 18:30 on the 25th: due, for the 25th
        ("midnight", "America/Los_Angeles", 23),  # 10:30: not yet
    ]
    assert due_digests(rows, now) == {
        "reminder:early:2026-11-26": ("early", date(2026, 11, 26)),
        "reminder:london:2026-11-25": ("london", date(2026, 11, 25)),
    }


def test_concurrent_workers_enqueue_one_digest_per_user_and_day(
    client: TestClient, engine: Engine, settings: Settings, db: Session
) -> None:
    users = [opted_in_user(client) for _ in range(3)]
    errors: list[BaseException] = []
    start = threading.Barrier(4)

    def worker(n: int) -> None:
        try:
            start.wait()
            ctx = WorkerContext(engine=engine, settings=settings, worker_id=f"w{n}")
            asyncio.run(schedule_reminders(ctx))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    keys = db.exec(select(Job.dedupe_key).where(col(Job.kind) == "action_plans.reminder_digest"))
    assert sorted(keys) == sorted(reminder_key(user.id, local_today()) for user in users)
