"""Organisations, their members, invites and API keys; and the grants users give them.

The client endpoints (what an organisation reads of its clients) are in clients.py.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Request, Response, status

from api.auth.dependencies import CurrentUser, SettingsDep
from api.db import SessionDep
from api.errors import Forbidden
from api.http.etag import check_if_match, set_etag
from api.http.pagination import Cursor, Limit, Page
from api.http.responses import problems
from api.http.transaction import TransactionalRoute
from api.models import ApiKey, Grant, Organisation, OrgInvite, OrgMember, User
from api.orgs import service
from api.orgs.clients import router as clients_router
from api.orgs.dependencies import OrgMemberActor, OrgMemberLogin, OrgOwner
from api.orgs.schemas import (
    AccessLogEntryRead,
    ApiKeyCreate,
    ApiKeyCreated,
    ApiKeyRead,
    GrantCreate,
    GrantRead,
    InviteCreate,
    InviteCreated,
    MemberRead,
    OrgCreate,
    OrgRead,
    Role,
)

router = APIRouter(route_class=TransactionalRoute)
orgs = APIRouter(prefix="/v1/orgs", tags=["organisations"], route_class=TransactionalRoute)
invites = APIRouter(prefix="/v1/invites", tags=["organisations"], route_class=TransactionalRoute)
grants = APIRouter(prefix="/v1/me/grants", tags=["grants"], route_class=TransactionalRoute)

MemberUserId = Annotated[str, Path(max_length=36)]
KeyId = Annotated[str, Path(max_length=36)]
GrantId = Annotated[str, Path(max_length=36)]
InviteToken = Annotated[str, Path(min_length=1, max_length=200)]


def org_read(org: Organisation, role: str | None) -> OrgRead:
    return OrgRead.model_validate({**org.model_dump(), "role": role})


def member_read(member: OrgMember, user: User) -> MemberRead:
    return MemberRead(
        id=member.id,
        org_id=member.org_id,
        user_id=member.user_id,
        role=Role(member.role),
        display_name=user.display_name,
        email=user.email,
        created_at=member.created_at,
        updated_at=member.updated_at,
    )


def invite_created(invite: OrgInvite, token: str) -> InviteCreated:
    return InviteCreated.model_validate({**invite.model_dump(), "token": token})


def api_key_read(key: ApiKey) -> ApiKeyRead:
    return ApiKeyRead.model_validate(key, from_attributes=True)


def grant_read(grant: Grant, org_name: str) -> GrantRead:
    return GrantRead.model_validate(
        {**grant.model_dump(), "org_name": org_name, "status": service.grant_status(grant)}
    )


# Organisations and members


@orgs.post("", status_code=status.HTTP_201_CREATED, responses=problems(401, 422))
def create_org(
    data: OrgCreate, user: CurrentUser, session: SessionDep, response: Response
) -> OrgRead:
    """Create an organisation; you become its owner."""
    org = service.create_org(session=session, creator=user, data=data)
    set_etag(response, org)
    response.headers["Location"] = f"/v1/orgs/{org.id}"
    return org_read(org, Role.owner.value)


@orgs.get("", responses=problems(401, 422))
def list_orgs(
    user: CurrentUser, session: SessionDep, limit: Limit = 20, cursor: Cursor = None
) -> Page[OrgRead]:
    """The organisations you are a member of."""
    rows, next_cursor = service.list_orgs_of(session=session, user=user, limit=limit, cursor=cursor)
    return Page(items=[org_read(org, role) for org, role in rows], next_cursor=next_cursor)


@orgs.get("/{org_id}", responses=problems(401, 404))
def read_org(actor: OrgMemberActor, response: Response) -> OrgRead:
    """One organisation, to its members and API keys."""
    set_etag(response, actor.org)
    return org_read(actor.org, actor.role)


@orgs.get("/{org_id}/members", responses=problems(401, 404, 422))
def list_members(
    actor: OrgMemberActor, session: SessionDep, limit: Limit = 20, cursor: Cursor = None
) -> Page[MemberRead]:
    """The organisation's owners and advisors."""
    rows, next_cursor = service.list_members(
        session=session, org=actor.org, limit=limit, cursor=cursor
    )
    return Page(items=[member_read(m, u) for m, u in rows], next_cursor=next_cursor)


@orgs.delete(
    "/{org_id}/members/{user_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=problems(401, 403, 404, 409),
)
def remove_member(user_id: MemberUserId, actor: OrgMemberLogin, session: SessionDep) -> Response:
    """Remove a member (owners), or leave the organisation yourself; never its last owner."""
    assert actor.user is not None
    if actor.role != Role.owner.value and user_id != actor.user.id:
        raise Forbidden("Only an owner may remove other members.")
    service.remove_member(session=session, org=actor.org, user_id=user_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@orgs.post(
    "/{org_id}/invites",
    status_code=status.HTTP_201_CREATED,
    responses=problems(401, 403, 404, 409, 422),
)
def create_invite(
    data: InviteCreate, actor: OrgOwner, session: SessionDep, settings: SettingsDep
) -> InviteCreated:
    """Invite someone by e-mail as an owner or advisor; the token is shown once and e-mailed."""
    assert actor.user is not None  # an owner is always a logged-in user
    invite, token = service.create_invite(
        session=session, settings=settings, org=actor.org, inviter=actor.user, data=data
    )
    return invite_created(invite, token)


@invites.post(
    "/{token}/accept", status_code=status.HTTP_201_CREATED, responses=problems(401, 404, 409, 410)
)
def accept_invite(token: InviteToken, user: CurrentUser, session: SessionDep) -> MemberRead:
    """Accept an invite sent to your e-mail address and join the organisation."""
    member = service.accept_invite(session=session, user=user, token=token)
    return member_read(member, user)


# API keys


@orgs.post(
    "/{org_id}/api-keys",
    status_code=status.HTTP_201_CREATED,
    responses=problems(401, 403, 404, 422),
)
def create_api_key(data: ApiKeyCreate, actor: OrgOwner, session: SessionDep) -> ApiKeyCreated:
    """Create an API key for the organisation; the `key` is shown only in this response."""
    assert actor.user is not None
    key, secret = service.create_api_key(
        session=session, org=actor.org, creator=actor.user, data=data
    )
    return ApiKeyCreated.model_validate({**key.model_dump(), "key": secret})


@orgs.get("/{org_id}/api-keys", responses=problems(401, 403, 404, 422))
def list_api_keys(
    actor: OrgOwner, session: SessionDep, limit: Limit = 20, cursor: Cursor = None
) -> Page[ApiKeyRead]:
    """The organisation's API keys (never their secrets), revoked ones included."""
    rows, next_cursor = service.list_api_keys(
        session=session, org=actor.org, limit=limit, cursor=cursor
    )
    return Page(items=[api_key_read(key) for key in rows], next_cursor=next_cursor)


@orgs.delete(
    "/{org_id}/api-keys/{key_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=problems(401, 403, 404),
)
def revoke_api_key(key_id: KeyId, actor: OrgOwner, session: SessionDep) -> Response:
    """Revoke an API key: requests with it are refused from now on."""
    service.revoke_api_key(session=session, org=actor.org, key_id=key_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


# Grants: what the user lets organisations read


@grants.post("", status_code=status.HTTP_201_CREATED, responses=problems(401, 422))
def create_grant(
    data: GrantCreate, user: CurrentUser, session: SessionDep, response: Response
) -> GrantRead:
    """Let an organisation read some of your data; replaces your grant to it in force."""
    grant = service.create_grant(session=session, owner=user, data=data)
    set_etag(response, grant)
    response.headers["Location"] = f"/v1/me/grants/{grant.id}"
    return grant_read(grant, service.org_names(session, [grant.org_id])[grant.org_id])


@grants.get("", responses=problems(401, 422))
def list_grants(
    user: CurrentUser, session: SessionDep, limit: Limit = 20, cursor: Cursor = None
) -> Page[GrantRead]:
    """Your grants, newest first, ended ones included."""
    rows, next_cursor = service.list_grants(session=session, owner=user, limit=limit, cursor=cursor)
    names = service.org_names(session, (grant.org_id for grant in rows))
    return Page(items=[grant_read(g, names[g.org_id]) for g in rows], next_cursor=next_cursor)


@grants.get("/{grant_id}", responses=problems(401, 404))
def read_grant(
    grant_id: GrantId, user: CurrentUser, session: SessionDep, response: Response
) -> GrantRead:
    """One of your grants."""
    grant = service.get_grant(session=session, owner=user, grant_id=grant_id)
    set_etag(response, grant)
    return grant_read(grant, service.org_names(session, [grant.org_id])[grant.org_id])


@grants.delete(
    "/{grant_id}", status_code=status.HTTP_204_NO_CONTENT, responses=problems(401, 404, 412)
)
def revoke_grant(
    grant_id: GrantId, request: Request, user: CurrentUser, session: SessionDep
) -> Response:
    """Revoke a grant: the organisation's next request is refused."""
    grant = service.get_grant(session=session, owner=user, grant_id=grant_id, lock=True)
    check_if_match(request, grant)
    service.revoke_grant(session=session, grant=grant)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@grants.get("/{grant_id}/access-log", responses=problems(401, 404, 422))
def list_access_log(
    grant_id: GrantId,
    user: CurrentUser,
    session: SessionDep,
    limit: Limit = 20,
    cursor: Cursor = None,
) -> Page[AccessLogEntryRead]:
    """Every read the organisation made under this grant, newest first."""
    grant = service.get_grant(session=session, owner=user, grant_id=grant_id)
    rows, next_cursor = service.list_access_log(
        session=session, grant=grant, limit=limit, cursor=cursor
    )
    items = [
        AccessLogEntryRead.model_validate(
            {**entry.model_dump(), "actor_type": entry.actor.partition(":")[0], "actor_name": name}
        )
        for entry, name in rows
    ]
    return Page(items=items, next_cursor=next_cursor)


router.include_router(orgs)
router.include_router(clients_router)
router.include_router(invites)
router.include_router(grants)
