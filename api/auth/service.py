"""Accounts and sessions: registration, login, refresh-token rotation, logout."""

from __future__ import annotations

from sqlalchemy import ColumnElement, bindparam, exists, update
from sqlmodel import Session, col, select

from api.auth.schemas import RegisterRequest, TokenPair
from api.config import Settings
from api.db import new_id, utcnow
from api.errors import Conflict, Unauthorized
from api.models import Profile, RefreshToken, User
from api.security import (
    create_access_token,
    hash_password,
    hash_token,
    new_token,
    verify_password,
)


def find_user_by_email(*, session: Session, email: str) -> User | None:
    return session.exec(select(User).where(User.email == email.strip().lower())).first()


def register_user(*, session: Session, data: RegisterRequest) -> User:
    """Create an account and its empty profile."""
    password_hash = hash_password(data.password)  # hashed first: both outcomes cost the same
    if find_user_by_email(session=session, email=data.email) is not None:
        raise Conflict("An account with this e-mail address already exists.")
    user = User(
        email=data.email,
        password_hash=password_hash,
        display_name=data.display_name,
        timezone=data.timezone,
        locale=data.locale,
    )
    session.add(user)
    session.flush()  # the user row first: the profile refers to it
    session.add(Profile(user_id=user.id))
    session.flush()
    return user


def authenticate(*, session: Session, email: str, password: str) -> User:
    """The user with this e-mail and password; one answer for every kind of failure."""
    user = find_user_by_email(session=session, email=email)
    if not verify_password(password, user.password_hash if user else None) or user is None:
        raise Unauthorized("The e-mail address or the password is wrong.")
    return user


def issue_tokens(
    *, session: Session, settings: Settings, user: User, family_id: str | None = None
) -> TokenPair:
    """A new access token and a new refresh token (in `family_id`, or a new family)."""
    access_token, expires_in = create_access_token(
        settings, user_id=user.id, session_version=user.session_version
    )
    refresh_token = new_token("rbr_")
    session.add(
        RefreshToken(
            user_id=user.id,
            family_id=family_id or new_id(),
            token_hash=hash_token(refresh_token),
            expires_at=utcnow() + settings.refresh_token_ttl,
        )
    )
    return TokenPair(access_token=access_token, refresh_token=refresh_token, expires_in=expires_in)


def _revoke_family(session: Session, family_id: str) -> None:
    session.execute(
        update(RefreshToken)
        .where(col(RefreshToken.family_id) == family_id, col(RefreshToken.revoked_at).is_(None))
        .values(revoked_at=utcnow())
    )


def rotate_refresh_token(*, session: Session, settings: Settings, refresh_token: str) -> TokenPair:
    """Exchange a refresh token for a new pair; a replayed one revokes its whole family."""
    token = session.exec(
        select(RefreshToken)
        .where(RefreshToken.token_hash == hash_token(refresh_token))
        .with_for_update()
    ).first()
    if token is None or token.revoked_at is not None or token.expires_at <= utcnow():
        raise Unauthorized("The refresh token is not valid; log in again.")
    if token.used_at is not None:
        # Someone presented a token that was already exchanged: assume it was stolen.
        _revoke_family(session, token.family_id)
        raise Unauthorized(
            "This refresh token was already used; every session it belonged to is now closed.",
            keep_changes=True,
        )
    user = session.get(User, token.user_id)
    if user is None:
        raise Unauthorized("The refresh token is not valid; log in again.")
    token.used_at = utcnow()
    return issue_tokens(session=session, settings=settings, user=user, family_id=token.family_id)


def logout(*, session: Session, refresh_token: str) -> None:
    """End the session the refresh token belongs to; unknown tokens are ignored."""
    token = session.exec(
        select(RefreshToken).where(RefreshToken.token_hash == hash_token(refresh_token))
    ).first()
    if token is not None:
        _revoke_family(session, token.family_id)


def end_all_sessions(*, session: Session, user: User) -> None:
    """Every access token stops working and every refresh token is revoked."""
    user.session_version += 1
    session.execute(
        update(RefreshToken)
        .where(col(RefreshToken.user_id) == user.id, col(RefreshToken.revoked_at).is_(None))
        .values(revoked_at=utcnow())
    )


def session_is_open() -> ColumnElement[bool]:
    """SQL that is true while the sessions of the user `:user_id` have not been ended
    since a token of `:session_version` was issued: a read puts it in its own statement
    instead of checking in a statement of its own (`api.auth.dependencies.TokenClaims`)."""
    users = User.__table__  # type: ignore[attr-defined]
    return exists().where(
        users.c.id == bindparam("user_id"),
        users.c.session_version == bindparam("session_version"),
    )
