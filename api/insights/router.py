from __future__ import annotations

from datetime import date
from typing import Annotated

from fastapi import APIRouter, Query, Request, Response
from sqlmodel import Session
from starlette.concurrency import run_in_threadpool

from api.auth.dependencies import CurrentUser
from api.db import SessionDep
from api.http.responses import problems
from api.http.transaction import TransactionalRoute
from api.insights.cache import cache_of
from api.insights.schemas import InsightsRead
from api.insights.service import compute_insights, local_today
from api.models import User
from api.rejections.schemas import IsoDate

router = APIRouter(prefix="/v1/insights", tags=["insights"], route_class=TransactionalRoute)


def _insights_json(
    session: Session, user: User, date_from: date | None, date_to: date | None, today: date
) -> bytes:
    insights = compute_insights(
        session=session, user=user, date_from=date_from, date_to=date_to, today=today
    )
    return insights.model_dump_json().encode()


@router.get("", response_model=InsightsRead, responses=problems(401, 422))
async def read_insights(
    request: Request,
    user: CurrentUser,
    session: SessionDep,
    date_from: Annotated[
        IsoDate | None, Query(alias="from", description="Only rejections on or after this date.")
    ] = None,
    date_to: Annotated[
        IsoDate | None, Query(alias="to", description="Only rejections on or before this date.")
    ] = None,
) -> Response:
    """Patterns across the user's rejections, reflections, feedback and actions."""
    # The user (with its change counter) was read before any insights query, so an answer
    # computed now is at least as new as the version it is cached under.
    cache = cache_of(request.app.state)
    today = local_today(user)
    slot, version = (user.id, date_from, date_to), (user.sync_seq, today)
    body = cache.get(slot, version)
    if body is None:
        # Tens of milliseconds for a large account: off the event loop, so other requests
        # go on meanwhile. The session is this request's alone; it only changes thread.
        body = await cache.compute_once(
            slot,
            version,
            lambda: run_in_threadpool(_insights_json, session, user, date_from, date_to, today),
        )
    return Response(content=body, media_type="application/json")
