"""`GET /v1/sync`: what changed since a cursor, as the spec's sync page."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from api.auth.dependencies import CurrentUser
from api.db import SessionDep
from api.http.responses import problems
from api.http.transaction import TransactionalRoute
from api.sync import service
from api.sync.schemas import SyncPage

router = APIRouter(prefix="/v1/sync", tags=["sync"], route_class=TransactionalRoute)


@router.get("", responses=problems(401, 422))
def sync(
    user: CurrentUser,
    session: SessionDep,
    since: Annotated[
        str | None,
        Query(
            max_length=20,
            description="`next_cursor` of the previous page; none to start from the beginning.",
        ),
    ] = None,
    limit: Annotated[int, Query(ge=1, le=500, description="Changes per page (1-500).")] = 100,
) -> SyncPage:
    """Everything that changed since a cursor: objects in full, ids of deleted ones."""
    return service.sync_page(
        session=session, owner=user, since=service.parse_cursor(since), limit=limit
    )
