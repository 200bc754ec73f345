"""The shapes on the wire: each step's typed content, a step write, the reflection, the guide.

Every step has its own content schema. `PUT …/steps/{key}` documents `content` as one of
them and validates it against the schema of `key` (see `parse_content`), so an error names
the field as `["body", "content", <field>, …]`, exactly as if the route had that step's
schema alone.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, TypeVar

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PlainValidator,
    StringConstraints,
    ValidationError,
)

from api.errors import Unprocessable
from api.reflections.skills import MAX_SKILL_LENGTH, has_letter_or_digit
from api.reflections.steps import StepKey, StepStatus

T = TypeVar("T")


# --- fixed vocabularies -------------------------------------------------------------


class Emotion(StrEnum):
    disappointed = "disappointed"
    frustrated = "frustrated"
    angry = "angry"
    sad = "sad"
    anxious = "anxious"
    ashamed = "ashamed"
    confused = "confused"
    numb = "numb"
    relieved = "relieved"
    hopeful = "hopeful"
    motivated = "motivated"
    other = "other"


class Coping(StrEnum):
    journaling = "journaling"
    exercise = "exercise"
    talked_to_friend = "talked_to_friend"
    talked_to_mentor = "talked_to_mentor"
    rest = "rest"
    hobby = "hobby"
    other = "other"


class MistakePhase(StrEnum):
    application = "application"
    preparation = "preparation"
    interview = "interview"
    follow_up = "follow_up"
    other = "other"


class RoleFit(StrEnum):
    good = "good"
    partial = "partial"
    poor = "poor"


class SkillKind(StrEnum):
    strength = "strength"
    weakness = "weakness"


# --- field types ----------------------------------------------------------------------


def _none_if_blank(value: str | None) -> str | None:
    return value or None


def _unique(items: list[T]) -> list[T]:
    """The list without repeats, first occurrence kept."""
    seen: list[T] = []
    for item in items:
        if item not in seen:
            seen.append(item)
    return seen


# Optional free text: surrounding spaces trimmed, blank means absent.
ShortText = Annotated[
    Annotated[str, StringConstraints(strip_whitespace=True, max_length=2000)] | None,
    AfterValidator(_none_if_blank),
]
LongText = Annotated[
    Annotated[str, StringConstraints(strip_whitespace=True, max_length=5000)] | None,
    AfterValidator(_none_if_blank),
]
JournalText = Annotated[
    Annotated[str, StringConstraints(strip_whitespace=True, max_length=20000)] | None,
    AfterValidator(_none_if_blank),
]
# Required free text.
Sentence = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=500)]
Paragraph = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=2000)]


def _named_skill(value: str) -> str:
    if not has_letter_or_digit(value):
        raise ValueError("a skill needs at least one letter or digit")
    return value


Rating = Annotated[int, Field(ge=1, le=5)]
ObjectId = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=36)]
IdList = Annotated[list[ObjectId], Field(max_length=20), AfterValidator(_unique)]
SkillName = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=MAX_SKILL_LENGTH),
    AfterValidator(_named_skill),
]


class ContentModel(BaseModel):
    model_config = ConfigDict(extra="forbid")


# --- the seven steps' content ---------------------------------------------------------


class EmotionsContent(ContentModel):
    """Step 1. Done needs at least one emotion and the intensity."""

    emotions: Annotated[list[Emotion], Field(max_length=12), AfterValidator(_unique)] = Field(
        default_factory=list, description="How the rejection feels; as many as apply."
    )
    intensity: Rating | None = Field(default=None, description="How strongly, 1 (mild) to 5.")
    journal: JournalText = Field(
        default=None,
        description="Free writing. Private: organisations never see it without `journal:read`.",
    )
    coping: Annotated[list[Coping], Field(max_length=7), AfterValidator(_unique)] = Field(
        default_factory=list, description="What has helped so far."
    )


class SkillNote(ContentModel):
    skill: SkillName = Field(
        description="Free text; normalised for insights (case, spacing, common synonyms)."
    )
    note: ShortText = None


class StrengthsWeaknessesContent(ContentModel):
    """Step 2. Done needs at least one strength or weakness."""

    strengths: Annotated[list[SkillNote], Field(max_length=30)] = Field(default_factory=list)
    weaknesses: Annotated[list[SkillNote], Field(max_length=30)] = Field(default_factory=list)


class FeedbackContent(ContentModel):
    """Step 3. Done needs a linked feedback request or a `received_summary`."""

    feedback_request_ids: IdList = Field(
        default_factory=list, description="Feedback requests of this rejection."
    )
    received_summary: LongText = Field(default=None, description="What they told you.")
    takeaways: LongText = None


class ValueAlignment(ContentModel):
    value: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=60)] = (
        Field(description="The name of one of the values in your profile.")
    )
    score: Rating = Field(description="How well the role served this value, 1 (not) to 5.")


class GoalsValuesContent(ContentModel):
    """Step 4. Done needs `role_fit`."""

    alignment: Annotated[list[ValueAlignment], Field(max_length=20)] = Field(default_factory=list)
    role_fit: RoleFit | None = None
    reprioritise: ShortText = Field(default=None, description="What you would aim for differently.")


class Mistake(ContentModel):
    phase: MistakePhase
    what: Paragraph
    lesson: ShortText = None


class MistakesContent(ContentModel):
    """Step 5. Done needs at least one mistake."""

    mistakes: Annotated[list[Mistake], Field(max_length=20)] = Field(default_factory=list)


class ActionContent(ContentModel):
    """Step 6. Done needs a linked action item or a `commitment`."""

    action_item_ids: IdList = Field(default_factory=list, description="Your action items.")
    commitment: ShortText = Field(default=None, description="The next thing you will do.")


class AttitudeContent(ContentModel):
    """Step 7. Done needs `confidence`."""

    confidence: Rating | None = Field(
        default=None, description="How confident you feel about your search, 1 to 5."
    )
    wins: Annotated[list[Sentence], Field(max_length=20)] = Field(default_factory=list)
    gratitude: ShortText = None
    looking_forward: ShortText = None


StepContent = (
    EmotionsContent
    | StrengthsWeaknessesContent
    | FeedbackContent
    | GoalsValuesContent
    | MistakesContent
    | ActionContent
    | AttitudeContent
)

CONTENT_MODELS: dict[StepKey, type[ContentModel]] = {
    StepKey.emotions: EmotionsContent,
    StepKey.strengths_weaknesses: StrengthsWeaknessesContent,
    StepKey.feedback: FeedbackContent,
    StepKey.goals_values: GoalsValuesContent,
    StepKey.mistakes: MistakesContent,
    StepKey.action: ActionContent,
    StepKey.attitude: AttitudeContent,
}


def parse_content(key: StepKey, raw: dict[str, Any]) -> ContentModel:
    """`raw` validated against step `key`'s schema; 422 naming each wrong field."""
    try:
        return CONTENT_MODELS[key].model_validate(raw)
    except ValidationError as exc:
        errors: list[dict[str, Any]] = [
            {
                "loc": ["body", "content", *error["loc"]],
                "msg": error["msg"],
                "type": error["type"],
            }
            for error in exc.errors(include_url=False)
        ]
        first = errors[0]
        where = ".".join(str(part) for part in first["loc"])
        raise Unprocessable(
            f"{where}: {first['msg']}", loc=first["loc"], extra={"errors": errors}
        ) from None


def stored_content(key: StepKey, stored: dict[str, Any]) -> StepContent:
    """A step's stored content as its schema, with every field present."""
    content = CONTENT_MODELS[key].model_validate(stored)
    assert isinstance(content, StepContent)
    return content


# --- writing a step -------------------------------------------------------------------


def _an_object(value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ValueError("content must be an object with the step's fields")
    return value


class StepWrite(BaseModel):
    """A step's new status and content; the content replaces what the step had."""

    model_config = ConfigDict(extra="forbid")

    status: StepStatus
    content: Annotated[
        dict[str, Any],
        PlainValidator(_an_object, json_schema_input_type=StepContent),
    ] = Field(
        default_factory=dict,
        description=(
            "The fields of the step named in the path (see each schema). Omitted or `{}` "
            "empties the step. `done` needs the step's required fields; `skipped` is always "
            "allowed; `not_started` takes no content."
        ),
    )


# --- reading ----------------------------------------------------------------------------


class NextStep(BaseModel):
    key: StepKey
    available_at: datetime = Field(
        description="From when the step is suggested; in the future while it is held back."
    )
    note: str


class StepRead(BaseModel):
    key: StepKey
    order: int
    title: str
    prompt: str
    status: StepStatus
    content: StepContent
    updated_at: datetime


class ReflectionRead(BaseModel):
    id: str
    rejection_id: str
    progress: int = Field(description="Percent of the seven steps done or skipped.")
    completed_at: datetime | None
    next_step: NextStep | None = Field(
        description="The step suggested next, or null when the reflection is complete."
    )
    steps: list[StepRead]
    created_at: datetime
    updated_at: datetime


class GuideStep(BaseModel):
    key: StepKey
    order: int
    title: str
    why_it_matters: str
    prompts: list[str]
    done_when: str


class ReflectionGuide(BaseModel):
    steps: list[GuideStep]
    next_step_rule: str
