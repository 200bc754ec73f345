from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Request, Response, status

from api.auth.dependencies import (
    CurrentUser,
    TokenClaims,
    session_ended,
    signed_in_after_read,
    signed_in_owner,
)
from api.db import SessionDep, request_session
from api.http.etag import etag_for, set_etag
from api.http.pagination import Page, page_response
from api.http.query import QueryModel, query_parameters
from api.http.responses import json_response, problems
from api.http.transaction import TransactionalRoute, insert_with_response, writes_on_driver
from api.models import Rejection
from api.rejections import service
from api.rejections.dependencies import OwnedRejection, RejectionForWrite
from api.rejections.schemas import (
    RejectionCreate,
    RejectionFilters,
    RejectionRead,
    RejectionUpdate,
)

router = APIRouter(prefix="/v1/rejections", tags=["rejections"], route_class=TransactionalRoute)


def rejection_read(rejection: Rejection) -> RejectionRead:
    return RejectionRead.model_validate(rejection, from_attributes=True)


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=RejectionRead,
    responses=problems(401, 409, 422),
)
@writes_on_driver
async def create_rejection(
    request: Request, claims: TokenClaims, data: RejectionCreate
) -> Response:
    """Log a rejection; its reflection is created with it."""
    # The busiest write opens no session: one awaited read of the user, the rules in
    # Python, then one transaction on the driver (api/http/transaction.py).
    owner = await signed_in_owner(request, claims)
    new = service.new_rejection(owner_id=claims.user_id, timezone=owner.timezone, data=data)
    response = json_response(
        new.read,
        status_code=status.HTTP_201_CREATED,
        headers={"ETag": etag_for(1), "Location": f"/v1/rejections/{new.read.id}"},
    )
    written = await insert_with_response(
        request,
        response,
        user_id=claims.user_id,
        session_version=claims.session_version,
        rows=new.rows,
    )
    if not written:  # the session ended after the read above
        raise session_ended()
    return response


@router.get(
    "",
    response_model=Page[RejectionRead],
    responses=problems(401, 422),
    openapi_extra=query_parameters(RejectionFilters),
)
async def list_rejections(
    request: Request,
    claims: TokenClaims,
    filters: Annotated[RejectionFilters, QueryModel(RejectionFilters)],
) -> Response:
    """The user's rejections, newest first, with filters."""
    # The hottest read: its one statement also checks the token's session, and is awaited
    # where the database is remote (api.db.fetch_all).
    page = service.list_rejections(
        session=request_session(request),
        owner_id=claims.user_id,
        filters=filters,
        session_version=claims.session_version,
    )
    rows, next_cursor = await page.fetch(request)
    await signed_in_after_read(request, claims, rows_found=bool(rows))
    return page_response(rows, next_cursor)


@router.get("/{rejection_id}", responses=problems(401, 404))
def read_rejection(rejection: OwnedRejection, response: Response) -> RejectionRead:
    """One rejection."""
    set_etag(response, rejection)
    return rejection_read(rejection)


@router.patch("/{rejection_id}", responses=problems(401, 404, 412, 422))
def update_rejection(
    data: RejectionUpdate,
    rejection: RejectionForWrite,
    user: CurrentUser,
    session: SessionDep,
    response: Response,
) -> RejectionRead:
    """Change some fields of a rejection."""
    rejection = service.update_rejection(
        session=session, owner=user, rejection=rejection, data=data
    )
    set_etag(response, rejection)
    return rejection_read(rejection)


@router.delete(
    "/{rejection_id}", status_code=status.HTTP_204_NO_CONTENT, responses=problems(401, 404, 412)
)
def delete_rejection(rejection: RejectionForWrite, session: SessionDep) -> Response:
    """Delete a rejection (its reflection goes with it)."""
    service.delete_rejection(session=session, rejection=rejection)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
