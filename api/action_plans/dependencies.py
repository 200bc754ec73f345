from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Path, Request

from api.action_plans.service import get_item, get_plan, lock_item_and_plan
from api.auth.dependencies import CurrentUser
from api.db import SessionDep
from api.http.etag import check_if_match
from api.models.action_plan import ActionItem, ActionPlan

PlanId = Annotated[str, Path(max_length=36)]
ItemId = Annotated[str, Path(max_length=36)]


def owned_plan(plan_id: PlanId, user: CurrentUser, session: SessionDep) -> ActionPlan:
    """The current user's live plan, or 404."""
    return get_plan(session=session, owner=user, plan_id=plan_id)


def plan_for_write(
    plan_id: PlanId, request: Request, user: CurrentUser, session: SessionDep
) -> ActionPlan:
    """The plan locked for this transaction and checked against `If-Match`."""
    plan = get_plan(session=session, owner=user, plan_id=plan_id, lock=True)
    check_if_match(request, plan)
    return plan


def owned_item(item_id: ItemId, user: CurrentUser, session: SessionDep) -> ActionItem:
    """The current user's live item, or 404."""
    return get_item(session=session, owner=user, item_id=item_id)


def item_for_write(
    item_id: ItemId, request: Request, user: CurrentUser, session: SessionDep
) -> ActionItem:
    """The item (and its plan) locked for this transaction, checked against `If-Match`."""
    item = lock_item_and_plan(session=session, owner=user, item_id=item_id)
    check_if_match(request, item)
    return item


OwnedPlan = Annotated[ActionPlan, Depends(owned_plan)]
PlanForWrite = Annotated[ActionPlan, Depends(plan_for_write)]
OwnedItem = Annotated[ActionItem, Depends(owned_item)]
ItemForWrite = Annotated[ActionItem, Depends(item_for_write)]
