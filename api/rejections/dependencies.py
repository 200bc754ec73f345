from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Path, Request

from api.auth.dependencies import CurrentUser
from api.db import SessionDep
from api.http.etag import check_if_match
from api.models import Rejection
from api.rejections.service import get_rejection

RejectionId = Annotated[str, Path(max_length=36)]


async def owned_rejection(
    rejection_id: RejectionId, user: CurrentUser, session: SessionDep
) -> Rejection:
    """The current user's live rejection, or 404 (a plain read: it runs on the event loop)."""
    return get_rejection(session=session, owner=user, rejection_id=rejection_id)


def rejection_for_write(
    rejection_id: RejectionId, request: Request, user: CurrentUser, session: SessionDep
) -> Rejection:
    """The rejection locked for this transaction and checked against `If-Match`."""
    rejection = get_rejection(session=session, owner=user, rejection_id=rejection_id, lock=True)
    check_if_match(request, rejection)
    return rejection


OwnedRejection = Annotated[Rejection, Depends(owned_rejection)]
RejectionForWrite = Annotated[Rejection, Depends(rejection_for_write)]
