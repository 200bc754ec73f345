from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Path, Request

from api.auth.dependencies import CurrentUser
from api.db import SessionDep
from api.feedback.service import get_feedback_request
from api.http.etag import check_if_match
from api.models.feedback import FeedbackRequest

FeedbackRequestId = Annotated[str, Path(max_length=36)]


def owned_feedback_request(
    request_id: FeedbackRequestId, user: CurrentUser, session: SessionDep
) -> FeedbackRequest:
    """The current user's live feedback request, or 404."""
    return get_feedback_request(session=session, owner=user, request_id=request_id)


def feedback_request_for_write(
    request_id: FeedbackRequestId, request: Request, user: CurrentUser, session: SessionDep
) -> FeedbackRequest:
    """The request locked for this transaction and checked against `If-Match`."""
    feedback_request = get_feedback_request(
        session=session, owner=user, request_id=request_id, lock=True
    )
    check_if_match(request, feedback_request)
    return feedback_request


OwnedFeedbackRequest = Annotated[FeedbackRequest, Depends(owned_feedback_request)]
FeedbackRequestForWrite = Annotated[FeedbackRequest, Depends(feedback_request_for_write)]
