"""Action plans and their items: writing them, the derived plan progress, and the agenda."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterable, Sequence
from datetime import date
from typing import Any

from sqlalchemy import ColumnElement, and_, func, or_, type_coerce
from sqlalchemy.dialects.postgresql import JSONB
from sqlmodel import Session, col, select

from api.action_plans.schemas import (
    ActionItemCreate,
    ActionItemRead,
    ActionItemUpdate,
    ActionPlanCreate,
    ActionPlanRead,
    ActionPlanUpdate,
)
from api.db import utcnow
from api.errors import NotFound, Unprocessable
from api.events import record_event
from api.http.pagination import paginate
from api.models import Rejection, User
from api.models.action_plan import ActionItem, ActionItemStatus, ActionPlan
from api.reflections.skills import normalise_skill
from api.sync.registry import register_sync_type

DONE = ActionItemStatus.done.value
DROPPED = ActionItemStatus.dropped.value


# --- plans ---------------------------------------------------------------------------


def get_plan(*, session: Session, owner: User, plan_id: str, lock: bool = False) -> ActionPlan:
    """The owner's live plan, or 404 (deleted and other users' plans alike)."""
    statement = select(ActionPlan).where(
        col(ActionPlan.id) == plan_id,
        col(ActionPlan.user_id) == owner.id,
        col(ActionPlan.deleted_at).is_(None),
    )
    plan = session.exec(statement.with_for_update() if lock else statement).first()
    if plan is None:
        raise NotFound("There is no action plan with this id.")
    return plan


def _checked_rejection_ids(session: Session, owner: User, ids: list[str]) -> list[str]:
    """The ids, each once, in the order given; 422 naming the first that is not the
    owner's live rejection."""
    unique = list(dict.fromkeys(ids))
    if not unique:
        return []
    live = set(
        session.exec(
            select(Rejection.id).where(
                col(Rejection.id).in_(unique),
                col(Rejection.user_id) == owner.id,
                col(Rejection.deleted_at).is_(None),
            )
        )
    )
    for position, rejection_id in enumerate(ids):
        if rejection_id not in live:
            raise Unprocessable(
                f"There is no rejection with id {rejection_id!r}.",
                loc=["body", "rejection_ids", position],
            )
    return unique


def _normalised_skills(skills: list[str]) -> list[str]:
    normalised: dict[str, None] = {}
    for position, skill in enumerate(skills):
        name = normalise_skill(skill)
        if not name:
            raise Unprocessable("A skill cannot be blank.", loc=["body", "skills", position])
        normalised.setdefault(name, None)
    return list(normalised)


def create_plan(*, session: Session, owner: User, data: ActionPlanCreate) -> ActionPlan:
    """A new plan, linked to the owner's rejections and to normalised skills."""
    plan = ActionPlan(
        user_id=owner.id,
        title=data.title,
        goal=data.goal,
        rejection_ids=_checked_rejection_ids(session, owner, data.rejection_ids),
        skills=_normalised_skills(data.skills),
    )
    session.add(plan)
    session.flush()
    return plan


def update_plan(
    *, session: Session, owner: User, plan: ActionPlan, data: ActionPlanUpdate
) -> ActionPlan:
    """Change the given fields of a plan."""
    changes = data.model_dump(exclude_unset=True)
    if "rejection_ids" in changes:
        changes["rejection_ids"] = _checked_rejection_ids(session, owner, changes["rejection_ids"])
    if "skills" in changes:
        changes["skills"] = _normalised_skills(changes["skills"])
    for name, value in changes.items():
        setattr(plan, name, value)
    session.add(plan)
    return plan


def delete_plan(*, session: Session, plan: ActionPlan) -> None:
    """Soft-delete the plan and its items: tombstones stay for devices to sync."""
    now = utcnow()
    plan.deleted_at = now
    session.add(plan)
    items = session.exec(
        select(ActionItem)
        .where(col(ActionItem.plan_id) == plan.id, col(ActionItem.deleted_at).is_(None))
        .with_for_update()
    )
    for item in items:
        item.deleted_at = now
        session.add(item)


def _json_list_contains(session: Session, column: Any, value: str) -> ColumnElement[bool]:
    if session.get_bind().dialect.name == "postgresql":
        return type_coerce(column, JSONB).contains([value])
    each = func.json_each(column).table_valued("value")
    return select(each.c.value).where(each.c.value == value).exists()


def list_plans(
    *,
    session: Session,
    owner: User,
    limit: int,
    cursor: str | None,
    rejection_id: str | None = None,
) -> tuple[list[ActionPlan], str | None]:
    """The owner's live plans, newest first; optionally those linked to one rejection."""
    statement = select(ActionPlan).where(
        col(ActionPlan.user_id) == owner.id, col(ActionPlan.deleted_at).is_(None)
    )
    if rejection_id is not None:
        statement = statement.where(
            _json_list_contains(session, ActionPlan.rejection_ids, rejection_id)
        )
    return paginate(session, statement, ActionPlan.id, limit=limit, cursor=cursor)


def rounded_mean(total: int, count: int) -> int:
    """`total / count` rounded half up, in integers (so 50.5 is 51 on every engine)."""
    return (2 * total + count) // (2 * count) if count else 0


def refresh_plan_progress(*, session: Session, plan: ActionPlan) -> None:
    """Recompute the plan's progress from its live, not dropped items.

    Callers hold the plan's row lock, so two writers of one plan's items take turns and
    the second sees the first one's item."""
    total, count = session.exec(
        select(func.coalesce(func.sum(ActionItem.progress), 0), func.count()).where(
            col(ActionItem.plan_id) == plan.id,
            col(ActionItem.deleted_at).is_(None),
            col(ActionItem.status) != DROPPED,
        )
    ).one()
    progress = rounded_mean(int(total), int(count))
    if plan.progress != progress:
        plan.progress = progress
        session.add(plan)


def plan_reads(session: Session, plans: Sequence[ActionPlan]) -> list[ActionPlanRead]:
    """The plans as the API shows them: links to rejections deleted since are left out."""
    linked = {rejection_id for plan in plans for rejection_id in plan.rejection_ids}
    live: set[str] = set()
    if linked:
        live = set(
            session.exec(
                select(Rejection.id).where(
                    col(Rejection.id).in_(linked), col(Rejection.deleted_at).is_(None)
                )
            )
        )
    return [
        ActionPlanRead.model_validate(
            plan,
            from_attributes=True,
        ).model_copy(update={"rejection_ids": [r for r in plan.rejection_ids if r in live]})
        for plan in plans
    ]


# --- items ---------------------------------------------------------------------------


def get_item(*, session: Session, owner: User, item_id: str, lock: bool = False) -> ActionItem:
    """The owner's live item, or 404."""
    statement = select(ActionItem).where(
        col(ActionItem.id) == item_id,
        col(ActionItem.user_id) == owner.id,
        col(ActionItem.deleted_at).is_(None),
    )
    item = session.exec(statement.with_for_update() if lock else statement).first()
    if item is None:
        raise NotFound("There is no action item with this id.")
    return item


def lock_item_and_plan(*, session: Session, owner: User, item_id: str) -> ActionItem:
    """The item locked for writing, its plan locked first (plan before item, always, so
    that deleting a plan and writing one of its items cannot deadlock)."""
    item = get_item(session=session, owner=owner, item_id=item_id)
    get_plan(session=session, owner=owner, plan_id=item.plan_id, lock=True)
    return get_item(session=session, owner=owner, item_id=item_id, lock=True)


def _done_means_complete(status: str, progress: int | None, given: bool) -> int | None:
    """A done item is 100% done; saying otherwise is a 422."""
    if status != DONE:
        return progress
    if given and progress != 100:
        raise Unprocessable("An item that is done has progress 100.", loc=["body", "progress"])
    return 100


def create_item(
    *, session: Session, owner: User, plan: ActionPlan, data: ActionItemCreate
) -> ActionItem:
    """A new item in the (locked) plan; the plan's progress follows."""
    progress = _done_means_complete(
        data.status.value, data.progress, given=data.progress is not None
    )
    item = ActionItem.model_validate(
        data.model_dump(mode="json", exclude={"progress", "due_on"}),
        update={
            "user_id": owner.id,
            "plan_id": plan.id,
            "due_on": data.due_on,
            "progress": progress if progress is not None else 0,
        },
    )
    session.add(item)
    session.flush()
    refresh_plan_progress(session=session, plan=plan)
    if item.status == DONE:
        record_event(session, type="action_item.completed", user_id=owner.id, subject_id=item.id)
    return item


def update_item(
    *, session: Session, owner: User, item: ActionItem, data: ActionItemUpdate
) -> ActionItem:
    """Change the given fields; moving to `done` sets progress 100 and tells subscribers."""
    changes = data.model_dump(mode="json", exclude_unset=True)
    if "due_on" in changes:
        changes["due_on"] = data.due_on
    old_plan_id, was_done = item.plan_id, item.status == DONE
    new_plan: ActionPlan | None = None
    if "plan_id" in changes and changes["plan_id"] != item.plan_id:
        try:
            new_plan = get_plan(session=session, owner=owner, plan_id=changes["plan_id"], lock=True)
        except NotFound:
            raise Unprocessable(
                f"There is no action plan with id {changes['plan_id']!r}.", loc=["body", "plan_id"]
            ) from None
    status = changes.get("status", item.status)
    progress = _done_means_complete(
        status, changes.get("progress", item.progress), given="progress" in changes
    )
    changes["progress"] = progress
    for name, value in changes.items():
        setattr(item, name, value)
    session.add(item)
    session.flush()
    refresh_plan_progress(
        session=session, plan=get_plan(session=session, owner=owner, plan_id=old_plan_id)
    )
    if new_plan is not None:
        refresh_plan_progress(session=session, plan=new_plan)
    if item.status == DONE and not was_done:
        record_event(session, type="action_item.completed", user_id=owner.id, subject_id=item.id)
    return item


def delete_item(*, session: Session, owner: User, item: ActionItem) -> None:
    """Soft-delete the item; its plan's progress follows."""
    item.deleted_at = utcnow()
    session.add(item)
    session.flush()
    refresh_plan_progress(
        session=session, plan=get_plan(session=session, owner=owner, plan_id=item.plan_id)
    )


def item_read(item: ActionItem) -> ActionItemRead:
    return ActionItemRead.model_validate(item, from_attributes=True)


def live_item_ids(*, session: Session, owner_id: str, ids: Iterable[str]) -> set[str]:
    """Which of `ids` are the owner's live action items (reflection step 6 links to them)."""
    wanted = set(ids)
    if not wanted:
        return set()
    return set(
        session.exec(
            select(ActionItem.id).where(
                col(ActionItem.id).in_(wanted),
                col(ActionItem.user_id) == owner_id,
                col(ActionItem.deleted_at).is_(None),
            )
        )
    )


# --- the agenda ----------------------------------------------------------------------
# Ordered by (due_on, id), undated items last. The cursor is the last row's key,
# "<due_on>|<id>" with an empty due_on for an undated row, so each page starts strictly
# after it in that order: correct while items are added, at any depth.


def _encode_agenda_cursor(item: ActionItem) -> str:
    key = f"{item.due_on.isoformat() if item.due_on else ''}|{item.id}"
    return base64.urlsafe_b64encode(key.encode()).decode().rstrip("=")


def _decode_agenda_cursor(cursor: str) -> tuple[date | None, str]:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        raw = base64.b64decode(padded.encode(), altchars=b"-_", validate=True).decode()
        due, item_id = raw.split("|", 1)
        due_on = date.fromisoformat(due) if due else None
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise Unprocessable(
            "The cursor is not one this API gave out.", loc=["query", "cursor"]
        ) from None
    if not item_id or not item_id.isprintable():
        raise Unprocessable("The cursor is not one this API gave out.", loc=["query", "cursor"])
    return due_on, item_id


def list_agenda(
    *,
    session: Session,
    owner: User,
    limit: int,
    cursor: str | None,
    statuses: list[ActionItemStatus] | None = None,
    due_before: date | None = None,
    plan_id: str | None = None,
) -> tuple[list[ActionItem], str | None]:
    """The owner's live items across plans, soonest due first, undated last."""
    due_on, item_id = col(ActionItem.due_on), col(ActionItem.id)
    statement = select(ActionItem).where(
        col(ActionItem.user_id) == owner.id, col(ActionItem.deleted_at).is_(None)
    )
    if statuses:
        statement = statement.where(col(ActionItem.status).in_([s.value for s in statuses]))
    if due_before is not None:
        statement = statement.where(due_on <= due_before)  # leaves undated items out
    if plan_id is not None:
        statement = statement.where(col(ActionItem.plan_id) == plan_id)
    if cursor is not None:
        after_due, after_id = _decode_agenda_cursor(cursor)
        if after_due is None:
            statement = statement.where(due_on.is_(None), item_id > after_id)
        else:
            statement = statement.where(
                or_(
                    due_on > after_due,
                    and_(due_on == after_due, item_id > after_id),
                    due_on.is_(None),
                )
            )
    statement = statement.order_by(due_on.is_(None), due_on, item_id).limit(limit + 1)
    rows = list(session.exec(statement))
    if len(rows) <= limit:
        return rows, None
    rows = rows[:limit]
    return rows, _encode_agenda_cursor(rows[-1])


# --- sync ----------------------------------------------------------------------------


def _serialize_plans(session: Session, plans: Sequence[Any]) -> list[dict[str, Any]]:
    return [read.model_dump(mode="json") for read in plan_reads(session, plans)]


def _serialize_items(_session: Session, items: Sequence[Any]) -> list[dict[str, Any]]:
    return [item_read(item).model_dump(mode="json") for item in items]


register_sync_type("action_plan", ActionPlan, _serialize_plans)
register_sync_type("action_item", ActionItem, _serialize_items)
