from __future__ import annotations

import datetime as dt
from typing import Any

from pydantic import BaseModel, Field


class Totals(BaseModel):
    rejections: int
    reflections_completed: int
    feedback_requests: int
    action_items: int


class MonthCount(BaseModel):
    month: str = Field(description="`YYYY-MM`, by `rejected_on`.")
    count: int


class FunnelStep(BaseModel):
    stage: str
    reached: int = Field(description="Rejections that got at least this far.")


class SkillCount(BaseModel):
    skill: str
    count: int = Field(description="Rejections whose reflection names the skill.")


class FeedbackInsights(BaseModel):
    sent: int = Field(description="Requests whose first message went out.")
    responded: int
    declined: int
    no_response: int
    response_rate: float | None = Field(
        description="(responded + declined) / sent, 4 decimals; null when nothing was sent."
    )
    median_days_to_response: float | None = Field(
        description="Median days from the first message to the answer, 1 decimal; null "
        "without answers."
    )


class MoodPoint(BaseModel):
    date: dt.date = Field(description="The rejections' `rejected_on`.")
    intensity: float | None = Field(
        description="Mean step-1 emotion intensity (1-5) of that day's rejections, 2 decimals."
    )
    confidence: float | None = Field(
        description="Mean step-7 confidence (1-5) of that day's rejections, 2 decimals."
    )


class ActionInsights(BaseModel):
    total: int
    done: int
    dropped: int
    overdue: int = Field(description="`todo` or `doing` items due before today (user's zone).")
    completion_rate: float | None = Field(
        description="done / items not dropped, 4 decimals; null with no such items."
    )


class Suggestion(BaseModel):
    kind: str
    message: str
    data: dict[str, Any]


class InsightsRead(BaseModel):
    """What the user's rejections say, computed from live data."""

    totals: Totals
    by_month: list[MonthCount]
    by_stage: dict[str, int]
    by_reason: dict[str, int]
    by_decided_by: dict[str, int]
    funnel: list[FunnelStep]
    top_weaknesses: list[SkillCount]
    top_strengths: list[SkillCount]
    feedback: FeedbackInsights
    mood: list[MoodPoint]
    reflection_completion_rate: float | None = Field(
        description="Completed reflections / rejections, 4 decimals; null with no rejections."
    )
    actions: ActionInsights
    suggestions: list[Suggestion]
