from __future__ import annotations

from enum import Enum

from fastapi import APIRouter, Response, status

from api.auth.dependencies import CurrentUser, SettingsDep
from api.db import SessionDep
from api.feedback import service
from api.feedback.dependencies import FeedbackRequestForWrite, OwnedFeedbackRequest
from api.feedback.pages import router as pages_router
from api.feedback.schemas import (
    FeedbackEventPage,
    FeedbackRequestCreate,
    FeedbackRequestRead,
    FeedbackRequestUpdate,
    FeedbackResponseCreate,
)
from api.http.etag import set_etag
from api.http.pagination import Cursor, Limit, Page
from api.http.responses import problems
from api.http.transaction import TransactionalRoute
from api.models.feedback import FeedbackRequest, FeedbackStatus
from api.rejections.dependencies import OwnedRejection

# Tags per route: the recipient's pages, included below, have their own.
TAGS: list[str | Enum] = ["feedback requests"]
router = APIRouter(route_class=TransactionalRoute)
router.include_router(pages_router)


def _one(response: Response, feedback_request: FeedbackRequest) -> FeedbackRequestRead:
    set_etag(response, feedback_request)
    return FeedbackRequestRead.of(feedback_request)


@router.post(
    "/v1/rejections/{rejection_id}/feedback-requests",
    status_code=status.HTTP_201_CREATED,
    tags=TAGS,
    responses=problems(401, 404, 409, 422),
)
def create_feedback_request(
    data: FeedbackRequestCreate,
    rejection: OwnedRejection,
    user: CurrentUser,
    session: SessionDep,
    settings: SettingsDep,
    response: Response,
) -> FeedbackRequestRead:
    """Ask the employer for feedback on a rejection (scheduled, or a draft)."""
    feedback_request = service.create_feedback_request(
        session=session, settings=settings, owner=user, rejection=rejection, data=data
    )
    response.headers["Location"] = f"/v1/feedback-requests/{feedback_request.id}"
    return _one(response, feedback_request)


@router.get(
    "/v1/rejections/{rejection_id}/feedback-requests", tags=TAGS, responses=problems(401, 404, 422)
)
def list_rejection_feedback_requests(
    rejection: OwnedRejection,
    user: CurrentUser,
    session: SessionDep,
    limit: Limit = 20,
    cursor: Cursor = None,
    status: FeedbackStatus | None = None,
) -> Page[FeedbackRequestRead]:
    """The feedback requests of one rejection, newest first."""
    rows, next_cursor = service.list_feedback_requests(
        session=session,
        owner=user,
        limit=limit,
        cursor=cursor,
        status=status,
        rejection_id=rejection.id,
    )
    return Page(items=[FeedbackRequestRead.of(row) for row in rows], next_cursor=next_cursor)


@router.get("/v1/feedback-requests", tags=TAGS, responses=problems(401, 422))
def list_feedback_requests(
    user: CurrentUser,
    session: SessionDep,
    limit: Limit = 20,
    cursor: Cursor = None,
    status: FeedbackStatus | None = None,
) -> Page[FeedbackRequestRead]:
    """All the user's feedback requests, newest first, optionally of one status."""
    rows, next_cursor = service.list_feedback_requests(
        session=session, owner=user, limit=limit, cursor=cursor, status=status
    )
    return Page(items=[FeedbackRequestRead.of(row) for row in rows], next_cursor=next_cursor)


@router.get("/v1/feedback-requests/{request_id}", tags=TAGS, responses=problems(401, 404))
def read_feedback_request(
    feedback_request: OwnedFeedbackRequest, response: Response
) -> FeedbackRequestRead:
    """One feedback request."""
    return _one(response, feedback_request)


@router.patch(
    "/v1/feedback-requests/{request_id}", tags=TAGS, responses=problems(401, 404, 409, 412, 422)
)
def update_feedback_request(
    data: FeedbackRequestUpdate,
    feedback_request: FeedbackRequestForWrite,
    user: CurrentUser,
    session: SessionDep,
    settings: SettingsDep,
    response: Response,
) -> FeedbackRequestRead:
    """Change a request while it is a draft or scheduled."""
    feedback_request = service.update_feedback_request(
        session=session, settings=settings, owner=user, request=feedback_request, data=data
    )
    return _one(response, feedback_request)


@router.post(
    "/v1/feedback-requests/{request_id}/send", tags=TAGS, responses=problems(401, 404, 409, 412)
)
def send_feedback_request(
    feedback_request: FeedbackRequestForWrite,
    user: CurrentUser,
    session: SessionDep,
    response: Response,
) -> FeedbackRequestRead:
    """Send now: an e-mail goes out at once; for other channels, record that you sent it."""
    feedback_request = service.send_now(session=session, owner=user, request=feedback_request)
    return _one(response, feedback_request)


@router.post(
    "/v1/feedback-requests/{request_id}/cancel", tags=TAGS, responses=problems(401, 404, 409, 412)
)
def cancel_feedback_request(
    feedback_request: FeedbackRequestForWrite, session: SessionDep, response: Response
) -> FeedbackRequestRead:
    """Cancel a request: nothing more is sent."""
    feedback_request = service.cancel(session=session, request=feedback_request)
    return _one(response, feedback_request)


@router.post(
    "/v1/feedback-requests/{request_id}/responses",
    status_code=status.HTTP_201_CREATED,
    tags=TAGS,
    responses=problems(401, 404, 409, 412, 422),
)
def record_feedback_response(
    data: FeedbackResponseCreate,
    feedback_request: FeedbackRequestForWrite,
    session: SessionDep,
    response: Response,
) -> FeedbackRequestRead:
    """Record an answer you received another way; follow-ups stop."""
    feedback_request = service.record_answer(
        session=session, request=feedback_request, answer=data, via="user"
    )
    response.headers["Location"] = f"/v1/feedback-requests/{feedback_request.id}"
    return _one(response, feedback_request)


@router.get(
    "/v1/feedback-requests/{request_id}/events", tags=TAGS, responses=problems(401, 404, 422)
)
def list_feedback_request_events(
    feedback_request: OwnedFeedbackRequest,
    session: SessionDep,
    limit: Limit = 100,
    cursor: Cursor = None,
) -> FeedbackEventPage:
    """The request's timeline, oldest first."""
    items, next_cursor = service.list_events(
        session=session, request=feedback_request, limit=limit, cursor=cursor
    )
    return FeedbackEventPage(items=items, next_cursor=next_cursor)
