"""Who is asking: the current user, from a Bearer access token."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.security import OAuth2PasswordBearer
from sqlalchemy import bindparam, select
from sqlmodel import Session

from api.config import Settings
from api.db import fetch_all, request_session
from api.errors import Unauthorized
from api.http.idempotency import check_idempotency, check_idempotency_awaited
from api.models import User
from api.security import AccessClaims, decode_access_token

API_KEY_PREFIX = "rbk_"

oauth2_scheme = OAuth2PasswordBearer(tokenUrl="/v1/auth/token", auto_error=False)


async def get_settings_from_app(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


SettingsDep = Annotated[Settings, Depends(get_settings_from_app)]


INVALID_TOKEN = {"WWW-Authenticate": 'Bearer realm="rebound", error="invalid_token"'}


def access_claims(request: Request, token: str | None) -> AccessClaims:
    """The claims of the request's access token (signature, expiry and audience checked)."""
    if not token:
        raise Unauthorized("This endpoint needs a Bearer access token.")
    if token.startswith(API_KEY_PREFIX):
        raise Unauthorized(
            "API keys act for an organisation; this endpoint needs a user's access token."
        )
    claims = decode_access_token(request.app.state.settings, token)
    if claims is None:
        raise Unauthorized("The access token is invalid or expired.", headers=INVALID_TOKEN)
    return claims


def _signed_in(request: Request, session: Session, user_id: str) -> None:
    _note_user(request, user_id)
    check_idempotency(request, session, principal=f"user:{user_id}", user_id=user_id)


def _note_user(request: Request, user_id: str) -> None:
    request.state.user_id = user_id
    request.state.principal = f"user:{user_id}"


def session_ended() -> Unauthorized:
    return Unauthorized("The access token is no longer valid; log in again.", headers=INVALID_TOKEN)


def signed_in_user(request: Request, session: Session, claims: AccessClaims) -> User:
    """The token's user, whose sessions have not been ended since the token was issued."""
    user = session.get(User, claims.user_id)
    if user is None or user.session_version != claims.session_version:
        raise session_ended()
    _signed_in(request, session, user.id)
    return user


# The dependencies run on the event loop (a primary-key read and an advisory-lock try
# never wait), and each is one dependency of FastAPI's: the token comes from the scheme
# (which documents it in OpenAPI), the session from the request, and the rest are plain
# calls. Every nested dependency costs a hot read measurable time.


async def get_current_user(
    request: Request, token: Annotated[str | None, Depends(oauth2_scheme)]
) -> User:
    """The signed-in user."""
    return signed_in_user(request, request_session(request), access_claims(request, token))


# --- a read that checks the session in its own statement -------------------------------
#
# Checking the session costs a statement of its own, and on the hottest read that is a
# third of the request (on PostgreSQL, a round trip). Such a read takes `TokenClaims`
# instead of `CurrentUser`, puts `api.auth.service.session_is_open()` in the WHERE of
# its one statement, and then calls `signed_in_after_read`: rows under that condition
# prove the session open; no rows (nothing to list, or an ended session) mean a check of
# its own, which answers 401 when the session has ended.


async def get_token_claims(
    request: Request, token: Annotated[str | None, Depends(oauth2_scheme)]
) -> AccessClaims:
    """The access token's claims; the read checks its session (see above)."""
    return access_claims(request, token)


async def signed_in_after_read(request: Request, claims: AccessClaims, *, rows_found: bool) -> None:
    """Finish a `TokenClaims` read whose statement had `session_is_open()`."""
    if not rows_found:
        await _open_session_of(request, claims)
    _signed_in(request, request_session(request), claims.user_id)


async def signed_in_owner(request: Request, claims: AccessClaims) -> Any:
    """For a write that opens no session (`writes_on_driver`): the token's user, read in
    one awaited statement, with the time zone the rules need; its Idempotency-Key is
    checked. The write itself claims the user's row only while the session is still
    open (`api.db.insert_owned_rows`)."""
    owner = await _open_session_of(request, claims)
    _note_user(request, claims.user_id)
    await check_idempotency_awaited(
        request, principal=f"user:{claims.user_id}", user_id=claims.user_id
    )
    return owner


async def _open_session_of(request: Request, claims: AccessClaims) -> Any:
    """The user's row (session version, time zone) if the token's session is open."""
    found = await fetch_all(request, SIGNED_IN_USER, {"user_id": claims.user_id})
    if not found or found[0].session_version != claims.session_version:
        raise session_ended()
    return found[0]


_users = User.__table__  # type: ignore[attr-defined]
SIGNED_IN_USER = select(_users.c.session_version, _users.c.timezone).where(
    _users.c.id == bindparam("user_id")
)

CurrentUser = Annotated[User, Depends(get_current_user)]
TokenClaims = Annotated[AccessClaims, Depends(get_token_claims)]
