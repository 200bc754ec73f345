"""Who is asking: the current user, from a Bearer access token."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import OAuth2PasswordBearer

from api.config import Settings
from api.db import SessionDep
from api.errors import Unauthorized
from api.http.idempotency import check_idempotency
from api.models import User
from api.security import decode_access_token

API_KEY_PREFIX = "rbk_"

oauth2_scheme = OAuth2PasswordBearer(tokenUrl="/v1/auth/token", auto_error=False)


async def get_settings_from_app(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


SettingsDep = Annotated[Settings, Depends(get_settings_from_app)]


async def get_current_user(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    token: Annotated[str | None, Depends(oauth2_scheme)],
) -> User:
    if not token:
        raise Unauthorized("This endpoint needs a Bearer access token.")
    if token.startswith(API_KEY_PREFIX):
        raise Unauthorized(
            "API keys act for an organisation; this endpoint needs a user's access token."
        )
    # Runs on the event loop: a primary-key read and an advisory-lock try never wait.
    claims = decode_access_token(settings, token)
    if claims is None:
        raise Unauthorized(
            "The access token is invalid or expired.",
            headers={"WWW-Authenticate": 'Bearer realm="rebound", error="invalid_token"'},
        )
    user = session.get(User, claims.user_id)
    if user is None or user.session_version != claims.session_version:
        raise Unauthorized(
            "The access token is no longer valid; log in again.",
            headers={"WWW-Authenticate": 'Bearer realm="rebound", error="invalid_token"'},
        )
    request.state.user_id = user.id
    request.state.principal = f"user:{user.id}"
    check_idempotency(request, session, principal=f"user:{user.id}", user_id=user.id)
    return user


CurrentUser = Annotated[User, Depends(get_current_user)]
