from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from api.auth.dependencies import CurrentUser
from api.db import SessionDep
from api.http.responses import problems
from api.http.transaction import TransactionalRoute
from api.insights.schemas import InsightsRead
from api.insights.service import compute_insights
from api.rejections.schemas import IsoDate

router = APIRouter(prefix="/v1/insights", tags=["insights"], route_class=TransactionalRoute)


@router.get("", responses=problems(401, 422))
def read_insights(
    user: CurrentUser,
    session: SessionDep,
    date_from: Annotated[
        IsoDate | None, Query(alias="from", description="Only rejections on or after this date.")
    ] = None,
    date_to: Annotated[
        IsoDate | None, Query(alias="to", description="Only rejections on or before this date.")
    ] = None,
) -> InsightsRead:
    """Patterns across the user's rejections, reflections, feedback and actions."""
    return compute_insights(session=session, user=user, date_from=date_from, date_to=date_to)
