from __future__ import annotations

import orjson
from fastapi import APIRouter, Request, Response, status
from starlette.concurrency import run_in_threadpool

from api.accounts import service
from api.accounts.export import ExportDocument, export_user
from api.accounts.schemas import ProfileRead, ProfileWrite, UserRead, UserUpdate
from api.auth.dependencies import CurrentUser
from api.db import SessionDep, utcnow
from api.http.etag import check_if_match, lock_for_write, set_etag
from api.http.responses import problems
from api.http.transaction import TransactionalRoute

router = APIRouter(prefix="/v1/me", tags=["me"], route_class=TransactionalRoute)


@router.get("", responses=problems(401))
def read_me(user: CurrentUser, response: Response) -> UserRead:
    """The signed-in user."""
    set_etag(response, user)
    return service.user_read(user)


@router.patch("", responses=problems(401, 409, 412, 422))
def update_me(
    data: UserUpdate, user: CurrentUser, session: SessionDep, request: Request, response: Response
) -> UserRead:
    """Change the user's details; changing the password ends every other session."""
    lock_for_write(session, user)
    check_if_match(request, user)
    user = service.update_user(session=session, user=user, data=data)
    set_etag(response, user)
    return service.user_read(user)


@router.delete("", status_code=status.HTTP_204_NO_CONTENT, responses=problems(401, 412))
def delete_me(user: CurrentUser, session: SessionDep, request: Request) -> Response:
    """Erase the account and everything it owns."""
    lock_for_write(session, user)
    check_if_match(request, user)
    service.delete_user(session=session, user=user)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/export", response_model=ExportDocument, responses=problems(401))
async def export_me(user: CurrentUser, session: SessionDep) -> Response:
    """Everything the user owns, as one JSON document to keep or take elsewhere."""
    # Possibly large: built on the thread pool, not on the event loop.
    document = await run_in_threadpool(export_user, session=session, user=user)
    filename = f"rebound-export-{utcnow().date().isoformat()}.json"
    return Response(
        orjson.dumps(document),
        media_type="application/json",
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )


@router.get("/profile", responses=problems(401))
def read_profile(user: CurrentUser, session: SessionDep, response: Response) -> ProfileRead:
    """Long-term goals, values and target roles."""
    profile = service.get_profile(session=session, user=user)
    set_etag(response, profile)
    return service.profile_read(profile)


@router.put("/profile", responses=problems(401, 412, 422))
def replace_profile(
    data: ProfileWrite,
    user: CurrentUser,
    session: SessionDep,
    request: Request,
    response: Response,
) -> ProfileRead:
    """Replace goals, values and target roles."""
    profile = service.get_profile(session=session, user=user, lock=True)
    check_if_match(request, profile)
    profile = service.replace_profile(session=session, profile=profile, data=data)
    set_etag(response, profile)
    return service.profile_read(profile)
