from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response, status
from fastapi.security import OAuth2PasswordRequestForm

from api.accounts.service import user_read
from api.auth import service
from api.auth.dependencies import SettingsDep
from api.auth.schemas import RefreshRequest, RegisterRequest, TokenPair, UserRead
from api.db import SessionDep
from api.errors import Unauthorized
from api.http.responses import problems
from api.http.transaction import TransactionalRoute

router = APIRouter(prefix="/v1/auth", tags=["auth"], route_class=TransactionalRoute)


def client_address(request: Request) -> str:
    return request.client.host if request.client else "unknown"


@router.post(
    "/register",
    status_code=status.HTTP_201_CREATED,
    responses=problems(409, 422, 429),
)
def register(data: RegisterRequest, session: SessionDep) -> UserRead:
    """Create an account."""
    return user_read(service.register_user(session=session, data=data))


@router.post("/token", responses=problems(401, 422, 429))
def login(
    request: Request,
    form: Annotated[OAuth2PasswordRequestForm, Depends()],
    session: SessionDep,
    settings: SettingsDep,
) -> TokenPair:
    """Log in with e-mail (`username`) and password; returns an access and a refresh token."""
    limiter = request.app.state.rate_limiter
    email, address = form.username.strip().lower(), client_address(request)
    limiter.check_login(email=email, address=address)
    try:
        user = service.authenticate(session=session, email=email, password=form.password)
    except Unauthorized:
        limiter.record_failed_login(email=email, address=address)
        raise
    return service.issue_tokens(session=session, settings=settings, user=user)


@router.post("/refresh", responses=problems(401, 422))
def refresh(data: RefreshRequest, session: SessionDep, settings: SettingsDep) -> TokenPair:
    """Exchange a refresh token for a new pair; the old one stops working."""
    return service.rotate_refresh_token(
        session=session, settings=settings, refresh_token=data.refresh_token
    )


@router.post("/logout", status_code=status.HTTP_204_NO_CONTENT, responses=problems(422))
def logout(data: RefreshRequest, session: SessionDep) -> Response:
    """End the session that the refresh token belongs to."""
    service.logout(session=session, refresh_token=data.refresh_token)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
