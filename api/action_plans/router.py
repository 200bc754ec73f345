from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Response, status

from api.action_plans import calendar, service
from api.action_plans.dependencies import ItemForWrite, OwnedItem, OwnedPlan, PlanForWrite
from api.action_plans.schemas import (
    ActionItemCreate,
    ActionItemRead,
    ActionItemUpdate,
    ActionPlanCreate,
    ActionPlanRead,
    ActionPlanUpdate,
    CalendarFeedRead,
)
from api.auth.dependencies import CurrentUser, SettingsDep
from api.db import SessionDep
from api.http.etag import set_etag
from api.http.pagination import Cursor, Limit, Page
from api.http.responses import problems
from api.http.transaction import TransactionalRoute
from api.models.action_plan import ActionItemStatus, ActionPlan
from api.rejections.schemas import IsoDate

router = APIRouter(route_class=TransactionalRoute)


def _plan_read(session: SessionDep, plan: ActionPlan) -> ActionPlanRead:
    return service.plan_reads(session, [plan])[0]


# --- plans ---------------------------------------------------------------------------


@router.post(
    "/v1/action-plans",
    status_code=status.HTTP_201_CREATED,
    tags=["action plans"],
    responses=problems(401, 409, 422),
)
def create_action_plan(
    data: ActionPlanCreate, user: CurrentUser, session: SessionDep, response: Response
) -> ActionPlanRead:
    """Start an action plan, linked to rejections and weakness skills."""
    plan = service.create_plan(session=session, owner=user, data=data)
    set_etag(response, plan)
    response.headers["Location"] = f"/v1/action-plans/{plan.id}"
    return _plan_read(session, plan)


@router.get("/v1/action-plans", tags=["action plans"], responses=problems(401, 422))
def list_action_plans(
    user: CurrentUser,
    session: SessionDep,
    limit: Limit = 20,
    cursor: Cursor = None,
    rejection_id: Annotated[
        str | None, Query(max_length=36, description="Only plans linked to this rejection.")
    ] = None,
) -> Page[ActionPlanRead]:
    """The user's action plans, newest first."""
    rows, next_cursor = service.list_plans(
        session=session, owner=user, limit=limit, cursor=cursor, rejection_id=rejection_id
    )
    return Page(items=service.plan_reads(session, rows), next_cursor=next_cursor)


@router.get("/v1/action-plans/{plan_id}", tags=["action plans"], responses=problems(401, 404))
def read_action_plan(plan: OwnedPlan, session: SessionDep, response: Response) -> ActionPlanRead:
    """One action plan, with its progress."""
    set_etag(response, plan)
    return _plan_read(session, plan)


@router.patch(
    "/v1/action-plans/{plan_id}", tags=["action plans"], responses=problems(401, 404, 412, 422)
)
def update_action_plan(
    data: ActionPlanUpdate,
    plan: PlanForWrite,
    user: CurrentUser,
    session: SessionDep,
    response: Response,
) -> ActionPlanRead:
    """Change some fields of a plan (its progress follows its items)."""
    plan = service.update_plan(session=session, owner=user, plan=plan, data=data)
    set_etag(response, plan)
    return _plan_read(session, plan)


@router.delete(
    "/v1/action-plans/{plan_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    tags=["action plans"],
    responses=problems(401, 404, 412),
)
def delete_action_plan(plan: PlanForWrite, session: SessionDep) -> Response:
    """Delete a plan and its items."""
    service.delete_plan(session=session, plan=plan)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


# --- items ---------------------------------------------------------------------------


@router.post(
    "/v1/action-plans/{plan_id}/items",
    status_code=status.HTTP_201_CREATED,
    tags=["action items"],
    responses=problems(401, 404, 409, 412, 422),
)
def create_action_item(
    data: ActionItemCreate,
    plan: PlanForWrite,
    user: CurrentUser,
    session: SessionDep,
    response: Response,
) -> ActionItemRead:
    """Add an item to a plan."""
    item = service.create_item(session=session, owner=user, plan=plan, data=data)
    set_etag(response, item)
    response.headers["Location"] = f"/v1/action-items/{item.id}"
    return service.item_read(item)


@router.get("/v1/action-items", tags=["action items"], responses=problems(401, 422))
def list_action_items(
    user: CurrentUser,
    session: SessionDep,
    limit: Limit = 20,
    cursor: Cursor = None,
    status: Annotated[
        list[ActionItemStatus] | None,
        Query(description="Only items with this status; repeat for several."),
    ] = None,
    due_before: Annotated[
        IsoDate | None,
        Query(description="Only items due on or before this date (undated items left out)."),
    ] = None,
    plan_id: Annotated[str | None, Query(max_length=36, description="Only this plan's items.")] = (
        None
    ),
) -> Page[ActionItemRead]:
    """The agenda: the user's items across plans, soonest due first, undated last."""
    rows, next_cursor = service.list_agenda(
        session=session,
        owner=user,
        limit=limit,
        cursor=cursor,
        statuses=status,
        due_before=due_before,
        plan_id=plan_id,
    )
    return Page(items=[service.item_read(row) for row in rows], next_cursor=next_cursor)


@router.get("/v1/action-items/{item_id}", tags=["action items"], responses=problems(401, 404))
def read_action_item(item: OwnedItem, response: Response) -> ActionItemRead:
    """One action item."""
    set_etag(response, item)
    return service.item_read(item)


@router.patch(
    "/v1/action-items/{item_id}", tags=["action items"], responses=problems(401, 404, 412, 422)
)
def update_action_item(
    data: ActionItemUpdate,
    item: ItemForWrite,
    user: CurrentUser,
    session: SessionDep,
    response: Response,
) -> ActionItemRead:
    """Change some fields of an item; `done` means progress 100."""
    item = service.update_item(session=session, owner=user, item=item, data=data)
    set_etag(response, item)
    return service.item_read(item)


@router.delete(
    "/v1/action-items/{item_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    tags=["action items"],
    responses=problems(401, 404, 412),
)
def delete_action_item(item: ItemForWrite, user: CurrentUser, session: SessionDep) -> Response:
    """Delete an item."""
    service.delete_item(session=session, owner=user, item=item)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


# --- the calendar feed ---------------------------------------------------------------


@router.post(
    "/v1/me/calendar-feed",
    status_code=status.HTTP_201_CREATED,
    tags=["calendar"],
    responses=problems(401, 409, 422),
)
def create_calendar_feed(
    user: CurrentUser, session: SessionDep, settings: SettingsDep
) -> CalendarFeedRead:
    """A new address for the user's calendar feed; the previous address stops working."""
    token = calendar.rotate_feed(session=session, user=user)
    return CalendarFeedRead(url=calendar.feed_url(settings, token))


@router.delete(
    "/v1/me/calendar-feed",
    status_code=status.HTTP_204_NO_CONTENT,
    tags=["calendar"],
    responses=problems(401),
)
def delete_calendar_feed(user: CurrentUser, session: SessionDep) -> Response:
    """Turn the calendar feed off; its address stops working."""
    calendar.revoke_feed(session=session, user=user)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get(
    "/v1/calendar/{token}.ics",
    tags=["calendar"],
    response_class=Response,
    responses={
        200: {"content": {"text/calendar": {}}, "description": "The iCalendar feed."},
        **problems(404),
    },
)
def read_calendar_feed(
    token: Annotated[str, Path(description="The token from `POST /v1/me/calendar-feed`.")],
    session: SessionDep,
) -> Response:
    """The user's open, dated action items as an iCalendar feed (no login: the address is
    the key)."""
    owner = calendar.feed_owner(session=session, token=token)
    return Response(
        content=calendar.render_feed(session=session, user=owner),
        media_type="text/calendar; charset=utf-8",
        headers={
            "Content-Disposition": 'inline; filename="rebound-actions.ics"',
            "Cache-Control": "private, max-age=300",
        },
    )
