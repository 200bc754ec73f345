"""The cached insights are never stale: every kind of change to an input changes the answer.

Each test asks once (which fills the cache), changes one input through the API the way a
user would, and asks again in the same process.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from fastapi.testclient import TestClient
from sqlalchemy import event

from api.insights.cache import InsightsCache
from tests.action_plans.test_router import make_item, make_plan
from tests.factories import UserHandle, make_rejection, make_user


def insights(user: UserHandle, **params: str) -> dict[str, Any]:
    response = user.client.get("/v1/insights", params=params, headers=user.headers)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/json"
    return dict(response.json())


def weakness_suggestions(body: dict[str, Any]) -> list[Any]:
    return [s["data"] for s in body["suggestions"] if s["kind"] == "unaddressed_weakness"]


def write_step(user: UserHandle, rejection_id: str, key: str, content: dict[str, Any]) -> None:
    response = user.client.put(
        f"/v1/rejections/{rejection_id}/reflection/steps/{key}",
        json={"status": "done", "content": content},
        headers=user.headers,
    )
    assert response.status_code == 200, response.text


@contextmanager
def statements(client: TestClient) -> Iterator[list[str]]:
    """The SQL the application runs meanwhile."""
    seen: list[str] = []

    def before(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        seen.append(statement)

    engine = client.app.state.engine  # type: ignore[attr-defined]
    event.listen(engine, "before_cursor_execute", before)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", before)


def test_a_repeated_request_is_answered_from_the_cache(client: TestClient) -> None:
    user = make_user(client)
    make_rejection(user, stage="onsite")
    first = insights(user)
    with statements(client) as seen:
        again = insights(user)
    assert again == first
    # Only the request's own reads (the user row, and whatever authentication needs);
    # none of the insights' aggregates.
    assert not [sql for sql in seen if "count(" in sql.lower()], seen
    # Another range is another answer.
    assert insights(user, **{"from": "2099-01-01"})["totals"]["rejections"] == 0
    assert insights(user)["totals"]["rejections"] == 1


def test_rejection_create_update_and_delete(client: TestClient) -> None:
    user = make_user(client)
    first = make_rejection(user, stage="onsite", rejected_on="2026-10-01")
    assert insights(user)["totals"]["rejections"] == 1

    second = make_rejection(user, stage="phone", rejected_on="2026-10-02")
    body = insights(user)
    assert body["totals"]["rejections"] == 2
    assert (body["by_stage"]["onsite"], body["by_stage"]["phone"]) == (1, 1)

    response = client.patch(
        f"/v1/rejections/{second['id']}", json={"stage": "final"}, headers=user.headers
    )
    assert response.status_code == 200, response.text
    body = insights(user)
    assert (body["by_stage"]["phone"], body["by_stage"]["final"]) == (0, 1)

    response = client.delete(f"/v1/rejections/{first['id']}", headers=user.headers)
    assert response.status_code == 204
    body = insights(user)
    assert body["totals"]["rejections"] == 1
    assert body["by_stage"]["onsite"] == 0


def test_reflection_steps(client: TestClient) -> None:
    user = make_user(client)
    rejection = make_rejection(user, rejected_on="2026-11-02")
    assert insights(user)["mood"] == []

    write_step(user, rejection["id"], "emotions", {"emotions": ["sad"], "intensity": 4})
    assert insights(user)["mood"] == [{"date": "2026-11-02", "intensity": 4.0, "confidence": None}]

    # Skills live in rows of their own; writing them is still a change of the reflection.
    write_step(
        user,
        rejection["id"],
        "strengths_weaknesses",
        {"strengths": [{"skill": "Python"}], "weaknesses": [{"skill": "SQL"}]},
    )
    body = insights(user)
    assert body["top_weaknesses"] == [{"skill": "sql", "count": 1}]
    assert body["top_strengths"] == [{"skill": "python", "count": 1}]


def test_feedback_request_and_its_answer(client: TestClient) -> None:
    user = make_user(client)
    rejection = make_rejection(user)
    assert insights(user)["totals"]["feedback_requests"] == 0

    created = client.post(
        f"/v1/rejections/{rejection['id']}/feedback-requests",
        json={"channel": "phone", "recipient_name": "Dana"},
        headers=user.headers,
    )
    assert created.status_code == 201, created.text
    assert insights(user)["totals"]["feedback_requests"] == 1

    url = f"/v1/feedback-requests/{created.json()['id']}"
    assert client.post(f"{url}/send", headers=user.headers).status_code == 200
    assert insights(user)["feedback"]["sent"] == 1

    answered = client.post(f"{url}/responses", json={"outcome": "declined"}, headers=user.headers)
    assert answered.status_code == 201, answered.text
    feedback = insights(user)["feedback"]
    assert (feedback["declined"], feedback["response_rate"]) == (1, 1.0)


def test_action_items_and_plans(client: TestClient) -> None:
    user = make_user(client)
    for _ in range(3):
        rejection = make_rejection(user)
        write_step(
            user, rejection["id"], "strengths_weaknesses", {"weaknesses": [{"skill": "SQL"}]}
        )
    sql = [{"skill": "sql", "rejections": 3}]
    assert weakness_suggestions(insights(user)) == sql

    # A plan for the skill, with an open item: the weakness is being worked on.
    plan = make_plan(user, title="SQL", skills=["SQL"])
    item = make_item(user, plan["id"], title="Window functions")
    body = insights(user)
    assert weakness_suggestions(body) == []
    assert body["actions"]["total"] == 1

    response = client.patch(
        f"/v1/action-items/{item['id']}", json={"status": "done"}, headers=user.headers
    )
    assert response.status_code == 200, response.text
    body = insights(user)
    assert (body["actions"]["done"], body["actions"]["completion_rate"]) == (1, 1.0)
    assert weakness_suggestions(body) == sql

    # The plan stops listing the skill; a new open item covers nothing then.
    make_item(user, plan["id"], title="Indexes")
    assert weakness_suggestions(insights(user)) == []
    response = client.patch(
        f"/v1/action-plans/{plan['id']}", json={"skills": []}, headers=user.headers
    )
    assert response.status_code == 200, response.text
    assert weakness_suggestions(insights(user)) == sql


def test_the_users_date_is_part_of_the_answer(client: TestClient) -> None:
    """`overdue` counts items due before the user's today: a new zone can change it."""
    # Pago Pago (UTC-11) and Kiritimati (UTC+14) are 25 hours apart, so Kiritimati's date
    # is always past Pago Pago's.
    user = make_user(client, timezone="Pacific/Pago_Pago")
    plan = make_plan(user)
    due = datetime.now(ZoneInfo("Pacific/Pago_Pago")).date()
    make_item(user, plan["id"], due_on=due.isoformat())
    assert insights(user)["actions"]["overdue"] == 0

    response = client.patch("/v1/me", json={"timezone": "Pacific/Kiritimati"}, headers=user.headers)
    assert response.status_code == 200, response.text
    assert insights(user)["actions"]["overdue"] == 1


def test_the_cache_keeps_to_its_size_and_serves_only_its_version() -> None:
    cache = InsightsCache(max_bytes=10)
    today = datetime(2026, 11, 25).date()
    cache.put(("a", None, None), (1, today), b"aaaa")
    cache.put(("b", None, None), (1, today), b"bbbb")
    assert cache.get(("a", None, None), (1, today)) == b"aaaa"  # now the most recent
    assert cache.get(("a", None, None), (2, today)) is None  # another change counter
    assert cache.get(("a", None, None), (1, today + timedelta(days=1))) is None  # next day
    cache.put(("c", None, None), (1, today), b"cccc")  # 12 bytes: b goes, a stays
    assert cache.get(("b", None, None), (1, today)) is None
    assert cache.get(("a", None, None), (1, today)) == b"aaaa"
    assert len(cache) == 2
    # A slower request that read an older counter does not replace a newer answer.
    cache.put(("a", None, None), (3, today), b"new")
    cache.put(("a", None, None), (2, today), b"old")
    assert cache.get(("a", None, None), (3, today)) == b"new"


def test_requests_that_miss_together_share_one_computation() -> None:
    cache = InsightsCache()
    slot, version = ("a", None, None), (1, datetime(2026, 11, 25).date())
    computed: list[str] = []

    async def scenario() -> list[bytes]:
        release = asyncio.Event()

        async def compute() -> bytes:
            computed.append("once")
            await release.wait()  # still computing while the others arrive
            return b"answer"

        requests = [
            asyncio.create_task(cache.compute_once(slot, version, compute)) for _ in range(3)
        ]
        await asyncio.sleep(0.01)
        release.set()
        return await asyncio.gather(*requests)

    assert asyncio.run(scenario()) == [b"answer"] * 3
    assert computed == ["once"]
    assert cache.get(slot, version) == b"answer"


def test_a_failed_computation_fails_its_waiters_and_a_cancelled_one_hands_over() -> None:
    cache = InsightsCache()
    slot, version = ("a", None, None), (1, datetime(2026, 11, 25).date())

    async def failing() -> list[BaseException | bytes]:
        release = asyncio.Event()

        async def compute() -> bytes:
            await release.wait()
            raise RuntimeError("the database went away")

        requests = [
            asyncio.create_task(cache.compute_once(slot, version, compute)) for _ in range(2)
        ]
        await asyncio.sleep(0.01)
        release.set()
        return await asyncio.gather(*requests, return_exceptions=True)

    outcomes = asyncio.run(failing())
    assert [str(outcome) for outcome in outcomes] == ["the database went away"] * 2
    assert cache.get(slot, version) is None

    async def handed_over() -> bytes:
        never = asyncio.Event()

        async def stuck() -> bytes:
            await never.wait()
            return b"never"

        async def quick() -> bytes:
            return b"from the waiter"

        leader = asyncio.create_task(cache.compute_once(slot, version, stuck))
        await asyncio.sleep(0.01)
        waiter = asyncio.create_task(cache.compute_once(slot, version, quick))
        await asyncio.sleep(0.01)
        leader.cancel()  # the computing request went away
        return await waiter

    assert asyncio.run(handed_over()) == b"from the waiter"
    assert cache.get(slot, version) == b"from the waiter"
