"""Reflections: one per rejection, seven steps each."""

from __future__ import annotations

from sqlmodel import Session

from api.models import Reflection, ReflectionStep, Rejection
from api.reflections.steps import STEP_ORDER


def create_reflection(*, session: Session, rejection: Rejection) -> Reflection:
    """The rejection's reflection with its seven steps, not started."""
    reflection = Reflection(user_id=rejection.user_id, rejection_id=rejection.id)
    session.add(reflection)
    session.flush()  # rows without ORM relationships are inserted in the order flushed
    session.add_all(
        ReflectionStep(
            user_id=rejection.user_id,
            reflection_id=reflection.id,
            key=key.value,
            order=position,
        )
        for position, key in enumerate(STEP_ORDER, start=1)
    )
    return reflection
