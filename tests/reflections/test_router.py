from __future__ import annotations

import random
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, update
from sqlmodel import Session, col, select

from api.db import utcnow
from api.models import DomainEvent, Reflection, Rejection
from api.models.rejection import ReflectionSkill
from tests.factories import UserHandle, make_rejection, make_user

KEYS = [
    "emotions",
    "strengths_weaknesses",
    "feedback",
    "goals_values",
    "mistakes",
    "action",
    "attitude",
]

DONE_CONTENT: dict[str, dict[str, Any]] = {
    "emotions": {
        "emotions": ["disappointed", "hopeful"],
        "intensity": 3,
        "journal": "Thought the onsite went well; it stings.",
        "coping": ["exercise", "talked_to_friend"],
    },
    "strengths_weaknesses": {
        "strengths": [{"skill": "Communication skills", "note": "The panel liked my demo."}],
        "weaknesses": [{"skill": "K8s"}],
    },
    "feedback": {"received_summary": "They wanted more Kubernetes.", "takeaways": "Learn it."},
    "goals_values": {"role_fit": "partial", "reprioritise": "Smaller teams."},
    "mistakes": {"mistakes": [{"phase": "interview", "what": "Rambled on the design question."}]},
    "action": {"commitment": "Two mock system-design interviews this month."},
    "attitude": {"confidence": 4, "wins": ["Reached the onsite"], "looking_forward": "Rest"},
}


def reflection_url(rejection: dict[str, Any]) -> str:
    return f"/v1/rejections/{rejection['id']}/reflection"


def put_step(
    user: UserHandle,
    rejection: dict[str, Any],
    key: str,
    status: str,
    content: Any = None,
    headers: dict[str, str] | None = None,
) -> Any:
    body: dict[str, Any] = {"status": status}
    if content is not None:
        body["content"] = content
    return user.client.put(
        f"{reflection_url(rejection)}/steps/{key}",
        json=body,
        headers={**user.headers, **(headers or {})},
    )


def locs(response: Any) -> list[list[Any]]:
    return [error["loc"] for error in response.json()["errors"]]


def events(db: Session, type_: str = "reflection.completed") -> list[DomainEvent]:
    db.rollback()  # a new snapshot: the app committed since
    return list(db.exec(select(DomainEvent).where(DomainEvent.type == type_)).all())


def test_a_new_reflection_has_seven_steps_not_started(client: TestClient) -> None:
    user = make_user(client)
    rejection = make_rejection(user)
    response = client.get(reflection_url(rejection), headers=user.headers)
    assert response.status_code == 200
    assert response.headers["ETag"] == '"1"'
    body = response.json()
    assert body["rejection_id"] == rejection["id"]
    assert body["progress"] == 0
    assert body["completed_at"] is None
    assert body["next_step"]["key"] == "emotions"
    assert body["next_step"]["note"]
    assert [step["key"] for step in body["steps"]] == KEYS
    assert [step["order"] for step in body["steps"]] == [1, 2, 3, 4, 5, 6, 7]
    for step in body["steps"]:
        assert step["status"] == "not_started"
        assert step["title"] and step["prompt"] and step["updated_at"]
    assert body["steps"][0]["content"] == {
        "emotions": [],
        "intensity": None,
        "journal": None,
        "coping": [],
    }


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_walking_the_steps_in_any_order_reaches_100_percent(
    client: TestClient, db: Session, seed: int
) -> None:
    user = make_user(client)
    rejection = make_rejection(user)
    order = KEYS[:]
    random.Random(seed).shuffle(order)
    expected_progress = [14, 29, 43, 57, 71, 86, 100]
    for position, key in enumerate(order):
        status = "skipped" if position % 3 == 2 else "done"
        content = DONE_CONTENT[key] if status == "done" else None
        response = put_step(user, rejection, key, status, content)
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["progress"] == expected_progress[position]
        assert response.headers["ETag"] == f'"{position + 2}"'
        step = next(step for step in body["steps"] if step["key"] == key)
        assert step["status"] == status
        if position < 6:
            assert body["completed_at"] is None
            assert body["next_step"] is not None
            assert body["next_step"]["key"] not in order[: position + 1]
        else:
            assert body["completed_at"] is not None
            assert body["next_step"] is None
    read = client.get(reflection_url(rejection), headers=user.headers).json()
    assert read["progress"] == 100
    assert read["completed_at"] is not None
    assert len(events(db)) == 1


def test_reopening_a_step_clears_completed_at_and_completion_is_recorded_once(
    client: TestClient, db: Session
) -> None:
    user = make_user(client)
    rejection = make_rejection(user)
    for key in KEYS:
        assert put_step(user, rejection, key, "done", DONE_CONTENT[key]).status_code == 200
    completed = client.get(reflection_url(rejection), headers=user.headers).json()
    completed_at = completed["completed_at"]
    assert completed_at is not None
    [event] = events(db)
    # The event names the rejection: a webhook receiver reads its reflection through it.
    assert event.subject_id == rejection["id"]
    assert event.user_id == user.id

    # Editing a finished step keeps the reflection complete and records nothing new.
    edited = put_step(user, rejection, "attitude", "done", {"confidence": 5})
    assert edited.json()["completed_at"] == completed_at
    assert edited.json()["progress"] == 100
    assert len(events(db)) == 1

    reopened = put_step(user, rejection, "mistakes", "in_progress", DONE_CONTENT["mistakes"])
    assert reopened.json()["completed_at"] is None
    assert reopened.json()["progress"] == 86
    assert reopened.json()["next_step"]["key"] == "mistakes"
    cleared = put_step(user, rejection, "mistakes", "not_started")
    assert cleared.json()["steps"][4]["content"] == {"mistakes": []}
    assert cleared.json()["progress"] == 86
    assert len(events(db)) == 1

    again = put_step(user, rejection, "mistakes", "skipped")
    assert again.json()["completed_at"] is not None
    assert again.json()["completed_at"] != completed_at
    assert len(events(db)) == 2


MALFORMED: list[tuple[str, Any, list[Any]]] = [
    ("emotions", {"emotions": ["elated"]}, ["body", "content", "emotions", 0]),
    ("emotions", {"intensity": 0}, ["body", "content", "intensity"]),
    ("emotions", {"intensity": 6}, ["body", "content", "intensity"]),
    ("emotions", {"intensity": "very"}, ["body", "content", "intensity"]),
    ("emotions", {"coping": ["napping"]}, ["body", "content", "coping", 0]),
    ("emotions", {"journal": "x" * 20001}, ["body", "content", "journal"]),
    ("emotions", {"mood": "bad"}, ["body", "content", "mood"]),
    ("emotions", {"confidence": 3}, ["body", "content", "confidence"]),
    ("strengths_weaknesses", {"strengths": [{"note": "x"}]}, ["body", "content", "strengths", 0, "skill"]),
    ("strengths_weaknesses", {"strengths": ["python"]}, ["body", "content", "strengths", 0]),
    ("strengths_weaknesses", {"weaknesses": [{"skill": "!!!"}]}, ["body", "content", "weaknesses", 0, "skill"]),
    ("strengths_weaknesses", {"weaknesses": [{"skill": "x" * 101}]}, ["body", "content", "weaknesses", 0, "skill"]),
    ("strengths_weaknesses", {"strengths": [{"skill": "go", "level": 3}]}, ["body", "content", "strengths", 0, "level"]),
    ("feedback", {"feedback_request_ids": "abc"}, ["body", "content", "feedback_request_ids"]),
    ("feedback", {"received_summary": 5}, ["body", "content", "received_summary"]),
    ("goals_values", {"role_fit": "great"}, ["body", "content", "role_fit"]),
    ("goals_values", {"alignment": [{"value": "growth", "score": 9}]}, ["body", "content", "alignment", 0, "score"]),
    ("goals_values", {"alignment": [{"score": 3}]}, ["body", "content", "alignment", 0, "value"]),
    ("mistakes", {"mistakes": [{"phase": "lunch", "what": "x"}]}, ["body", "content", "mistakes", 0, "phase"]),
    ("mistakes", {"mistakes": [{"phase": "interview"}]}, ["body", "content", "mistakes", 0, "what"]),
    ("mistakes", {"mistakes": {"phase": "interview"}}, ["body", "content", "mistakes"]),
    ("action", {"action_item_ids": [1]}, ["body", "content", "action_item_ids", 0]),
    ("action", {"commitment": ["a"]}, ["body", "content", "commitment"]),
    ("attitude", {"confidence": 6}, ["body", "content", "confidence"]),
    ("attitude", {"wins": [""]}, ["body", "content", "wins", 0]),
    ("attitude", [1, 2], ["body", "content"]),
]  # fmt: skip


def test_malformed_content_is_422_naming_the_field_and_changes_nothing(
    client: TestClient, db: Session
) -> None:
    user = make_user(client)
    rejection = make_rejection(user)
    for key, content, loc in MALFORMED:
        for status in ("in_progress", "done", "skipped"):
            response = put_step(user, rejection, key, status, content)
            assert response.status_code == 422, (key, content, response.text)
            assert response.headers["content-type"] == "application/problem+json"
            assert loc in locs(response), (key, content, response.json())
            assert ".".join(str(part) for part in loc) in response.json()["detail"]
    wrong_status = put_step(user, rejection, "emotions", "finished", {})
    assert ["body", "status"] in locs(wrong_status)
    unknown_step = put_step(user, rejection, "gratitude", "done", {})
    assert unknown_step.status_code == 422
    assert ["path", "key"] in locs(unknown_step)
    extra = client.put(
        f"{reflection_url(rejection)}/steps/emotions",
        json={"status": "skipped", "note": "x"},
        headers=user.headers,
    )
    assert ["body", "note"] in locs(extra)

    response = client.get(reflection_url(rejection), headers=user.headers)
    assert response.headers["ETag"] == '"1"'
    for step in response.json()["steps"]:
        assert step["status"] == "not_started"
    db.rollback()  # a new snapshot: the app committed since
    assert db.exec(select(ReflectionSkill)).all() == []


@pytest.mark.parametrize(
    ("key", "content", "named"),
    [
        ("emotions", {}, ["emotions", "intensity"]),
        ("emotions", {"emotions": ["sad"]}, ["intensity"]),
        ("emotions", {"intensity": 2, "journal": "meh"}, ["emotions"]),
        ("strengths_weaknesses", {"strengths": [], "weaknesses": []}, ["strengths", "weaknesses"]),
        ("feedback", {"takeaways": "none yet"}, ["feedback_request_ids", "received_summary"]),
        ("feedback", {"received_summary": "   "}, ["feedback_request_ids", "received_summary"]),
        ("goals_values", {"reprioritise": "more remote"}, ["role_fit"]),
        ("mistakes", {"mistakes": []}, ["mistakes"]),
        ("action", {"commitment": ""}, ["action_item_ids", "commitment"]),
        ("attitude", {"wins": ["a good week"]}, ["confidence"]),
    ],
)
def test_done_without_what_the_step_needs_is_422(
    client: TestClient, key: str, content: dict[str, Any], named: list[str]
) -> None:
    user = make_user(client)
    rejection = make_rejection(user)
    response = put_step(user, rejection, key, "done", content)
    assert response.status_code == 422, response.text
    assert [loc[-1] for loc in locs(response)] == named
    assert key in response.json()["detail"]
    # The same content is fine as a draft, and skipping is always allowed.
    assert put_step(user, rejection, key, "in_progress", content).status_code == 200
    skipped = put_step(user, rejection, key, "skipped", content)
    assert skipped.status_code == 200
    assert skipped.json()["progress"] == 14


def test_every_step_can_be_skipped_with_no_content(client: TestClient) -> None:
    user = make_user(client)
    rejection = make_rejection(user)
    for key in KEYS:
        assert put_step(user, rejection, key, "skipped").status_code == 200
    body = client.get(reflection_url(rejection), headers=user.headers).json()
    assert body["progress"] == 100
    assert body["completed_at"] is not None


def test_not_started_takes_no_content(client: TestClient) -> None:
    user = make_user(client)
    rejection = make_rejection(user)
    response = put_step(user, rejection, "emotions", "not_started", {"intensity": 2})
    assert response.status_code == 422
    assert locs(response) == [["body", "content"]]
    assert put_step(user, rejection, "emotions", "not_started", {}).status_code == 200


def test_content_is_stored_cleaned(client: TestClient) -> None:
    user = make_user(client)
    rejection = make_rejection(user)
    response = put_step(
        user,
        rejection,
        "emotions",
        "in_progress",
        {"emotions": ["sad", "sad", "numb"], "journal": "  ", "coping": ["rest", "rest"]},
    )
    assert response.json()["steps"][0]["content"] == {
        "emotions": ["sad", "numb"],
        "intensity": None,
        "journal": None,
        "coping": ["rest"],
    }


def test_if_match_guards_step_writes_with_the_reflections_etag(client: TestClient) -> None:
    user = make_user(client)
    rejection = make_rejection(user)
    etag = client.get(reflection_url(rejection), headers=user.headers).headers["ETag"]
    first = put_step(
        user, rejection, "emotions", "in_progress", {"intensity": 2}, headers={"If-Match": etag}
    )
    assert first.status_code == 200
    assert first.headers["ETag"] == '"2"'
    stale = put_step(
        user, rejection, "attitude", "done", {"confidence": 3}, headers={"If-Match": etag}
    )
    assert stale.status_code == 412
    assert stale.headers["ETag"] == '"2"'
    body = client.get(reflection_url(rejection), headers=user.headers).json()
    assert body["steps"][6]["status"] == "not_started"
    # The rejection's own ETag is another object's: it does not guard the reflection.
    rejection_etag = client.get(f"/v1/rejections/{rejection['id']}", headers=user.headers)
    assert rejection_etag.headers["ETag"] == '"1"'
    assert (
        put_step(
            user, rejection, "attitude", "done", {"confidence": 3}, headers={"If-Match": '"1"'}
        ).status_code
        == 412
    )
    fresh = put_step(
        user, rejection, "attitude", "done", {"confidence": 3}, headers={"If-Match": '"2"'}
    )
    assert fresh.status_code == 200
    unconditional = put_step(user, rejection, "attitude", "done", {"confidence": 4})
    assert unconditional.status_code == 200
    assert unconditional.headers["ETag"] == '"4"'


def test_another_users_reflection_is_404(client: TestClient) -> None:
    alice, bob = make_user(client), make_user(client)
    rejection = make_rejection(alice)
    assert client.get(reflection_url(rejection), headers=bob.headers).status_code == 404
    response = put_step(bob, rejection, "emotions", "done", DONE_CONTENT["emotions"])
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/problem+json"
    own = client.get(reflection_url(rejection), headers=alice.headers)
    assert own.headers["ETag"] == '"1"'
    assert own.json()["steps"][0]["status"] == "not_started"


def test_a_deleted_rejections_reflection_is_404(client: TestClient) -> None:
    user = make_user(client)
    rejection = make_rejection(user)
    assert (
        client.delete(f"/v1/rejections/{rejection['id']}", headers=user.headers).status_code == 204
    )
    assert client.get(reflection_url(rejection), headers=user.headers).status_code == 404
    assert put_step(user, rejection, "emotions", "skipped").status_code == 404
    assert client.get("/v1/rejections/nope/reflection", headers=user.headers).status_code == 404


def test_reading_and_writing_need_a_token(client: TestClient) -> None:
    user = make_user(client)
    rejection = make_rejection(user)
    assert client.get(reflection_url(rejection)).status_code == 401
    assert (
        client.put(f"{reflection_url(rejection)}/steps/emotions", json={"status": "skipped"})
    ).status_code == 401


# --- goals and values -----------------------------------------------------------------


def test_alignment_names_profile_values(client: TestClient) -> None:
    user = make_user(client)
    rejection = make_rejection(user)
    step = client.get(reflection_url(rejection), headers=user.headers).json()["steps"][3]
    assert "PUT /v1/me/profile" in step["prompt"]
    no_values = put_step(
        user, rejection, "goals_values", "done",
        {"alignment": [{"value": "Growth", "score": 4}], "role_fit": "good"},
    )  # fmt: skip
    assert no_values.status_code == 422
    assert "no values" in no_values.json()["detail"]
    assert locs(no_values) == [["body", "content", "alignment", 0, "value"]]

    profile = {"values": [{"name": "Growth", "weight": 5}, {"name": "Remote work", "weight": 3}]}
    assert client.put("/v1/me/profile", json=profile, headers=user.headers).status_code == 200
    step = client.get(reflection_url(rejection), headers=user.headers).json()["steps"][3]
    assert "PUT /v1/me/profile" not in step["prompt"]

    unknown = put_step(
        user, rejection, "goals_values", "done",
        {"alignment": [{"value": "growth", "score": 4}, {"value": "Salary", "score": 2}],
         "role_fit": "good"},
    )  # fmt: skip
    assert unknown.status_code == 422
    detail = unknown.json()["detail"]
    assert "'Salary' is not one of the values in your profile" in detail
    assert "Growth, Remote work" in detail
    assert locs(unknown) == [["body", "content", "alignment", 1, "value"]]

    twice = put_step(
        user, rejection, "goals_values", "done",
        {"alignment": [{"value": "growth", "score": 4}, {"value": "GROWTH", "score": 2}],
         "role_fit": "good"},
    )  # fmt: skip
    assert twice.status_code == 422

    saved = put_step(
        user, rejection, "goals_values", "done",
        {"alignment": [{"value": " growth ", "score": 4}, {"value": "remote  WORK", "score": 1}],
         "role_fit": "poor"},
    )  # fmt: skip
    assert saved.status_code == 200, saved.text
    assert saved.json()["steps"][3]["content"]["alignment"] == [
        {"value": "Growth", "score": 4},
        {"value": "Remote work", "score": 1},
    ]


# --- links ----------------------------------------------------------------------------


def test_links_accept_an_empty_list(client: TestClient) -> None:
    user = make_user(client)
    rejection = make_rejection(user)
    feedback = put_step(
        user, rejection, "feedback", "done",
        {"feedback_request_ids": [], "received_summary": "Strong field."},
    )  # fmt: skip
    assert feedback.status_code == 200
    action = put_step(
        user, rejection, "action", "done", {"action_item_ids": [], "commitment": "Apply again"}
    )
    assert action.status_code == 200


def _feedback_request(user: UserHandle, rejection: dict[str, Any]) -> str:
    created = user.client.post(
        f"/v1/rejections/{rejection['id']}/feedback-requests",
        json={"channel": "phone", "recipient_name": "Dana"},
        headers=user.headers,
    )
    assert created.status_code == 201, created.text
    return str(created.json()["id"])


def test_feedback_step_links_this_rejections_requests(client: TestClient) -> None:
    alice, bob = make_user(client), make_user(client)
    rejection, other_rejection = make_rejection(alice), make_rejection(alice)
    mine = _feedback_request(alice, rejection)
    elsewhere = _feedback_request(alice, other_rejection)
    theirs = _feedback_request(bob, make_rejection(bob))
    missing = "0190a000-0000-7000-8000-000000000000"

    linked = put_step(alice, rejection, "feedback", "done", {"feedback_request_ids": [mine]})
    assert linked.status_code == 200, linked.text
    assert linked.json()["steps"][2]["content"]["feedback_request_ids"] == [mine]

    for other in (elsewhere, theirs, missing):
        refused = put_step(
            alice, rejection, "feedback", "done", {"feedback_request_ids": [mine, other]}
        )
        assert refused.status_code == 422
        assert other in refused.json()["detail"]
        assert locs(refused) == [["body", "content", "feedback_request_ids", 1]]
    body = client.get(reflection_url(rejection), headers=alice.headers).json()
    assert body["steps"][2]["content"]["feedback_request_ids"] == [mine]


def _action_item(user: UserHandle) -> str:
    plan = user.client.post("/v1/action-plans", json={"title": "Interviews"}, headers=user.headers)
    assert plan.status_code == 201, plan.text
    item = user.client.post(
        f"/v1/action-plans/{plan.json()['id']}/items",
        json={"title": "Mock interview", "kind": "practice"},
        headers=user.headers,
    )
    assert item.status_code == 201, item.text
    return str(item.json()["id"])


def test_action_step_links_the_users_own_live_action_items(client: TestClient) -> None:
    alice, bob = make_user(client), make_user(client)
    rejection = make_rejection(alice)
    mine, theirs, gone = _action_item(alice), _action_item(bob), _action_item(alice)
    assert client.delete(f"/v1/action-items/{gone}", headers=alice.headers).status_code == 204

    linked = put_step(alice, rejection, "action", "done", {"action_item_ids": [mine, mine]})
    assert linked.status_code == 200, linked.text
    assert linked.json()["steps"][5]["content"]["action_item_ids"] == [mine]

    for other in (theirs, gone, "0190a000-0000-7000-8000-000000000000"):
        refused = put_step(alice, rejection, "action", "done", {"action_item_ids": [mine, other]})
        assert refused.status_code == 422
        assert other in refused.json()["detail"]
        assert locs(refused) == [["body", "content", "action_item_ids", 1]]
    body = client.get(reflection_url(rejection), headers=alice.headers).json()
    assert body["steps"][5]["content"]["action_item_ids"] == [mine]


# --- the suggested next step ----------------------------------------------------------


def _age_rejection(engine: Engine, rejection_id: str, by: timedelta) -> datetime:
    created_at = utcnow() - by
    with Session(engine) as session:
        session.exec(
            update(Rejection).where(col(Rejection.id) == rejection_id).values(created_at=created_at)
        )
        session.commit()
    return created_at


def _parse(stamp: str) -> datetime:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00"))


def test_next_step_holds_back_feedback_and_mistakes_on_a_hard_first_day(
    client: TestClient, engine: Engine
) -> None:
    user = make_user(client)
    rejection = make_rejection(user)
    created_at = _age_rejection(engine, rejection["id"], timedelta(hours=2))
    hot = {"emotions": ["angry"], "intensity": 4}
    body = put_step(user, rejection, "emotions", "done", hot).json()
    assert body["next_step"]["key"] == "strengths_weaknesses"
    assert "tomorrow" in body["next_step"]["note"]
    assert abs(_parse(body["next_step"]["available_at"]) - created_at) < timedelta(seconds=1)

    body = put_step(user, rejection, "strengths_weaknesses", "skipped").json()
    assert body["next_step"]["key"] == "goals_values"  # feedback is held back
    for key in ("goals_values", "action", "attitude"):
        body = put_step(user, rejection, key, "skipped").json()
    assert body["next_step"]["key"] == "feedback"
    held_until = _parse(body["next_step"]["available_at"])
    assert abs(held_until - (created_at + timedelta(days=1))) < timedelta(seconds=1)
    # Held back is only a suggestion: the step can still be written.
    body = put_step(user, rejection, "feedback", "skipped").json()
    assert body["next_step"]["key"] == "mistakes"
    assert _parse(body["next_step"]["available_at"]) > utcnow()


def test_next_step_is_not_held_back_when_calm_or_after_a_day(
    client: TestClient, engine: Engine
) -> None:
    user = make_user(client)
    calm = make_rejection(user)
    put_step(user, calm, "emotions", "done", {"emotions": ["sad"], "intensity": 3})
    put_step(user, calm, "strengths_weaknesses", "skipped")
    body = client.get(reflection_url(calm), headers=user.headers).json()
    assert body["next_step"]["key"] == "feedback"

    old = make_rejection(user)
    created_at = _age_rejection(engine, old["id"], timedelta(hours=25))
    put_step(user, old, "emotions", "done", {"emotions": ["angry"], "intensity": 5})
    body = put_step(user, old, "strengths_weaknesses", "skipped").json()
    assert body["next_step"]["key"] == "feedback"
    available_at = _parse(body["next_step"]["available_at"])
    assert abs(available_at - (created_at + timedelta(days=1))) < timedelta(seconds=1)
    assert "tomorrow" not in body["next_step"]["note"]

    # A skipped emotions step reports no intensity: nothing is held back.
    fresh = make_rejection(user)
    put_step(user, fresh, "emotions", "skipped", {"intensity": 5})
    body = put_step(user, fresh, "strengths_weaknesses", "skipped").json()
    assert body["next_step"]["key"] == "feedback"


def test_concurrent_step_writes_are_serialised(client: TestClient, db: Session) -> None:
    """Two last steps written at once: the later write sees the earlier one and completes."""
    user = make_user(client)
    rejections = [make_rejection(user) for _ in range(4)]
    for rejection in rejections:
        for key in KEYS[:5]:
            assert put_step(user, rejection, key, "skipped").status_code == 200

    def write(args: tuple[dict[str, Any], str]) -> int:
        rejection, key = args
        return int(put_step(user, rejection, key, "done", DONE_CONTENT[key]).status_code)

    jobs = [(rejection, key) for rejection in rejections for key in ("action", "attitude")]
    with ThreadPoolExecutor(max_workers=4) as pool:
        assert list(pool.map(write, jobs)) == [200] * len(jobs)
    for rejection in rejections:
        body = client.get(reflection_url(rejection), headers=user.headers)
        assert body.json()["progress"] == 100
        assert body.json()["completed_at"] is not None
        assert body.headers["ETag"] == '"8"'
    assert len(events(db)) == len(rejections)


def test_sync_serves_the_reflection_as_the_api_does(client: TestClient) -> None:
    user = make_user(client)
    rejection = make_rejection(user)
    put_step(user, rejection, "emotions", "done", DONE_CONTENT["emotions"])
    first = client.get("/v1/sync", headers=user.headers).json()
    [synced] = [item["object"] for item in first["upserted"] if item["type"] == "reflection"]
    assert synced == client.get(reflection_url(rejection), headers=user.headers).json()

    put_step(user, rejection, "attitude", "skipped")
    since = client.get("/v1/sync", params={"since": first["next_cursor"]}, headers=user.headers)
    [changed] = since.json()["upserted"]
    assert changed["type"] == "reflection"
    assert changed["object"]["progress"] == 29

    client.delete(f"/v1/rejections/{rejection['id']}", headers=user.headers)
    gone = client.get("/v1/sync", params={"since": first["next_cursor"]}, headers=user.headers)
    assert {"type": "reflection", "id": synced["id"]} in gone.json()["deleted"]


# --- insights data: skills and mood ---------------------------------------------------


def test_step_two_writes_normalised_skills(client: TestClient, db: Session) -> None:
    user = make_user(client)
    rejection = make_rejection(user)
    content = {
        "strengths": [
            {"skill": "Communication Skills"},
            {"skill": "communication"},
            {"skill": "  JS "},
        ],
        "weaknesses": [{"skill": "k8s", "note": "never used it"}, {"skill": "System-Design."}],
    }
    response = put_step(user, rejection, "strengths_weaknesses", "done", content)
    assert response.status_code == 200
    # The user's own words stay in the step.
    assert response.json()["steps"][1]["content"]["strengths"][0]["skill"] == "Communication Skills"

    def rows() -> set[tuple[str, str]]:
        db.rollback()  # a new snapshot: the app committed since
        found = db.exec(select(ReflectionSkill).where(ReflectionSkill.user_id == user.id)).all()
        for row in found:
            assert row.rejection_id == rejection["id"]
        return {(row.kind, row.skill) for row in found}

    assert rows() == {
        ("strength", "communication"),
        ("strength", "javascript"),
        ("weakness", "kubernetes"),
        ("weakness", "system design"),
    }
    put_step(
        user, rejection, "strengths_weaknesses", "in_progress", {"weaknesses": [{"skill": "SQL"}]}
    )
    assert rows() == {("weakness", "sql")}
    put_step(user, rejection, "strengths_weaknesses", "skipped", {"weaknesses": [{"skill": "SQL"}]})
    assert rows() == set()
    put_step(user, rejection, "strengths_weaknesses", "done", {"strengths": [{"skill": "Go"}]})
    assert rows() == {("strength", "go")}
    # Another user cannot touch them.
    other = make_user(client)
    assert put_step(other, rejection, "strengths_weaknesses", "skipped").status_code == 404
    assert rows() == {("strength", "go")}


def test_mood_columns_follow_steps_one_and_seven(client: TestClient, db: Session) -> None:
    user = make_user(client)
    rejection = make_rejection(user)

    def mood() -> tuple[int | None, int | None]:
        db.rollback()  # a new snapshot: the app committed since
        row = db.exec(select(Reflection).where(Reflection.rejection_id == rejection["id"])).one()
        return row.emotion_intensity, row.confidence

    assert mood() == (None, None)
    put_step(user, rejection, "emotions", "in_progress", {"intensity": 4})
    put_step(user, rejection, "attitude", "done", {"confidence": 2})
    assert mood() == (4, 2)
    put_step(user, rejection, "emotions", "done", {"emotions": ["sad"], "intensity": 5})
    assert mood() == (5, 2)
    put_step(user, rejection, "attitude", "skipped", {"confidence": 2})
    assert mood() == (5, None)
    put_step(user, rejection, "emotions", "not_started")
    assert mood() == (None, None)


# --- the guide ------------------------------------------------------------------------


def test_the_guide_lists_the_seven_steps(client: TestClient) -> None:
    response = client.get("/v1/reflection-guide")
    assert response.status_code == 200
    guide = response.json()
    assert [step["key"] for step in guide["steps"]] == KEYS
    assert [step["order"] for step in guide["steps"]] == [1, 2, 3, 4, 5, 6, 7]
    for step in guide["steps"]:
        assert step["title"]
        assert len(step["why_it_matters"]) > 80
        assert len(step["prompts"]) >= 3
        assert step["done_when"]
    rule = guide["next_step_rule"]
    assert "feedback" in rule and "mistakes" in rule and "a day" in rule
    # The step titles the reflection shows are the guide's.
    user = make_user(client)
    reflection = client.get(reflection_url(make_rejection(user)), headers=user.headers).json()
    assert [step["title"] for step in reflection["steps"]] == [
        step["title"] for step in guide["steps"]
    ]


def _words(text: str) -> list[str]:
    return "".join(c.lower() if c.isalnum() else " " for c in text).split()


def test_the_guide_is_written_in_its_own_words(client: TestClient) -> None:
    """No run of eight words is lifted from the seed article."""
    seed_dir = Path(__file__).resolve().parents[3] / "shared" / "seed"
    seed_files = sorted(seed_dir.glob("*.txt"))
    if not seed_files:
        pytest.skip("the seed article is not next to the checkout")
    seed = _words(" ".join(path.read_text() for path in seed_files))
    seed_runs = {tuple(seed[i : i + 8]) for i in range(len(seed) - 7)}
    guide = client.get("/v1/reflection-guide").json()
    texts = [guide["next_step_rule"]]
    for step in guide["steps"]:
        texts += [step["title"], step["why_it_matters"], step["done_when"], *step["prompts"]]
    for text in texts:
        words = _words(text)
        for i in range(len(words) - 7):
            assert tuple(words[i : i + 8]) not in seed_runs, text
