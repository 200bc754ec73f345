"""Reflections: one per rejection, seven typed steps each.

Writing a step also keeps the denormalised data insights read in step with it: the
reflection's `emotion_intensity` (step 1) and `confidence` (step 7), and the
`reflection_skills` rows (step 2). Those follow a step only while it is in progress or
done; a skipped or not-started step contributes nothing.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlmodel import Session, col, delete, select

from api.accounts.service import get_profile
from api.db import NewRow, new_id, utcnow
from api.errors import NotFound, Unprocessable
from api.events import record_event
from api.models import Profile, Reflection, ReflectionStep, Rejection, User
from api.models.action_plan import ActionItem
from api.models.base import table_of
from api.models.feedback import FeedbackRequest
from api.models.rejection import ReflectionSkill
from api.reflections.guide import GUIDE, step_prompt, suggest_next_step
from api.reflections.schemas import (
    ActionContent,
    AttitudeContent,
    ContentModel,
    EmotionsContent,
    FeedbackContent,
    GoalsValuesContent,
    MistakesContent,
    NextStep,
    ReflectionRead,
    SkillKind,
    StepRead,
    StepWrite,
    StrengthsWeaknessesContent,
    parse_content,
    stored_content,
)
from api.reflections.skills import normalise_skill
from api.reflections.steps import (
    COUNTED,
    FINISHED,
    STEP_ORDER,
    StepKey,
    StepStatus,
    progress_of,
)
from api.sync.registry import register_sync_type


def reflection_rows(*, user_id: str, rejection_id: str, now: datetime) -> list[NewRow]:
    """The rows of a new rejection's reflection: the reflection, not started, and its
    seven steps. A tracked row (version 1, `updated_at`); its change number is claimed
    when the rows are inserted. The steps take their ids, not-started status and empty
    content from the model's column defaults."""
    reflection_id = new_id()
    reflection = {
        "id": reflection_id,
        "user_id": user_id,
        "rejection_id": rejection_id,
        "version": 1,
        "created_at": now,
        "updated_at": now,
    }
    steps = [
        {
            "user_id": user_id,
            "reflection_id": reflection_id,
            "key": key.value,
            "order": position,
            "created_at": now,
            "updated_at": now,
        }
        for position, key in enumerate(STEP_ORDER, start=1)
    ]
    return [
        (table_of(Reflection), reflection),
        *((table_of(ReflectionStep), step) for step in steps),
    ]


def get_reflection(*, session: Session, rejection: Rejection, lock: bool = False) -> Reflection:
    """The live reflection of a rejection the caller already owns; locked when `lock`."""
    statement = select(Reflection).where(
        Reflection.rejection_id == rejection.id,
        Reflection.user_id == rejection.user_id,
        col(Reflection.deleted_at).is_(None),
    )
    reflection = session.exec(statement.with_for_update() if lock else statement).first()
    if reflection is None:  # the rejection was deleted while we waited for the lock
        raise NotFound("There is no rejection with this id.")
    return reflection


def _steps_of(session: Session, reflection_ids: Sequence[str]) -> dict[str, list[ReflectionStep]]:
    rows = session.exec(
        select(ReflectionStep)
        .where(col(ReflectionStep.reflection_id).in_(reflection_ids))
        .order_by(col(ReflectionStep.order))
    ).all()
    steps: dict[str, list[ReflectionStep]] = defaultdict(list)
    for row in rows:
        steps[row.reflection_id].append(row)
    return steps


# --- writing a step -------------------------------------------------------------------


def _missing(loc: str, msg: str) -> dict[str, Any]:
    return {"loc": ["body", "content", loc], "msg": msg, "type": "missing_for_done"}


def _missing_for_done(content: ContentModel) -> list[dict[str, Any]]:
    """What the step still needs before it can be `done` (the spec's last column)."""
    match content:
        case EmotionsContent():
            errors = []
            if not content.emotions:
                errors.append(_missing("emotions", "choose at least one emotion"))
            if content.intensity is None:
                errors.append(_missing("intensity", "rate the intensity from 1 to 5"))
            return errors
        case StrengthsWeaknessesContent():
            if content.strengths or content.weaknesses:
                return []
            msg = "name at least one strength or weakness"
            return [_missing("strengths", msg), _missing("weaknesses", msg)]
        case FeedbackContent():
            if content.feedback_request_ids or content.received_summary:
                return []
            msg = "link a feedback request or summarise the feedback you received"
            return [_missing("feedback_request_ids", msg), _missing("received_summary", msg)]
        case GoalsValuesContent():
            if content.role_fit is not None:
                return []
            return [_missing("role_fit", "say whether the role was a good, partial or poor fit")]
        case MistakesContent():
            if content.mistakes:
                return []
            return [_missing("mistakes", "describe at least one mistake")]
        case ActionContent():
            if content.action_item_ids or content.commitment:
                return []
            msg = "link an action item or write a commitment"
            return [_missing("action_item_ids", msg), _missing("commitment", msg)]
        case AttitudeContent():
            if content.confidence is not None:
                return []
            return [_missing("confidence", "rate your confidence from 1 to 5")]
    raise TypeError(f"no done rule for {type(content).__name__}")


def _value_key(name: str) -> str:
    return " ".join(name.split()).casefold()


def _check_alignment(*, session: Session, owner: User, content: GoalsValuesContent) -> None:
    """Each alignment names a value of the user's profile; names take the profile's spelling."""
    if not content.alignment:
        return
    profile = get_profile(session=session, user=owner)
    known = {_value_key(str(value["name"])): str(value["name"]) for value in profile.values}
    seen: set[str] = set()
    for position, item in enumerate(content.alignment):
        loc: list[str | int] = ["body", "content", "alignment", position, "value"]
        key = _value_key(item.value)
        if not known:
            raise Unprocessable(
                "Your profile has no values yet: add the values that matter to you with "
                "PUT /v1/me/profile, then score this role against them.",
                loc=loc,
                error_type="unknown_value",
            )
        if key not in known:
            raise Unprocessable(
                f"{item.value!r} is not one of the values in your profile "
                f"({', '.join(sorted(known.values(), key=str.casefold))}). Choose one of "
                "those, or add it to your profile first with PUT /v1/me/profile.",
                loc=loc,
                error_type="unknown_value",
            )
        if key in seen:
            raise Unprocessable(f"{item.value!r} is scored twice.", loc=loc)
        seen.add(key)
        item.value = known[key]


def _first_unknown(
    *,
    session: Session,
    model: type[ActionItem] | type[FeedbackRequest],
    ids: list[str],
    owner: User,
    rejection_id: str | None = None,
) -> int | None:
    """The position of the first id that is not one of the owner's live rows, if any."""
    statement = select(model.id).where(
        col(model.id).in_(ids),
        model.user_id == owner.id,
        col(model.deleted_at).is_(None),
    )
    if rejection_id is not None:
        statement = statement.where(col(FeedbackRequest.rejection_id) == rejection_id)
    found = set(session.exec(statement).all())
    return next((position for position, id_ in enumerate(ids) if id_ not in found), None)


def _check_links(
    *, session: Session, owner: User, reflection: Reflection, content: ContentModel
) -> None:
    """Step 3 links this rejection's feedback requests, step 6 the owner's action items."""
    if isinstance(content, FeedbackContent) and content.feedback_request_ids:
        ids = content.feedback_request_ids
        unknown = _first_unknown(
            session=session,
            model=FeedbackRequest,
            ids=ids,
            owner=owner,
            rejection_id=reflection.rejection_id,
        )
        if unknown is not None:
            raise Unprocessable(
                f"There is no feedback request {ids[unknown]} on this rejection.",
                loc=["body", "content", "feedback_request_ids", unknown],
                error_type="unknown_id",
            )
    if isinstance(content, ActionContent) and content.action_item_ids:
        ids = content.action_item_ids
        unknown = _first_unknown(session=session, model=ActionItem, ids=ids, owner=owner)
        if unknown is not None:
            raise Unprocessable(
                f"There is no action item {ids[unknown]} among yours.",
                loc=["body", "content", "action_item_ids", unknown],
                error_type="unknown_id",
            )


def _rewrite_skills(
    *, session: Session, reflection: Reflection, content: StrengthsWeaknessesContent | None
) -> None:
    """Replace the reflection's `reflection_skills` rows with the step's normalised skills."""
    session.exec(delete(ReflectionSkill).where(col(ReflectionSkill.reflection_id) == reflection.id))
    if content is None:
        return
    rows: dict[tuple[str, str], ReflectionSkill] = {}
    for kind, notes in (
        (SkillKind.strength, content.strengths),
        (SkillKind.weakness, content.weaknesses),
    ):
        for note in notes:
            skill = normalise_skill(note.skill)
            rows.setdefault(
                (kind.value, skill),
                ReflectionSkill(
                    user_id=reflection.user_id,
                    reflection_id=reflection.id,
                    rejection_id=reflection.rejection_id,
                    kind=kind.value,
                    skill=skill,
                ),
            )
    session.add_all(rows.values())


def write_step(
    *,
    session: Session,
    owner: User,
    reflection: Reflection,
    key: StepKey,
    data: StepWrite,
) -> Reflection:
    """Replace one step's status and content; keep progress, completion and insights data.

    The caller holds the reflection's row lock, so concurrent writes to one reflection
    run one after another. Completing the reflection records `reflection.completed`.
    """
    content = parse_content(key, data.content)
    empty = type(content)()
    if data.status is StepStatus.not_started and content != empty:
        raise Unprocessable(
            "A step that is not started has no content; use in_progress to keep a draft.",
            loc=["body", "content"],
        )
    if data.status is StepStatus.done:
        missing = _missing_for_done(content)
        if missing:
            where = ", ".join(str(error["loc"][-1]) for error in missing)
            raise Unprocessable(
                f"The {key.value} step cannot be done yet: {missing[0]['msg']} ({where}).",
                loc=missing[0]["loc"],
                extra={"errors": missing},
            )
    if isinstance(content, GoalsValuesContent):
        _check_alignment(session=session, owner=owner, content=content)
    _check_links(session=session, owner=owner, reflection=reflection, content=content)

    now = utcnow()
    steps = _steps_of(session, [reflection.id])[reflection.id]
    step = next(row for row in steps if row.key == key.value)
    step.status = data.status.value
    step.content = {} if data.status is StepStatus.not_started else content.model_dump(mode="json")
    step.updated_at = now
    session.add(step)

    counted = data.status in COUNTED
    if isinstance(content, EmotionsContent):
        reflection.emotion_intensity = content.intensity if counted else None
    elif isinstance(content, AttitudeContent):
        reflection.confidence = content.confidence if counted else None
    elif isinstance(content, StrengthsWeaknessesContent):
        _rewrite_skills(
            session=session, reflection=reflection, content=content if counted else None
        )

    complete = all(StepStatus(row.status) in FINISHED for row in steps)
    if complete and reflection.completed_at is None:
        reflection.completed_at = now
        record_event(
            session,
            type="reflection.completed",
            user_id=reflection.user_id,
            # The rejection's id: receivers fetch …/rejections/{id}/reflection with it.
            subject_id=reflection.rejection_id,
        )
    elif not complete:
        reflection.completed_at = None
    reflection.updated_at = now  # a step write is a change of the reflection: new ETag
    session.add(reflection)
    return reflection


# --- reading ----------------------------------------------------------------------------


def reflection_reads(
    *, session: Session, reflections: Sequence[Reflection]
) -> list[ReflectionRead]:
    """The wire form of several reflections, with three queries whatever their number."""
    if not reflections:
        return []
    steps = _steps_of(session, [reflection.id for reflection in reflections])
    rejection_ids = {reflection.rejection_id for reflection in reflections}
    created = dict(
        session.exec(
            select(Rejection.id, Rejection.created_at).where(col(Rejection.id).in_(rejection_ids))
        ).all()
    )
    user_ids = {reflection.user_id for reflection in reflections}
    with_values = {
        profile.user_id
        for profile in session.exec(select(Profile).where(col(Profile.user_id).in_(user_ids))).all()
        if profile.values
    }
    now = utcnow()
    reads = []
    for reflection in reflections:
        rows = steps[reflection.id]
        statuses = {StepKey(row.key): StepStatus(row.status) for row in rows}
        suggestion = suggest_next_step(
            statuses=statuses,
            rejection_created_at=created[reflection.rejection_id],
            emotion_intensity=reflection.emotion_intensity,
            now=now,
        )
        reads.append(
            ReflectionRead(
                id=reflection.id,
                rejection_id=reflection.rejection_id,
                progress=progress_of(list(statuses.values())),
                completed_at=reflection.completed_at,
                next_step=(
                    NextStep(
                        key=suggestion.key,
                        available_at=suggestion.available_at,
                        note=suggestion.note,
                    )
                    if suggestion is not None
                    else None
                ),
                steps=[
                    StepRead(
                        key=StepKey(row.key),
                        order=row.order,
                        title=GUIDE[StepKey(row.key)].title,
                        prompt=step_prompt(
                            StepKey(row.key), has_profile_values=reflection.user_id in with_values
                        ),
                        status=StepStatus(row.status),
                        content=stored_content(StepKey(row.key), row.content),
                        updated_at=row.updated_at,
                    )
                    for row in rows
                ],
                created_at=reflection.created_at,
                updated_at=reflection.updated_at,
            )
        )
    return reads


def reflection_read(*, session: Session, reflection: Reflection) -> ReflectionRead:
    """The wire form of one reflection, as `GET …/reflection` returns it."""
    return reflection_reads(session=session, reflections=[reflection])[0]


def strip_journal(read: ReflectionRead) -> ReflectionRead:
    """A copy without the emotions step's private `journal` text (for organisations
    whose grant lacks `journal:read`)."""
    steps = [
        step.model_copy(update={"content": step.content.model_copy(update={"journal": None})})
        if isinstance(step.content, EmotionsContent)
        else step
        for step in read.steps
    ]
    return read.model_copy(update={"steps": steps})


def serialize_for_sync(session: Session, reflections: Sequence[Any]) -> list[dict[str, Any]]:
    """Sync feed objects: exactly what `GET …/reflection` returns for each."""
    return [
        read.model_dump(mode="json")
        for read in reflection_reads(session=session, reflections=reflections)
    ]


register_sync_type("reflection", Reflection, serialize_for_sync)
