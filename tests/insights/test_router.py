"""Insights against a small data set worked out by hand.

The data set (user in America/New_York; `*` marks what must be left out):

    rejection  rejected_on  stage      reason           decided_by  reflection
    R1         2026-09-05   applied    no_reason_given  employer    completed, intensity 4, confidence 2
    R2         2026-09-20   screen     skills_gap       employer    completed, intensity 5, confidence 3
    R3         2026-10-02   technical  skills_gap       employer    steps 1-2 done, 3 not started; intensity 3
    R4         2026-10-15   onsite     other_candidate  employer    1 done, 2 skipped, 3 in progress; intensity 2
    R5         2026-10-15   onsite     culture_fit      unknown     1-2 done, 3 not started; intensity 3, confidence 5
    R6         2026-11-03   final      other_candidate  employer    completed, intensity 1, confidence 4
    R7         2026-11-10   phone      withdrew         candidate   not started
   *R8         2026-11-12   onsite     skills_gap       employer    completed, intensity 5, confidence 5 (deleted)

    skills     weakness: sql (R2 R3 R4 *R8), system design (R3 R4 R6), negotiation (R6),
                         communication (R5)
               strength: python (R1 R2 R3), teamwork (R4 R5), communication (R6), *go (R8)

    feedback   F1 R2 responded  sent 09-21 09:00, answered 09-23 09:00  (2.0 days)
               F2 R3 declined   sent 10-03 09:00, answered 10-08 21:00  (5.5 days)
               F3 R4 no_response sent 10-16
               F4 R6 responded  sent 11-04 09:00, answered 11-05 21:00  (1.5 days)
               F5 R6 followed_up sent 11-20
               F6 R5 draft, F7 R5 cancelled (never sent)
              *F8 R8 responded (deleted rejection), *F9 R1 responded (request deleted)

    actions    plan "SQL" [sql]: A1 todo due 2026-01-10 (overdue), A2 doing due 2099-01-01, A3 done
               plan "System design" [system design]: B1 done due 2026-01-05, B2 dropped due 2026-01-05
               plan "Wellbeing": C1 todo undated, C2 doing due 2026-02-01 (overdue), *C3 deleted
              *plan "Old" [system design] (deleted) with D1 todo due 2026-01-01
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import update
from sqlalchemy.engine import Engine
from sqlmodel import col, select

from api.db import open_session
from api.models import Reflection, ReflectionStep
from api.models.feedback import FeedbackRequest
from api.models.rejection import ReflectionSkill
from tests.action_plans.test_router import make_item, make_plan
from tests.factories import UserHandle, make_rejection, make_user


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def set_reflection(
    engine: Engine,
    rejection_id: str,
    *,
    steps: dict[int, str] | None = None,
    completed: bool = False,
    intensity: int | None = None,
    confidence: int | None = None,
) -> None:
    """Arrange a reflection as the reflections feature would have left it."""
    with open_session(engine) as session:
        reflection_id = session.execute(
            update(Reflection)
            .where(col(Reflection.rejection_id) == rejection_id)
            .values(
                completed_at=at("2026-11-20T12:00:00") if completed else None,
                emotion_intensity=intensity,
                confidence=confidence,
            )
            .returning(col(Reflection.id))
        ).scalar_one()
        statuses = dict.fromkeys(range(1, 8), "done") if completed else (steps or {})
        for order, status in statuses.items():
            session.execute(
                update(ReflectionStep)
                .where(
                    col(ReflectionStep.reflection_id) == reflection_id,
                    col(ReflectionStep.order) == order,
                )
                .values(status=status)
            )
        session.commit()


def add_skills(
    engine: Engine, user: UserHandle, kind: str, skill: str, *rejection_ids: str
) -> None:
    with open_session(engine) as session:
        for rejection_id in rejection_ids:
            reflection = session.exec(
                select(Reflection).where(col(Reflection.rejection_id) == rejection_id)
            ).one()
            session.add(
                ReflectionSkill(
                    user_id=user.id,
                    reflection_id=reflection.id,
                    rejection_id=rejection_id,
                    kind=kind,
                    skill=skill,
                )
            )
        session.commit()


def add_feedback(
    engine: Engine,
    user: UserHandle,
    rejection_id: str,
    status: str,
    sent: str | None = None,
    answered: str | None = None,
    *,
    deleted: bool = False,
) -> None:
    with open_session(engine) as session:
        session.add(
            FeedbackRequest(
                user_id=user.id,
                rejection_id=rejection_id,
                recipient_email="hr@example.com",
                subject="Feedback?",
                body="Could you tell me why?",
                status=status,
                first_sent_at=at(sent) if sent else None,
                last_sent_at=at(sent) if sent else None,
                responded_at=at(answered) if answered else None,
                deleted_at=at("2026-11-21T00:00:00") if deleted else None,
            )
        )
        session.commit()


def build_data_set(client: TestClient, engine: Engine) -> UserHandle:
    user = make_user(client, timezone="America/New_York")

    def rejection(on: str, stage: str, reason: str, decided_by: str) -> str:
        made = make_rejection(
            user,
            rejected_on=on,
            applied_on=None,
            stage=stage,
            reason_code=reason,
            decided_by=decided_by,
        )
        return str(made["id"])

    r1 = rejection("2026-09-05", "applied", "no_reason_given", "employer")
    r2 = rejection("2026-09-20", "screen", "skills_gap", "employer")
    r3 = rejection("2026-10-02", "technical", "skills_gap", "employer")
    r4 = rejection("2026-10-15", "onsite", "other_candidate", "employer")
    r5 = rejection("2026-10-15", "onsite", "culture_fit", "unknown")
    r6 = rejection("2026-11-03", "final", "other_candidate", "employer")
    rejection("2026-11-10", "phone", "withdrew", "candidate")
    r8 = rejection("2026-11-12", "onsite", "skills_gap", "employer")

    set_reflection(engine, r1, completed=True, intensity=4, confidence=2)
    set_reflection(engine, r2, completed=True, intensity=5, confidence=3)
    set_reflection(engine, r3, steps={1: "done", 2: "done"}, intensity=3)
    set_reflection(engine, r4, steps={1: "done", 2: "skipped", 3: "in_progress"}, intensity=2)
    set_reflection(engine, r5, steps={1: "done", 2: "done"}, intensity=3, confidence=5)
    set_reflection(engine, r6, completed=True, intensity=1, confidence=4)
    set_reflection(engine, r8, completed=True, intensity=5, confidence=5)

    add_skills(engine, user, "weakness", "sql", r2, r3, r4, r8)
    add_skills(engine, user, "weakness", "system design", r3, r4, r6)
    add_skills(engine, user, "weakness", "negotiation", r6)
    add_skills(engine, user, "weakness", "communication", r5)
    add_skills(engine, user, "strength", "python", r1, r2, r3)
    add_skills(engine, user, "strength", "teamwork", r4, r5)
    add_skills(engine, user, "strength", "communication", r6)
    add_skills(engine, user, "strength", "go", r8)

    add_feedback(engine, user, r2, "responded", "2026-09-21T09:00:00", "2026-09-23T09:00:00")
    add_feedback(engine, user, r3, "declined", "2026-10-03T09:00:00", "2026-10-08T21:00:00")
    add_feedback(engine, user, r4, "no_response", "2026-10-16T09:00:00")
    add_feedback(engine, user, r6, "responded", "2026-11-04T09:00:00", "2026-11-05T21:00:00")
    add_feedback(engine, user, r6, "followed_up", "2026-11-20T09:00:00")
    add_feedback(engine, user, r5, "draft")
    add_feedback(engine, user, r5, "cancelled")
    add_feedback(engine, user, r8, "responded", "2026-11-13T09:00:00", "2026-11-14T09:00:00")
    add_feedback(
        engine, user, r1, "responded", "2026-09-06T09:00:00", "2026-09-07T09:00:00", deleted=True
    )

    sql = make_plan(user, title="SQL", skills=["SQL"], rejection_ids=[r2, r3])["id"]
    make_item(user, sql, title="A1", due_on="2026-01-10")
    make_item(user, sql, title="A2", due_on="2099-01-01", status="doing")
    make_item(user, sql, title="A3", status="done")
    design = make_plan(user, title="System design", skills=["System Design"])["id"]
    make_item(user, design, title="B1", due_on="2026-01-05", status="done")
    make_item(user, design, title="B2", due_on="2026-01-05", status="dropped")
    wellbeing = make_plan(user, title="Wellbeing")["id"]
    make_item(user, wellbeing, title="C1")
    make_item(user, wellbeing, title="C2", due_on="2026-02-01", status="doing")
    c3 = make_item(user, wellbeing, title="C3", due_on="2026-01-01")
    assert client.delete(f"/v1/action-items/{c3['id']}", headers=user.headers).status_code == 204
    old = make_plan(user, title="Old", skills=["system design"])["id"]
    make_item(user, old, title="D1", due_on="2026-01-01")
    assert client.delete(f"/v1/action-plans/{old}", headers=user.headers).status_code == 204

    assert client.delete(f"/v1/rejections/{r8}", headers=user.headers).status_code == 204
    return user


ALL_STAGES_ZERO = dict.fromkeys(("applied", "screen", "phone", "technical", "onsite", "final"), 0)
ALL_REASONS_ZERO = dict.fromkeys(
    (
        "skills_gap",
        "other_candidate",
        "culture_fit",
        "compensation",
        "role_closed",
        "logistics",
        "withdrew",
        "no_reason_given",
        "other",
    ),
    0,
)


def suggestion_kinds_and_data(body: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    for suggestion in body["suggestions"]:
        assert set(suggestion) == {"kind", "message", "data"}
        assert suggestion["message"]
    return [(s["kind"], s["data"]) for s in body["suggestions"]]


def test_every_figure_of_the_hand_worked_data_set(client: TestClient, engine: Engine) -> None:
    user = build_data_set(client, engine)
    response = client.get("/v1/insights", headers=user.headers)
    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == {
        "totals",
        "by_month",
        "by_stage",
        "by_reason",
        "by_decided_by",
        "funnel",
        "top_weaknesses",
        "top_strengths",
        "feedback",
        "mood",
        "reflection_completion_rate",
        "actions",
        "suggestions",
    }
    assert body["totals"] == {
        "rejections": 7,
        "reflections_completed": 3,
        "feedback_requests": 7,
        "action_items": 7,
    }
    assert body["by_month"] == [
        {"month": "2026-09", "count": 2},
        {"month": "2026-10", "count": 3},
        {"month": "2026-11", "count": 2},
    ]
    assert body["by_stage"] == {
        "applied": 1,
        "screen": 1,
        "phone": 1,
        "technical": 1,
        "onsite": 2,
        "final": 1,
        "offer": 0,
    }
    assert body["by_reason"] == {
        **ALL_REASONS_ZERO,
        "no_reason_given": 1,
        "skills_gap": 2,
        "other_candidate": 2,
        "culture_fit": 1,
        "withdrew": 1,
    }
    assert body["by_decided_by"] == {"employer": 5, "candidate": 1, "unknown": 1}
    assert body["funnel"] == [
        {"stage": "applied", "reached": 7},
        {"stage": "screen", "reached": 6},
        {"stage": "phone", "reached": 5},
        {"stage": "technical", "reached": 4},
        {"stage": "onsite", "reached": 3},
        {"stage": "final", "reached": 1},
        {"stage": "offer", "reached": 0},
    ]
    assert body["top_weaknesses"] == [
        {"skill": "sql", "count": 3},
        {"skill": "system design", "count": 3},
        {"skill": "communication", "count": 1},
        {"skill": "negotiation", "count": 1},
    ]
    assert body["top_strengths"] == [
        {"skill": "python", "count": 3},
        {"skill": "teamwork", "count": 2},
        {"skill": "communication", "count": 1},
    ]
    assert body["feedback"] == {
        "sent": 5,
        "responded": 2,
        "declined": 1,
        "no_response": 1,
        "response_rate": 0.6,  # (2 + 1) / 5
        "median_days_to_response": 2.0,  # of 1.5, 2.0, 5.5
    }
    assert body["mood"] == [
        {"date": "2026-09-05", "intensity": 4.0, "confidence": 2.0},
        {"date": "2026-09-20", "intensity": 5.0, "confidence": 3.0},
        {"date": "2026-10-02", "intensity": 3.0, "confidence": None},
        {"date": "2026-10-15", "intensity": 2.5, "confidence": 5.0},
        {"date": "2026-11-03", "intensity": 1.0, "confidence": 4.0},
    ]
    assert body["reflection_completion_rate"] == 0.4286  # 3 / 7
    assert body["actions"] == {
        "total": 7,
        "done": 2,
        "dropped": 1,
        "overdue": 2,  # A1 and C2
        "completion_rate": 0.3333,  # 2 / (7 - 1)
    }
    assert suggestion_kinds_and_data(body) == [
        ("unaddressed_weakness", {"skill": "system design", "rejections": 3}),
        ("stalled_reflections", {"step": "feedback", "reflections": 3}),
        ("overdue_actions", {"overdue": 2}),
    ]


def test_from_selects_rejections_and_what_hangs_off_them(
    client: TestClient, engine: Engine
) -> None:
    user = build_data_set(client, engine)
    response = client.get("/v1/insights", params={"from": "2026-10-01"}, headers=user.headers)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["totals"] == {
        "rejections": 5,
        "reflections_completed": 1,
        "feedback_requests": 6,
        "action_items": 7,  # items belong to plans, not to dates
    }
    assert body["by_month"] == [{"month": "2026-10", "count": 3}, {"month": "2026-11", "count": 2}]
    assert body["by_stage"] == {
        **ALL_STAGES_ZERO,
        "phone": 1,
        "technical": 1,
        "onsite": 2,
        "final": 1,
        "offer": 0,
    }
    assert body["by_reason"] == {
        **ALL_REASONS_ZERO,
        "skills_gap": 1,
        "other_candidate": 2,
        "culture_fit": 1,
        "withdrew": 1,
    }
    assert body["by_decided_by"] == {"employer": 3, "candidate": 1, "unknown": 1}
    assert [step["reached"] for step in body["funnel"]] == [5, 5, 5, 4, 3, 1, 0]
    assert body["top_weaknesses"] == [
        {"skill": "system design", "count": 3},
        {"skill": "sql", "count": 2},
        {"skill": "communication", "count": 1},
        {"skill": "negotiation", "count": 1},
    ]
    assert body["top_strengths"] == [
        {"skill": "teamwork", "count": 2},
        {"skill": "communication", "count": 1},
        {"skill": "python", "count": 1},
    ]
    assert body["feedback"] == {
        "sent": 4,
        "responded": 1,
        "declined": 1,
        "no_response": 1,
        "response_rate": 0.5,
        "median_days_to_response": 3.5,  # mean of the middle two: 1.5 and 5.5
    }
    assert body["mood"] == [
        {"date": "2026-10-02", "intensity": 3.0, "confidence": None},
        {"date": "2026-10-15", "intensity": 2.5, "confidence": 5.0},
        {"date": "2026-11-03", "intensity": 1.0, "confidence": 4.0},
    ]
    assert body["reflection_completion_rate"] == 0.2
    assert body["actions"]["overdue"] == 2
    assert suggestion_kinds_and_data(body) == [
        ("unaddressed_weakness", {"skill": "system design", "rejections": 3}),
        ("stalled_reflections", {"step": "feedback", "reflections": 3}),
        ("overdue_actions", {"overdue": 2}),
    ]

    october = client.get(
        "/v1/insights", params={"from": "2026-10-01", "to": "2026-10-31"}, headers=user.headers
    ).json()
    assert october["totals"]["rejections"] == 3
    assert october["feedback"] == {
        "sent": 2,
        "responded": 0,
        "declined": 1,
        "no_response": 1,
        "response_rate": 0.5,
        "median_days_to_response": 5.5,
    }
    assert october["reflection_completion_rate"] == 0.0
    assert [s["kind"] for s in october["suggestions"]] == [
        "stalled_reflections",
        "overdue_actions",
    ]


def test_an_empty_account_has_zeros_and_nulls(client: TestClient) -> None:
    user = make_user(client)
    response = client.get("/v1/insights", headers=user.headers)
    assert response.status_code == 200, response.text
    assert response.json() == {
        "totals": {
            "rejections": 0,
            "reflections_completed": 0,
            "feedback_requests": 0,
            "action_items": 0,
        },
        "by_month": [],
        "by_stage": {**ALL_STAGES_ZERO, "offer": 0},
        "by_reason": ALL_REASONS_ZERO,
        "by_decided_by": {"employer": 0, "candidate": 0, "unknown": 0},
        "funnel": [
            {"stage": stage, "reached": 0}
            for stage in ("applied", "screen", "phone", "technical", "onsite", "final", "offer")
        ],
        "top_weaknesses": [],
        "top_strengths": [],
        "feedback": {
            "sent": 0,
            "responded": 0,
            "declined": 0,
            "no_response": 0,
            "response_rate": None,
            "median_days_to_response": None,
        },
        "mood": [],
        "reflection_completion_rate": None,
        "actions": {"total": 0, "done": 0, "dropped": 0, "overdue": 0, "completion_rate": None},
        "suggestions": [],
    }


def test_only_dropped_items_and_unsent_requests_give_nulls(
    client: TestClient, engine: Engine
) -> None:
    user = make_user(client)
    rejection = make_rejection(user)
    add_feedback(engine, user, rejection["id"], "draft")
    plan = make_plan(user)["id"]
    make_item(user, plan, status="dropped")
    body = client.get("/v1/insights", headers=user.headers).json()
    assert body["actions"] == {
        "total": 1,
        "done": 0,
        "dropped": 1,
        "overdue": 0,
        "completion_rate": None,
    }
    assert body["feedback"]["response_rate"] is None
    assert body["feedback"]["median_days_to_response"] is None
    assert body["totals"]["feedback_requests"] == 1
    assert body["reflection_completion_rate"] == 0.0


def test_from_after_to_is_422_and_other_users_data_is_not_counted(
    client: TestClient, engine: Engine
) -> None:
    build_data_set(client, engine)
    stranger = make_user(client)
    response = client.get(
        "/v1/insights", params={"from": "2026-11-01", "to": "2026-10-01"}, headers=stranger.headers
    )
    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"
    assert ["query", "from"] in [error["loc"] for error in response.json()["errors"]]
    assert (
        client.get("/v1/insights", params={"from": "soon"}, headers=stranger.headers).status_code
        == 422
    )
    assert client.get("/v1/insights").status_code == 401
    body = client.get("/v1/insights", headers=stranger.headers).json()
    assert body["totals"] == {
        "rejections": 0,
        "reflections_completed": 0,
        "feedback_requests": 0,
        "action_items": 0,
    }


def test_top_skills_stop_at_ten_ties_alphabetically(client: TestClient, engine: Engine) -> None:
    user = make_user(client)
    first, second = make_rejection(user), make_rejection(user, company="Globex")
    names = [f"skill {letter}" for letter in "lkjihgfedcba"]  # 12, given out of order
    for name in names:
        add_skills(engine, user, "strength", name, first["id"])
    add_skills(engine, user, "strength", "skill z", first["id"], second["id"])
    body = client.get("/v1/insights", headers=user.headers).json()
    assert body["top_strengths"] == [
        {"skill": "skill z", "count": 2},
        *({"skill": f"skill {letter}", "count": 1} for letter in "abcdefghi"),
    ]


def test_stage_hotspot_and_ask_for_feedback_rules(client: TestClient, engine: Engine) -> None:
    user = make_user(client)
    for _ in range(3):
        make_rejection(user, stage="onsite", decided_by="employer")
    asked = make_rejection(user, stage="technical", decided_by="employer")
    add_feedback(engine, user, asked["id"], "scheduled")
    make_rejection(user, stage="applied", decided_by="employer")
    body = client.get("/v1/insights", headers=user.headers).json()
    assert suggestion_kinds_and_data(body) == [
        ("stage_hotspot", {"stage": "onsite", "count": 3, "share": 0.6}),
        ("ask_for_feedback", {"rejections": 3}),
    ]


def test_insights_follow_what_reflections_and_feedback_record(client: TestClient) -> None:
    """End to end through the features that feed insights, not through arranged rows."""
    user = make_user(client)
    rejection = make_rejection(user, rejected_on="2026-11-02", stage="onsite")
    steps = f"/v1/rejections/{rejection['id']}/reflection/steps"
    writes = {
        "emotions": {"emotions": ["sad"], "intensity": 4},
        "strengths_weaknesses": {
            "strengths": [{"skill": "JS"}],
            "weaknesses": [{"skill": "Postgres"}, {"skill": "system-design skills"}],
        },
        "attitude": {"confidence": 3},
    }
    for key, content in writes.items():
        response = client.put(
            f"{steps}/{key}", json={"status": "done", "content": content}, headers=user.headers
        )
        assert response.status_code == 200, response.text
    request = client.post(
        f"/v1/rejections/{rejection['id']}/feedback-requests",
        json={"channel": "phone", "recipient_name": "Dana"},
        headers=user.headers,
    )
    assert request.status_code == 201, request.text
    request_url = f"/v1/feedback-requests/{request.json()['id']}"
    assert client.post(f"{request_url}/send", headers=user.headers).status_code == 200
    answered = client.post(
        f"{request_url}/responses",
        json={"outcome": "responded", "text": "Strong, but we chose someone else."},
        headers=user.headers,
    )
    assert answered.status_code in (200, 201), answered.text

    body = client.get("/v1/insights", headers=user.headers).json()
    assert body["mood"] == [{"date": "2026-11-02", "intensity": 4.0, "confidence": 3.0}]
    assert body["top_weaknesses"] == [
        {"skill": "postgresql", "count": 1},
        {"skill": "system design", "count": 1},
    ]
    assert body["top_strengths"] == [{"skill": "javascript", "count": 1}]
    assert body["totals"]["feedback_requests"] == 1
    feedback = body["feedback"]
    assert (feedback["sent"], feedback["responded"], feedback["response_rate"]) == (1, 1, 1.0)
    assert feedback["median_days_to_response"] == 0.0
    assert body["suggestions"] == []

    # A plan's skills are normalised the same way, so they meet the reflections' skills.
    plan = client.post(
        "/v1/action-plans",
        json={"title": "Databases", "skills": ["Postgres"]},
        headers=user.headers,
    )
    assert plan.json()["skills"] == ["postgresql"]
