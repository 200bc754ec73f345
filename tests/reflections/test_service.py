from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from fastapi.testclient import TestClient
from sqlmodel import Session, select

from api.models import Reflection
from api.reflections.guide import suggest_next_step
from api.reflections.schemas import EmotionsContent, ReflectionRead
from api.reflections.service import reflection_read, strip_journal
from api.reflections.skills import SYNONYMS, normalise_skill
from api.reflections.steps import STEP_ORDER, StepKey, StepStatus, progress_of
from api.sync.registry import sync_type_of
from tests.factories import make_rejection, make_user


@pytest.mark.parametrize(
    ("written", "normalised"),
    [
        ("JavaScript", "javascript"),
        ("JS", "javascript"),
        ("  java   script. ", "javascript"),
        ("k8s", "kubernetes"),
        ("Kubernetes", "kubernetes"),
        ("Communication skills", "communication"),
        ("communication", "communication"),
        ("Communication!", "communication"),
        ("problem-solving", "problem solving"),
        ("Problem_Solving", "problem solving"),
        ("(Team work)", "teamwork"),
        ("C++", "c++"),
        ("c#", "c#"),
        ("C", "c"),
        (".NET", ".net"),
        ("Node.JS", "node.js"),
        ("nodejs", "node.js"),
        ("CI-CD", "ci/cd"),
        ("Front-end", "frontend"),
        ("R&D", "r&d"),
        ("\uff30\uff59\uff54\uff48\uff4f\uff4e", "python"),  # full-width letters
        ("skills", "skills"),
        ("JS skills", "javascript"),
        ("x" * 150, "x" * 100),
    ],
)
def test_skill_names_are_normalised(written: str, normalised: str) -> None:
    assert normalise_skill(written) == normalised


def test_the_synonym_table_is_stable() -> None:
    """Keys and values are already normalised, and no canonical name is itself a key."""
    for key, value in SYNONYMS.items():
        assert normalise_skill(key) == value
        assert value not in SYNONYMS, value


def test_progress_is_a_rounded_percent() -> None:
    finished = [StepStatus.done, StepStatus.skipped]
    for count, expected in enumerate([0, 14, 29, 43, 57, 71, 86, 100]):
        statuses = [finished[i % 2] for i in range(count)]
        statuses += [StepStatus.in_progress] * (7 - count)
        assert progress_of(statuses) == expected


def _statuses(**overrides: StepStatus) -> dict[StepKey, StepStatus]:
    statuses = dict.fromkeys(STEP_ORDER, StepStatus.not_started)
    statuses.update({StepKey(key): status for key, status in overrides.items()})
    return statuses


def test_suggest_next_step_rule() -> None:
    created = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)
    soon = created + timedelta(hours=3)
    later = created + timedelta(hours=30)
    done = StepStatus.done
    after_two = _statuses(emotions=done, strengths_weaknesses=done)

    def suggest(statuses: dict[StepKey, StepStatus], intensity: int | None, now: datetime):  # type: ignore[no-untyped-def]
        return suggest_next_step(
            statuses=statuses, rejection_created_at=created, emotion_intensity=intensity, now=now
        )

    assert suggest(_statuses(), None, soon).key is StepKey.emotions
    assert suggest(after_two, 3, soon).key is StepKey.feedback
    assert suggest(after_two, 4, soon).key is StepKey.goals_values
    assert suggest(after_two, 5, later).key is StepKey.feedback
    assert suggest(after_two, None, soon).key is StepKey.feedback
    only_held = dict.fromkeys(STEP_ORDER, done) | {StepKey.mistakes: StepStatus.in_progress}
    held = suggest(only_held, 5, soon)
    assert held.key is StepKey.mistakes
    assert held.available_at == created + timedelta(days=1)
    assert suggest(dict.fromkeys(STEP_ORDER, StepStatus.skipped), 5, soon) is None


def test_reflection_read_strip_journal_and_sync(client: TestClient, db: Session) -> None:
    user = make_user(client)
    rejection = make_rejection(user)
    url = f"/v1/rejections/{rejection['id']}/reflection/steps/emotions"
    content = {"emotions": ["sad"], "intensity": 2, "journal": "private words"}
    assert client.put(url, json={"status": "done", "content": content}, headers=user.headers)
    reflection = db.exec(select(Reflection).where(Reflection.rejection_id == rejection["id"])).one()

    read = reflection_read(session=db, reflection=reflection)
    assert isinstance(read, ReflectionRead)
    assert read.progress == 14
    assert isinstance(read.steps[0].content, EmotionsContent)
    assert read.steps[0].content.journal == "private words"

    stripped = strip_journal(read)
    assert isinstance(stripped.steps[0].content, EmotionsContent)
    assert stripped.steps[0].content.journal is None
    assert stripped.steps[0].content.emotions == ["sad"]
    assert read.steps[0].content.journal == "private words"  # the original is untouched

    api_view = client.get(
        f"/v1/rejections/{rejection['id']}/reflection", headers=user.headers
    ).json()
    sync_type = sync_type_of(Reflection)
    assert sync_type is not None
    assert sync_type.name == "reflection"
    [synced] = sync_type.serialize(db, [reflection])
    assert synced == api_view
