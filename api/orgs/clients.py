"""What an organisation reads of its clients: exactly what each client's grant allows.

Members (logged in) and API keys alike. The scopes that count are the API key's scopes
within the client's grant (a member's login carries every scope, so the grant's). A
client without a grant in force, and anything its grant does not cover, is 404: an
organisation cannot tell what it may not see from what does not exist. Each successful
read is written to the client's access log.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import date
from typing import Annotated, ParamSpec, TypeVar

from fastapi import APIRouter, Depends, Path, Query, Request, Response
from pydantic import Field
from sqlmodel import Session, col, select
from starlette.concurrency import run_in_threadpool

from api.action_plans import service as action_plans
from api.action_plans.schemas import ActionItemRead, ActionPlanRead
from api.db import SessionDep
from api.errors import NotFound
from api.feedback import service as feedback
from api.feedback.schemas import FeedbackRequestRead
from api.http.pagination import Cursor, Limit, Page, page_response
from api.http.responses import problems
from api.http.transaction import TransactionalRoute
from api.insights import service as insights
from api.insights.schemas import InsightsRead
from api.models import Grant, User
from api.models.action_plan import ActionItem
from api.models.feedback import FeedbackStatus
from api.models.rejection import ReasonCode, Stage
from api.orgs import service
from api.orgs.dependencies import OrgActor, OrgMemberActor, write_beside_read
from api.orgs.schemas import ClientRead
from api.reflections import service as reflections
from api.reflections.schemas import ReflectionRead
from api.rejections import service as rejections
from api.rejections.router import rejection_read
from api.rejections.schemas import RejectionFilters, RejectionRead

router = APIRouter(
    prefix="/v1/orgs/{org_id}/clients", tags=["clients"], route_class=TransactionalRoute
)

ClientUserId = Annotated[str, Path(max_length=36)]
ItemId = Annotated[str, Path(max_length=36)]
P = ParamSpec("P")
R = TypeVar("R")
NOT_SHARED = "There is nothing here that this client shares with your organisation."


@dataclass(frozen=True)
class ClientAccess:
    """A client of the organisation and what the caller may read of it."""

    actor: OrgActor
    grant: Grant
    client: User
    scopes: frozenset[str]
    request: Request
    session: Session

    def need(self, scope: str) -> None:
        if scope not in self.scopes:
            raise NotFound(NOT_SHARED)

    def log_read(self, scope: str) -> None:
        """Write the read to the client's access log; it stays even though a GET
        commits nothing."""
        request = self.request
        record = service.AccessRecord(
            grant_id=self.grant.id,
            user_id=self.client.id,
            org_id=self.actor.org.id,
            actor=self.actor.principal,
            method=request.method,
            path=request.url.path,
            scope=scope,
        )
        write_beside_read(
            request, self.session, lambda target: service.write_access_log(target, record)
        )


def client_access(
    user_id: ClientUserId, actor: OrgMemberActor, request: Request, session: SessionDep
) -> ClientAccess:
    """The client with a grant in force to the caller's organisation, or 404."""
    grant = service.active_grant(session=session, org_id=actor.org.id, user_id=user_id)
    client = session.get(User, user_id) if grant is not None else None
    if grant is None or client is None:
        raise NotFound(NOT_SHARED)
    return ClientAccess(
        actor=actor,
        grant=grant,
        client=client,
        scopes=actor.scopes & frozenset(grant.scopes),
        request=request,
        session=session,
    )


Client = Annotated[ClientAccess, Depends(client_access)]


def client_read(grant: Grant, user: User, actor: OrgActor) -> ClientRead:
    granted = [scope for scope in grant.scopes if scope in actor.scopes]
    return ClientRead.model_validate(
        {
            "id": user.id,
            "display_name": user.display_name,
            "email": user.email,
            "grant_id": grant.id,
            "scopes": grant.scopes,
            "readable_scopes": granted,
            "granted_at": grant.created_at,
            "expires_at": grant.expires_at,
        }
    )


@router.get("", responses=problems(401, 404, 422))
def list_clients(
    actor: OrgMemberActor, session: SessionDep, limit: Limit = 20, cursor: Cursor = None
) -> Page[ClientRead]:
    """The users whose grant to the organisation is in force, newest grant first."""
    rows, next_cursor = service.list_clients(
        session=session, org=actor.org, limit=limit, cursor=cursor
    )
    return Page(
        items=[client_read(grant, user, actor) for grant, user in rows], next_cursor=next_cursor
    )


def scoped_read(scope: str) -> Callable[[Callable[P, R]], Callable[P, Awaitable[R]]]:
    """Make a client endpoint: refuse without `scope` (404), run the read, then log it.

    The endpoint must take `access: Client`.
    It runs on the thread pool (not inline like other reads) because the access log is a
    write, which may wait for SQLite's write lock.
    """

    def decorate(read: Callable[P, R]) -> Callable[P, Awaitable[R]]:
        @functools.wraps(read)
        async def endpoint(*args: P.args, **kwargs: P.kwargs) -> R:
            access = kwargs["access"]
            assert isinstance(access, ClientAccess)
            access.need(scope)
            result = await run_in_threadpool(read, *args, **kwargs)
            await run_in_threadpool(access.log_read, scope)
            return result

        return endpoint

    return decorate


@router.get(
    "/{user_id}/rejections", response_model=Page[RejectionRead], responses=problems(401, 404, 422)
)
@scoped_read("rejections:read")
def list_client_rejections(
    access: Client,
    session: SessionDep,
    limit: Limit = 20,
    cursor: Cursor = None,
    stage: Stage | None = None,
    reason_code: ReasonCode | None = None,
    rejected_from: date | None = None,
    rejected_to: date | None = None,
) -> Response:
    """A client's rejections, newest first (scope `rejections:read`)."""
    filters = RejectionFilters(
        limit=limit,
        cursor=cursor,
        stage=stage,
        reason_code=reason_code,
        rejected_from=rejected_from,
        rejected_to=rejected_to,
    )
    page = rejections.list_rejections(session=session, owner_id=access.client.id, filters=filters)
    rows, next_cursor = page.run(session)
    return page_response(rows, next_cursor)


@router.get("/{user_id}/rejections/{rejection_id}", responses=problems(401, 404))
@scoped_read("rejections:read")
def read_client_rejection(
    rejection_id: ItemId, access: Client, session: SessionDep
) -> RejectionRead:
    """One of a client's rejections (scope `rejections:read`)."""
    rejection = rejections.get_rejection(
        session=session, owner=access.client, rejection_id=rejection_id
    )
    return rejection_read(rejection)


@router.get("/{user_id}/rejections/{rejection_id}/reflection", responses=problems(401, 404))
@scoped_read("reflections:read")
def read_client_reflection(
    rejection_id: ItemId, access: Client, session: SessionDep
) -> ReflectionRead:
    """The reflection on one of a client's rejections (scope `reflections:read`); the
    journal text only with `journal:read` too."""
    rejection = rejections.get_rejection(
        session=session, owner=access.client, rejection_id=rejection_id
    )
    reflection = reflections.get_reflection(session=session, rejection=rejection)
    read = reflections.reflection_read(session=session, reflection=reflection)
    return read if "journal:read" in access.scopes else reflections.strip_journal(read)


@router.get("/{user_id}/feedback-requests", responses=problems(401, 404, 422))
@scoped_read("feedback:read")
def list_client_feedback_requests(
    access: Client,
    session: SessionDep,
    limit: Limit = 20,
    cursor: Cursor = None,
    status: FeedbackStatus | None = None,
    rejection_id: Annotated[str | None, Query(max_length=36)] = None,
) -> Page[FeedbackRequestRead]:
    """A client's feedback requests, newest first (scope `feedback:read`)."""
    rows, next_cursor = feedback.list_feedback_requests(
        session=session,
        owner=access.client,
        limit=limit,
        cursor=cursor,
        status=status,
        rejection_id=rejection_id,
    )
    return Page(items=[FeedbackRequestRead.of(row) for row in rows], next_cursor=next_cursor)


class ClientActionPlanRead(ActionPlanRead):
    items: list[ActionItemRead] = Field(description="The plan's items, oldest first.")


@router.get("/{user_id}/action-plans", responses=problems(401, 404, 422))
@scoped_read("actions:read")
def list_client_action_plans(
    access: Client, session: SessionDep, limit: Limit = 20, cursor: Cursor = None
) -> Page[ClientActionPlanRead]:
    """A client's action plans with their items, newest plan first (scope `actions:read`)."""
    plans, next_cursor = action_plans.list_plans(
        session=session, owner=access.client, limit=limit, cursor=cursor
    )
    items: dict[str, list[ActionItemRead]] = {plan.id: [] for plan in plans}
    if plans:
        for item in session.exec(
            select(ActionItem)
            .where(
                col(ActionItem.user_id) == access.client.id,
                col(ActionItem.plan_id).in_(list(items)),
                col(ActionItem.deleted_at).is_(None),
            )
            .order_by(col(ActionItem.id))
        ):
            items[item.plan_id].append(action_plans.item_read(item))
    return Page(
        items=[
            ClientActionPlanRead.model_validate({**read.model_dump(), "items": items[read.id]})
            for read in action_plans.plan_reads(session, plans)
        ],
        next_cursor=next_cursor,
    )


@router.get("/{user_id}/insights", responses=problems(401, 404, 422))
@scoped_read("insights:read")
def read_client_insights(
    access: Client,
    session: SessionDep,
    date_from: Annotated[
        date | None, Query(alias="from", description="Only rejections on or after this date.")
    ] = None,
    date_to: Annotated[
        date | None, Query(alias="to", description="Only rejections on or before this date.")
    ] = None,
) -> InsightsRead:
    """A client's insights, as `GET /v1/insights` computes them (scope `insights:read`)."""
    return insights.compute_insights(
        session=session, user=access.client, date_from=date_from, date_to=date_to
    )
