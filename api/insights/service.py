"""Insights across a user's rejections, computed from live data with SQL aggregation.

Every figure is a GROUP BY or a COUNT in the database, so the cost grows with the number of
distinct values (stages, months, skills), not with the number of rejections. The scope:

- `from`/`to` select rejections by `rejected_on` (inclusive). Everything hanging off a
  rejection follows it: its reflection (completion, mood), its skills, its feedback
  requests. Deleted rejections, and with them their reflections, are left out.
- Action items belong to plans, not to one rejection, so `actions` and
  `totals.action_items` count all the user's live items whatever the dates.
- Dates are the user's local dates: `overdue` means due before today in their time zone.
- Rates are rounded to 4 decimals, the median to 1, mood means to 2; a rate or a median
  with nothing to compute from is null.

Suggestions come from these rules, in this order:

1. `unaddressed_weakness` — a weakness named in the reflections of at least 3 rejections
   for which no open (`todo`/`doing`) item of a live plan listing that skill exists; one
   suggestion per skill, the 3 most frequent.
2. `stage_hotspot` — with at least 5 rejections, one stage holds more than half of them.
3. `stalled_reflections` — at least 3 started but unfinished reflections whose first step
   not yet done or skipped is the same step.
4. `ask_for_feedback` — at least 3 rejections decided by the employer after an interview
   (stage `phone` or later) without any feedback request.
5. `overdue_actions` — at least one open item is past its due date.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import ColumnElement, Float, and_, cast, true
from sqlalchemy import select as sa_select
from sqlmodel import Session, col, func, select

from api.errors import Unprocessable
from api.insights.schemas import (
    ActionInsights,
    FeedbackInsights,
    FunnelStep,
    InsightsRead,
    MonthCount,
    MoodPoint,
    SkillCount,
    Suggestion,
    Totals,
)
from api.models import Reflection, ReflectionStep, Rejection, User
from api.models.action_plan import OPEN_STATUSES, ActionItem, ActionItemStatus, ActionPlan
from api.models.feedback import FeedbackRequest, FeedbackStatus
from api.models.rejection import STAGE_ORDER, DecidedBy, ReasonCode, ReflectionSkill, Stage
from api.reflections.steps import STEP_ORDER, StepStatus

TOP_SKILLS = 10
RECURRING_WEAKNESS = 3
MAX_WEAKNESS_SUGGESTIONS = 3
HOTSPOT_MIN_REJECTIONS = 5
STALLED_REFLECTIONS = 3
FEEDBACK_NOT_ASKED = 3
# From the phone interview on, someone at the employer has met the candidate.
INTERVIEW_STAGES = [stage.value for stage in STAGE_ORDER[STAGE_ORDER.index(Stage.phone) :]]

STAGE_HINTS: dict[str, str] = {
    Stage.applied: "tailoring each application to the posting is the place to start",
    Stage.screen: "a crisp two-minute story of why this role fits you helps most",
    Stage.phone: "rehearsing the first interview out loud, with questions of your own, pays off",
    Stage.technical: "timed practice on exercises like theirs targets this step",
    Stage.onsite: "mock interviews with someone who will be frank target this step",
    Stage.final: "you get far; asking those employers what tipped the decision is worth it",
    Stage.offer: "reviewing what you ask for and how you negotiate is worth a look",
}
STEP_TITLES = {
    "emotions": "process the emotions",
    "strengths_weaknesses": "strengths and weaknesses",
    "feedback": "seek feedback",
    "goals_values": "goals and values",
    "mistakes": "learn from mistakes",
    "action": "take action",
    "attitude": "positive attitude",
}


def _rate(part: int, whole: int, digits: int = 4) -> float | None:
    return round(part / whole, digits) if whole else None


def _float(value: Any, digits: int) -> float | None:
    return None if value is None else round(float(value), digits)


def local_today(user: User) -> date:
    """Today's date where the user lives (UTC when their zone is unknown)."""
    try:
        zone = ZoneInfo(user.timezone)
    except (ZoneInfoNotFoundError, ValueError):
        zone = ZoneInfo("UTC")
    return datetime.now(zone).date()


@dataclass
class _Scope:
    """The user's live rejections in the date range, as SQL conditions."""

    session: Session
    user: User
    date_from: date | None
    date_to: date | None
    today: date

    @property
    def postgres(self) -> bool:
        return self.session.get_bind().dialect.name == "postgresql"

    def rejections(self) -> list[ColumnElement[bool]]:
        conditions = [
            col(Rejection.user_id) == self.user.id,
            col(Rejection.deleted_at).is_(None),
        ]
        if self.date_from is not None:
            conditions.append(col(Rejection.rejected_on) >= self.date_from)
        if self.date_to is not None:
            conditions.append(col(Rejection.rejected_on) <= self.date_to)
        return conditions


def _live_reflection() -> ColumnElement[bool]:
    """The ON clause joining a rejection to its reflection, unless that was deleted."""
    return and_(
        col(Reflection.rejection_id) == col(Rejection.id), col(Reflection.deleted_at).is_(None)
    )


@dataclass
class _Breakdown:
    by_stage: dict[str, int]
    by_reason: dict[str, int]
    by_decided_by: dict[str, int]
    reflections_completed: int
    feedback_not_asked: int  # decided by the employer after an interview, no request


def _breakdown(scope: _Scope) -> _Breakdown:
    """Counts by stage, reason and who decided (every value present), completed
    reflections, and the rejections nobody asked for feedback: one GROUP BY."""
    result = _Breakdown(
        by_stage={stage.value: 0 for stage in Stage},
        by_reason={reason.value: 0 for reason in ReasonCode},
        by_decided_by={who.value: 0 for who in DecidedBy},
        reflections_completed=0,
        feedback_not_asked=0,
    )
    has_request = (
        select(col(FeedbackRequest.id))
        .where(
            col(FeedbackRequest.rejection_id) == col(Rejection.id),
            col(FeedbackRequest.deleted_at).is_(None),
        )
        .exists()
    )
    stage, reason, decided_by = (
        col(Rejection.stage),
        col(Rejection.reason_code),
        col(Rejection.decided_by),
    )
    rows = scope.session.execute(
        sa_select(
            stage,
            reason,
            decided_by,
            func.count(),
            func.count().filter(col(Reflection.completed_at).is_not(None)),
            # stage and decided_by are grouped on, so this is only looked at (below) in
            # the groups the rule is about.
            func.count().filter(~has_request),
        )
        .select_from(Rejection)
        .outerjoin(Reflection, _live_reflection())
        .where(*scope.rejections())
        .group_by(stage, reason, decided_by)
    ).all()
    for stage_value, reason_value, decided_by_value, count, completed, unasked in rows:
        result.by_stage[stage_value] = result.by_stage.get(stage_value, 0) + count
        result.by_reason[reason_value] = result.by_reason.get(reason_value, 0) + count
        result.by_decided_by[decided_by_value] = (
            result.by_decided_by.get(decided_by_value, 0) + count
        )
        result.reflections_completed += completed
        if stage_value in INTERVIEW_STAGES and decided_by_value == DecidedBy.employer.value:
            result.feedback_not_asked += unasked
    return result


def _by_day(scope: _Scope) -> tuple[list[MonthCount], list[MoodPoint]]:
    """Rejections per month, and the mood series, from one GROUP BY `rejected_on`."""
    day = col(Rejection.rejected_on)
    rows = scope.session.execute(
        sa_select(
            day,
            func.count(),
            func.avg(cast(col(Reflection.emotion_intensity), Float)),
            func.avg(cast(col(Reflection.confidence), Float)),
        )
        .select_from(Rejection)
        .outerjoin(Reflection, _live_reflection())
        .where(*scope.rejections())
        .group_by(day)
        .order_by(day)
    ).all()
    months: dict[str, int] = {}
    mood: list[MoodPoint] = []
    for rejected_on, count, intensity, confidence in rows:
        month = f"{rejected_on.year:04d}-{rejected_on.month:02d}"
        months[month] = months.get(month, 0) + count
        if intensity is not None or confidence is not None:
            mood.append(
                MoodPoint(
                    date=rejected_on,
                    intensity=_float(intensity, 2),
                    confidence=_float(confidence, 2),
                )
            )
    return [MonthCount(month=month, count=count) for month, count in months.items()], mood


def _funnel(by_stage: dict[str, int]) -> list[FunnelStep]:
    funnel: list[FunnelStep] = []
    reached = 0
    for stage in reversed(STAGE_ORDER):
        reached += by_stage.get(stage.value, 0)
        funnel.append(FunnelStep(stage=stage.value, reached=reached))
    return funnel[::-1]


def _skill_counts(scope: _Scope) -> dict[str, list[SkillCount]]:
    """Per kind, every skill by the number of rejections naming it, ties by code point."""
    kind, skill = col(ReflectionSkill.kind), col(ReflectionSkill.skill)
    # Rows are unique per (reflection, kind, skill) and a rejection has one reflection, so
    # counting rows counts rejections (and needs no sort, unlike a DISTINCT count).
    count = func.count()
    rows = scope.session.execute(
        sa_select(kind, skill, count)
        .join(Rejection, col(Rejection.id) == col(ReflectionSkill.rejection_id))
        .where(*scope.rejections())
        .group_by(kind, skill)
    ).all()
    # Sorted here (Python compares strings by code point, whatever the database's
    # collation): one row per distinct skill, and one statement for both kinds and rules.
    counts: dict[str, list[SkillCount]] = {"strength": [], "weakness": []}
    for kind_value, name, n in sorted(rows, key=lambda row: (-row[2], row[1])):
        counts.setdefault(kind_value, []).append(SkillCount(skill=name, count=n))
    return counts


def _feedback(scope: _Scope) -> tuple[int, FeedbackInsights]:
    """All live requests of the rejections in scope, and how the sent ones went."""
    status = col(FeedbackRequest.status)
    sent = col(FeedbackRequest.first_sent_at).is_not(None)
    answered = status.in_([FeedbackStatus.responded.value, FeedbackStatus.declined.value])
    in_scope = [
        *scope.rejections(),
        col(FeedbackRequest.user_id) == scope.user.id,
        col(FeedbackRequest.deleted_at).is_(None),
    ]
    # Six columns: SQLAlchemy's own select (sqlmodel's stops at four).
    total, sent_count, responded, declined, no_response, answered_sent = scope.session.execute(
        sa_select(
            func.count(),
            func.count().filter(sent),
            func.count().filter(status == FeedbackStatus.responded.value),
            func.count().filter(status == FeedbackStatus.declined.value),
            func.count().filter(status == FeedbackStatus.no_response.value),
            func.count().filter(and_(answered, sent)),
        )
        .select_from(FeedbackRequest)
        .join(Rejection, col(Rejection.id) == col(FeedbackRequest.rejection_id))
        .where(*in_scope)
    ).one()

    # The median in SQL: number the answered requests by their wait, keep the middle one
    # (or two, and average them).
    first, answer = col(FeedbackRequest.first_sent_at), col(FeedbackRequest.responded_at)
    if scope.postgres:
        days: Any = func.extract("epoch", answer - first) / 86400.0
    else:
        days = func.julianday(answer) - func.julianday(first)
    waits = (
        select(
            days.label("days"),
            func.row_number().over(order_by=days).label("position"),
            func.count().over().label("n"),
        )
        .select_from(FeedbackRequest)
        .join(Rejection, col(Rejection.id) == col(FeedbackRequest.rejection_id))
        .where(*in_scope, answered, sent, answer.is_not(None))
        .subquery()
    )
    median = scope.session.exec(
        select(func.avg(waits.c.days)).where(
            2 * waits.c.position >= waits.c.n, 2 * waits.c.position <= waits.c.n + 2
        )
    ).one()
    return total, FeedbackInsights(
        sent=sent_count,
        responded=responded,
        declined=declined,
        no_response=no_response,
        response_rate=_rate(answered_sent, sent_count),
        median_days_to_response=_float(median, 1),
    )


def _actions(scope: _Scope) -> ActionInsights:
    status, due_on = col(ActionItem.status), col(ActionItem.due_on)
    total, done, dropped, overdue = scope.session.exec(
        select(
            func.count(),
            func.count().filter(status == ActionItemStatus.done.value),
            func.count().filter(status == ActionItemStatus.dropped.value),
            func.count().filter(status.in_(OPEN_STATUSES), due_on < scope.today),
        ).where(col(ActionItem.user_id) == scope.user.id, col(ActionItem.deleted_at).is_(None))
    ).one()
    return ActionInsights(
        total=total,
        done=done,
        dropped=dropped,
        overdue=overdue,
        completion_rate=_rate(done, total - dropped),
    )


# --- suggestions ---------------------------------------------------------------------


def _skills_with_open_items(scope: _Scope) -> set[str]:
    """Skills listed by a live plan that still has an open item."""
    function = func.jsonb_array_elements_text if scope.postgres else func.json_each
    each = function(col(ActionPlan.skills)).table_valued("value")
    has_open_item = (
        select(col(ActionItem.id))
        .where(
            col(ActionItem.plan_id) == col(ActionPlan.id),
            col(ActionItem.deleted_at).is_(None),
            col(ActionItem.status).in_(OPEN_STATUSES),
        )
        .exists()
    )
    rows = scope.session.exec(
        select(each.c.value)
        .select_from(ActionPlan)
        .join(each, true())
        .where(
            col(ActionPlan.user_id) == scope.user.id,
            col(ActionPlan.deleted_at).is_(None),
            has_open_item,
        )
        .distinct()
    ).all()
    return {str(value) for value in rows}


def _unaddressed_weaknesses(scope: _Scope, weaknesses: list[SkillCount]) -> list[Suggestion]:
    recurring = [weakness for weakness in weaknesses if weakness.count >= RECURRING_WEAKNESS]
    if not recurring:
        return []
    covered = _skills_with_open_items(scope)
    return [
        Suggestion(
            kind="unaddressed_weakness",
            message=(
                f"\u201c{weakness.skill}\u201d came up as a weakness after {weakness.count} "
                "rejections, and no open action item works on it yet. A small plan for it "
                "turns a repeated theme into progress you can point to."
            ),
            data={"skill": weakness.skill, "rejections": weakness.count},
        )
        for weakness in recurring
        if weakness.skill not in covered
    ][:MAX_WEAKNESS_SUGGESTIONS]


def _stage_hotspot(by_stage: dict[str, int]) -> list[Suggestion]:
    total = sum(by_stage.values())
    if total < HOTSPOT_MIN_REJECTIONS:
        return []
    stage, count = max(by_stage.items(), key=lambda pair: pair[1])
    if 2 * count <= total:
        return []
    share = round(count / total, 4)
    hint = STAGE_HINTS.get(stage, "it is the step to prepare for")  # StrEnum keys: str lookups
    return [
        Suggestion(
            kind="stage_hotspot",
            message=(
                f"{count} of your {total} rejections came at the {stage} stage. "
                f"Preparing for that step in particular may help most: {hint}."
            ),
            data={"stage": stage, "count": count, "share": share},
        )
    ]


def _stalled_reflections(scope: _Scope) -> list[Suggestion]:
    not_finished = [StepStatus.not_started.value, StepStatus.in_progress.value]
    status = col(ReflectionStep.status)
    # Per unfinished reflection in scope: its first step not done or skipped, and whether
    # any step was touched at all (an untouched reflection has not stalled). The steps are
    # reached from the rejections through indexes, so the plan stays linear even before
    # the database has statistics on a freshly imported account.
    per_reflection = (
        select(
            func.min(col(ReflectionStep.order))
            .filter(status.in_(not_finished))
            .label("step_order"),
            func.count().filter(status != StepStatus.not_started.value).label("touched"),
        )
        .select_from(Rejection)
        .join(Reflection, col(Reflection.rejection_id) == col(Rejection.id))
        .join(ReflectionStep, col(ReflectionStep.reflection_id) == col(Reflection.id))
        .where(
            *scope.rejections(),
            col(Reflection.deleted_at).is_(None),
            col(Reflection.completed_at).is_(None),
        )
        .group_by(col(ReflectionStep.reflection_id))
        .subquery()
    )
    rows = scope.session.exec(
        select(per_reflection.c.step_order, func.count())
        .where(per_reflection.c.step_order.is_not(None), per_reflection.c.touched > 0)
        .group_by(per_reflection.c.step_order)
        .order_by(func.count().desc(), per_reflection.c.step_order)
    ).all()
    suggestions = []
    for order, count in rows:
        if count < STALLED_REFLECTIONS or not 1 <= order <= len(STEP_ORDER):
            continue
        key = STEP_ORDER[order - 1].value
        suggestions.append(
            Suggestion(
                kind="stalled_reflections",
                message=(
                    f"{count} of your reflections stopped at the "
                    f"\u201c{STEP_TITLES.get(key, key)}\u201d step. That step may be the hard "
                    "one for you; skipping it is allowed, and finishing the others still counts."
                ),
                data={"step": key, "reflections": count},
            )
        )
    return suggestions


def _ask_for_feedback(count: int) -> list[Suggestion]:
    if count < FEEDBACK_NOT_ASKED:
        return []
    return [
        Suggestion(
            kind="ask_for_feedback",
            message=(
                f"{count} employers who interviewed you have not been asked for feedback. "
                "People who have met you are the likeliest to say what would have changed "
                "their mind; a short, polite request costs little."
            ),
            data={"rejections": count},
        )
    ]


def _overdue_actions(actions: ActionInsights) -> list[Suggestion]:
    if actions.overdue == 0:
        return []
    items = "item is" if actions.overdue == 1 else "items are"
    return [
        Suggestion(
            kind="overdue_actions",
            message=(
                f"{actions.overdue} action {items} past the due date. Moving a date, or "
                "dropping what no longer fits, keeps the plan honest and the list short."
            ),
            data={"overdue": actions.overdue},
        )
    ]


def compute_insights(
    *,
    session: Session,
    user: User,
    date_from: date | None = None,
    date_to: date | None = None,
    today: date | None = None,
) -> InsightsRead:
    """The user's insights over rejections with `rejected_on` in [date_from, date_to].

    `today` is the user's local date (by default, now's); a caller that caches the answer
    passes the date it keys the cache with.
    """
    if date_from is not None and date_to is not None and date_from > date_to:
        raise Unprocessable("from must not be after to.", loc=["query", "from"])
    scope = _Scope(
        session=session,
        user=user,
        date_from=date_from,
        date_to=date_to,
        today=today if today is not None else local_today(user),
    )
    breakdown = _breakdown(scope)
    by_stage = breakdown.by_stage
    rejections = sum(by_stage.values())
    by_month, mood = _by_day(scope)
    skills = _skill_counts(scope)
    feedback_requests, feedback = _feedback(scope)
    actions = _actions(scope)
    suggestions: Sequence[Suggestion] = [
        *_unaddressed_weaknesses(scope, skills["weakness"]),
        *_stage_hotspot(by_stage),
        *_stalled_reflections(scope),
        *_ask_for_feedback(breakdown.feedback_not_asked),
        *_overdue_actions(actions),
    ]
    completed = breakdown.reflections_completed
    return InsightsRead(
        totals=Totals(
            rejections=rejections,
            reflections_completed=completed,
            feedback_requests=feedback_requests,
            action_items=actions.total,
        ),
        by_month=by_month,
        by_stage=by_stage,
        by_reason=breakdown.by_reason,
        by_decided_by=breakdown.by_decided_by,
        funnel=_funnel(by_stage),
        top_weaknesses=skills["weakness"][:TOP_SKILLS],
        top_strengths=skills["strength"][:TOP_SKILLS],
        feedback=feedback,
        mood=mood,
        reflection_completion_rate=_rate(completed, rejections),
        actions=actions,
        suggestions=list(suggestions),
    )
