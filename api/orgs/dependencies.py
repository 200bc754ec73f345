"""Who is asking on an organisation's behalf: a member logged in, or one of its API keys.

`OrgOwner` is an owner's own login (API keys never manage the organisation);
`OrgMemberActor` is any member's login or an API key of this organisation. An
organisation the caller is not part of does not exist for it: 404.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Annotated

from fastapi import Depends, Path, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy import update
from sqlmodel import Session, col, select

from api.auth.dependencies import (
    API_KEY_PREFIX,
    CurrentUser,
    access_claims,
    oauth2_scheme,
    signed_in_user,
)
from api.db import SessionDep, open_session, utcnow
from api.errors import Forbidden, NotFound, Unauthorized
from api.http.idempotency import check_idempotency
from api.http.transaction import SAFE_METHODS
from api.models import ApiKey, Organisation, OrgMember, User
from api.models.org import SCOPES
from api.security import hash_token

OrgId = Annotated[str, Path(max_length=36)]

# `last_used_at` is written at most this often per key: a busy integration must not turn
# every read into a write.
LAST_USED_RESOLUTION = timedelta(minutes=1)

# Documents the organisation API key in OpenAPI; the same header as a user's token.
api_key_scheme = HTTPBearer(
    scheme_name="OrgApiKey",
    description="An organisation's API key: `Authorization: Bearer rbk_…`.",
    auto_error=False,
)


@dataclass(frozen=True)
class OrgActor:
    org: Organisation
    principal: str  # "user:<id>" (a member logged in) or "api_key:<id>"
    user: User | None  # the member, when logged in
    api_key: ApiKey | None
    scopes: frozenset[str]  # the API key's scopes; all SCOPES for a logged-in member
    role: str | None = None  # the member's role, when logged in


def write_beside_read(request: Request, session: Session, write: Callable[[Session], None]) -> None:
    """Make a small write that must last even when the request only reads.

    A GET's transaction is never committed (api/http/transaction.py), so bookkeeping such
    as the access log and `last_used_at` goes in a short transaction of its own there; a
    write request (which already holds SQLite's write lock) writes in its own transaction.
    """
    if request.method not in SAFE_METHODS:
        write(session)
        return
    with open_session(request.app.state.engine) as side:
        write(side)
        side.commit()


def _org_of_member(session: Session, *, org_id: str, user: User) -> tuple[Organisation, str]:
    row = session.exec(
        select(Organisation, OrgMember.role)
        .join(OrgMember, col(OrgMember.org_id) == col(Organisation.id))
        .where(col(Organisation.id) == org_id, col(OrgMember.user_id) == user.id)
    ).first()
    if row is None:
        raise NotFound("There is no organisation with this id.")
    return row[0], row[1]


def _actor_of_api_key(request: Request, session: Session, *, org_id: str, secret: str) -> OrgActor:
    key = session.exec(select(ApiKey).where(col(ApiKey.key_hash) == hash_token(secret))).first()
    if key is None or key.revoked_at is not None:
        raise Unauthorized(
            "The API key is unknown or revoked.",
            headers={"WWW-Authenticate": 'Bearer realm="rebound", error="invalid_token"'},
        )
    if key.org_id != org_id:
        raise NotFound("There is no organisation with this id.")
    org = session.get(Organisation, org_id)
    if org is None:  # pragma: no cover - the key's row cascades with its organisation
        raise NotFound("There is no organisation with this id.")
    now = utcnow()
    if key.last_used_at is None or now - key.last_used_at >= LAST_USED_RESOLUTION:
        key_id = key.id

        def touch(target: Session) -> None:
            target.execute(update(ApiKey).where(col(ApiKey.id) == key_id).values(last_used_at=now))

        write_beside_read(request, session, touch)
    principal = f"api_key:{key.id}"
    request.state.principal = principal
    check_idempotency(request, session, principal=principal, user_id=None)
    return OrgActor(
        org=org,
        principal=principal,
        user=None,
        api_key=key,
        scopes=frozenset(key.scopes) & frozenset(SCOPES),
    )


async def _user_unless_api_key(
    request: Request,
    session: SessionDep,
    token: Annotated[str | None, Depends(oauth2_scheme)],
) -> User | None:
    """The logged-in user, or None when an API key is presented (checked elsewhere)."""
    if token and token.startswith(API_KEY_PREFIX):
        return None
    return signed_in_user(request, session, access_claims(request, token))


def _member_actor(session: Session, *, org_id: str, user: User) -> OrgActor:
    org, role = _org_of_member(session, org_id=org_id, user=user)
    return OrgActor(
        org=org,
        principal=f"user:{user.id}",
        user=user,
        api_key=None,
        scopes=frozenset(SCOPES),
        role=role,
    )


def require_org_member(
    org_id: OrgId,
    request: Request,
    session: SessionDep,
    user: Annotated[User | None, Depends(_user_unless_api_key)],
    token: Annotated[str | None, Depends(oauth2_scheme)],
    _api_key: Annotated[HTTPAuthorizationCredentials | None, Depends(api_key_scheme)],
) -> OrgActor:
    """A member of the organisation logged in, or one of its API keys; otherwise 401/404."""
    if user is None:
        assert token is not None  # None only for an API key
        return _actor_of_api_key(request, session, org_id=org_id, secret=token)
    return _member_actor(session, org_id=org_id, user=user)


def require_org_member_login(org_id: OrgId, session: SessionDep, user: CurrentUser) -> OrgActor:
    """A member of the organisation (owner or advisor) logged in; API keys are 401."""
    return _member_actor(session, org_id=org_id, user=user)


def require_org_owner(org_id: OrgId, session: SessionDep, user: CurrentUser) -> OrgActor:
    """An owner of the organisation, logged in: API keys are 401, advisors 403."""
    actor = _member_actor(session, org_id=org_id, user=user)
    if actor.role != "owner":
        raise Forbidden("Only an owner of the organisation may do this.")
    return actor


OrgOwner = Annotated[OrgActor, Depends(require_org_owner)]
OrgMemberActor = Annotated[OrgActor, Depends(require_org_member)]
OrgMemberLogin = Annotated[OrgActor, Depends(require_org_member_login)]
