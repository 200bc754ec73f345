"""compute_insights aggregates in the database: the same handful of statements and small
result sets whether the user has three rejections or thousands."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date, timedelta
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import event, insert
from sqlalchemy.engine import Engine
from sqlmodel import Session

from api.db import new_id, open_session
from api.insights.service import compute_insights
from api.models import Reflection, ReflectionStep, Rejection, User
from api.models.rejection import STAGE_ORDER, ReflectionSkill
from api.reflections.steps import STEP_ORDER
from tests.factories import make_user


def bulk_rejections(engine: Engine, user_id: str, count: int) -> None:
    """`count` rejections with reflections, steps and skills, inserted in bulk."""
    rejections: list[dict[str, Any]] = []
    reflections: list[dict[str, Any]] = []
    steps: list[dict[str, Any]] = []
    skills: list[dict[str, Any]] = []
    for n in range(count):
        rejection_id, reflection_id = new_id(), new_id()
        rejections.append(
            {
                "id": rejection_id,
                "user_id": user_id,
                "company": f"Company {n}",
                "role_title": "Engineer",
                "rejected_on": date(2020, 1, 1) + timedelta(days=n % 2000),
                "stage": STAGE_ORDER[n % len(STAGE_ORDER)].value,
                "tags": [],
            }
        )
        reflections.append(
            {
                "id": reflection_id,
                "user_id": user_id,
                "rejection_id": rejection_id,
                "emotion_intensity": 1 + n % 5,
                "confidence": 1 + (n * 3) % 5,
            }
        )
        for order, key in enumerate(STEP_ORDER, start=1):
            status = "done" if order <= n % 8 else "not_started"
            steps.append(
                {
                    "id": new_id(),
                    "user_id": user_id,
                    "reflection_id": reflection_id,
                    "key": key.value,
                    "order": order,
                    "status": status,
                    "content": {},
                }
            )
        for kind, skill in (("weakness", f"skill {n % 40}"), ("strength", f"skill {n % 7}")):
            skills.append(
                {
                    "id": new_id(),
                    "user_id": user_id,
                    "reflection_id": reflection_id,
                    "rejection_id": rejection_id,
                    "kind": kind,
                    "skill": skill,
                }
            )
    with open_session(engine) as session:
        session.execute(insert(Rejection), rejections)
        session.execute(insert(Reflection), reflections)
        session.execute(insert(ReflectionStep), steps)
        session.execute(insert(ReflectionSkill), skills)
        session.commit()


@contextmanager
def counted(engine: Engine) -> Iterator[dict[str, int]]:
    """How many statements run, and how many rows they return at most."""
    seen = {"statements": 0}

    def before(*_args: Any) -> None:
        seen["statements"] += 1

    event.listen(engine, "before_cursor_execute", before)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", before)


def insights_of(engine: Engine, user_id: str) -> tuple[int, float, Any]:
    with open_session(engine, write=False) as session, counted(engine) as seen:
        user = session.get(User, user_id)
        assert user is not None
        started = time.perf_counter()
        insights = compute_insights(session=session, user=user)
        elapsed = time.perf_counter() - started
    return seen["statements"], elapsed, insights


def test_a_large_account_costs_the_same_statements_as_a_small_one(
    client: TestClient, engine: Engine
) -> None:
    small, large = make_user(client), make_user(client)
    # 120 and 2000: both have every weakness in 3 or more rejections, so the same rules run.
    bulk_rejections(engine, small.id, 120)
    bulk_rejections(engine, large.id, 2000)

    small_statements, _, small_insights = insights_of(engine, small.id)
    large_statements, elapsed, insights = insights_of(engine, large.id)

    assert small_insights.totals.rejections == 120
    assert large_statements == small_statements
    assert insights.totals.rejections == 2000
    assert sum(insights.by_stage.values()) == 2000
    assert len(insights.top_weaknesses) == 10
    assert insights.top_weaknesses[0].count == 50  # 2000 / 40 skills
    # n % 8 == 7 completes all seven steps, but completed_at is only set by the feature;
    # here no reflection is marked completed.
    assert insights.totals.reflections_completed == 0
    # Generous: it takes a fraction of this on a laptop; the point is "not per row".
    assert elapsed < 5.0, elapsed


def test_compute_insights_is_callable_for_another_reader(client: TestClient, db: Session) -> None:
    """The organisations feature calls it with a session and a User row."""
    handle = make_user(client)
    user = db.get(User, handle.id)
    assert user is not None
    insights = compute_insights(session=db, user=user, date_from=date(2026, 1, 1))
    assert insights.totals.rejections == 0
    assert insights.reflection_completion_rate is None
