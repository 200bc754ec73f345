"""The seven steps of a reflection, in order, and their statuses. Their guidance lives in
guide.py, their content schemas in schemas.py."""

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


# A step counts towards progress (and completion) once it is done or deliberately skipped.
FINISHED: frozenset[StepStatus] = frozenset({StepStatus.done, StepStatus.skipped})
# A step whose content feeds insights (mood, skills): the user is working on it or has done it.
COUNTED: frozenset[StepStatus] = frozenset({StepStatus.in_progress, StepStatus.done})


def progress_of(statuses: list[StepStatus] | list[str]) -> int:
    """Integer percent of the seven steps that are done or skipped."""
    finished = sum(1 for status in statuses if StepStatus(status) in FINISHED)
    return round(100 * finished / len(STEP_ORDER))
