"""The seven steps of a reflection, in order. Their guidance lives in guide.py."""

from __future__ import annotations

from enum import StrEnum


class StepKey(StrEnum):
    emotions = "emotions"
    strengths_weaknesses = "strengths_weaknesses"
    feedback = "feedback"
    goals_values = "goals_values"
    mistakes = "mistakes"
    action = "action"
    attitude = "attitude"


STEP_ORDER: list[StepKey] = list(StepKey)


class StepStatus(StrEnum):
    not_started = "not_started"
    in_progress = "in_progress"
    done = "done"
    skipped = "skipped"
