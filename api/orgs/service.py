"""Organisations: members and invites, API keys, the grants users give them, and the
log of every read an organisation makes of a user's data."""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, and_, or_
from sqlmodel import Session, col, select

from api.config import Settings
from api.db import utcnow
from api.errors import Conflict, Gone, NotFound, Unprocessable
from api.events import record_event
from api.http.pagination import paginate
from api.models import AccessLogEntry, ApiKey, Grant, Organisation, OrgInvite, OrgMember, User
from api.models.org import SCOPES
from api.orgs.schemas import ApiKeyCreate, GrantCreate, GrantStatus, InviteCreate, OrgCreate, Role
from api.security import hash_token, new_token
from api.worker.queue import enqueue

API_KEY_PREFIX = "rbk_"
# Shown with each key so that people can tell their keys apart: "rbk_" and 8 characters.
API_KEY_SHOWN_PREFIX_LENGTH = 12
INVITE_TOKEN_PREFIX = "rbi_"
INVITE_TTL = timedelta(days=7)
SEND_INVITE_JOB = "orgs.send_invite"


# Organisations and members


def create_org(*, session: Session, creator: User, data: OrgCreate) -> Organisation:
    """A new organisation whose first owner is its creator."""
    org = Organisation.model_validate(data.model_dump())
    session.add(org)
    session.flush()
    session.add(OrgMember(org_id=org.id, user_id=creator.id, role=Role.owner.value))
    return org


def list_orgs_of(
    *, session: Session, user: User, limit: int, cursor: str | None
) -> tuple[list[tuple[Organisation, str]], str | None]:
    """The organisations `user` is a member of, newest first, each with the user's role."""
    statement = (
        select(Organisation)
        .join(OrgMember, col(OrgMember.org_id) == col(Organisation.id))
        .where(col(OrgMember.user_id) == user.id)
    )
    orgs, next_cursor = paginate(
        session, statement, col(Organisation.id), limit=limit, cursor=cursor
    )
    roles = _roles_of(session, user_id=user.id, org_ids=[org.id for org in orgs])
    return [(org, roles[org.id]) for org in orgs], next_cursor


def _roles_of(session: Session, *, user_id: str, org_ids: list[str]) -> dict[str, str]:
    if not org_ids:
        return {}
    rows = session.exec(
        select(OrgMember.org_id, OrgMember.role).where(
            col(OrgMember.user_id) == user_id, col(OrgMember.org_id).in_(org_ids)
        )
    )
    return dict(rows.all())


def _users_by_id(session: Session, user_ids: Iterable[str]) -> dict[str, User]:
    wanted = set(user_ids)
    if not wanted:
        return {}
    return {user.id: user for user in session.exec(select(User).where(col(User.id).in_(wanted)))}


def list_members(
    *, session: Session, org: Organisation, limit: int, cursor: str | None
) -> tuple[list[tuple[OrgMember, User]], str | None]:
    """The organisation's members, newest first, with their accounts."""
    statement = select(OrgMember).where(col(OrgMember.org_id) == org.id)
    members, next_cursor = paginate(
        session, statement, col(OrgMember.id), limit=limit, cursor=cursor
    )
    users = _users_by_id(session, (member.user_id for member in members))
    return [(member, users[member.user_id]) for member in members], next_cursor


def remove_member(*, session: Session, org: Organisation, user_id: str) -> None:
    """Take a member out of the organisation; its last owner stays (409)."""
    # Locking every member row serialises concurrent removals, so two owners cannot
    # remove each other at the same time and leave the organisation without one.
    members = session.exec(
        select(OrgMember).where(col(OrgMember.org_id) == org.id).with_for_update()
    ).all()
    member = next((m for m in members if m.user_id == user_id), None)
    if member is None:
        raise NotFound("There is no member with this user id in the organisation.")
    owners = [m for m in members if m.role == Role.owner.value]
    if member.role == Role.owner.value and len(owners) == 1:
        raise Conflict(
            "This is the organisation's last owner; invite another owner before removing it."
        )
    session.delete(member)


# Invites


def invite_token(*, secret_key: str, invite_id: str) -> str:
    """The invite's secret, derived from the deployment's key and the invite's id.

    Only its hash is stored; deriving it lets the worker put it in the e-mail without the
    job table ever holding the secret.
    """
    digest = hmac.new(secret_key.encode(), b"org-invite:" + invite_id.encode(), hashlib.sha256)
    return INVITE_TOKEN_PREFIX + base64.urlsafe_b64encode(digest.digest()).decode().rstrip("=")


def token_of_invite(*, settings: Settings, invite: OrgInvite) -> str | None:
    """The secret of a stored invite, from the current or a previous key; None if lost."""
    for secret_key in (settings.secret_key, *settings.previous_secret_keys):
        token = invite_token(secret_key=secret_key, invite_id=invite.id)
        if hmac.compare_digest(hash_token(token), invite.token_hash):
            return token
    return None


def create_invite(
    *,
    session: Session,
    settings: Settings,
    org: Organisation,
    inviter: User,
    data: InviteCreate,
) -> tuple[OrgInvite, str]:
    """Invite an address to the organisation; the invitee gets the token by e-mail."""
    email = data.email.strip().lower()
    already = session.exec(
        select(OrgMember.id)
        .join(User, col(User.id) == col(OrgMember.user_id))
        .where(col(OrgMember.org_id) == org.id, col(User.email) == email)
    ).first()
    if already is not None:
        raise Conflict("This address belongs to a member of the organisation already.")
    invite = OrgInvite(
        org_id=org.id,
        email=email,
        role=data.role.value,
        invited_by=inviter.id,
        expires_at=utcnow() + INVITE_TTL,
        token_hash="",
    )
    token = invite_token(secret_key=settings.secret_key, invite_id=invite.id)
    invite.token_hash = hash_token(token)
    session.add(invite)
    enqueue(session, SEND_INVITE_JOB, {"invite_id": invite.id})
    return invite, token


def accept_invite(*, session: Session, user: User, token: str) -> OrgMember:
    """Join the organisation an invite addressed to `user` names; each invite works once."""
    invite = session.exec(
        select(OrgInvite).where(col(OrgInvite.token_hash) == hash_token(token)).with_for_update()
    ).first()
    # An invite addressed to someone else does not exist for this user.
    if invite is None or invite.email != user.email.lower():
        raise NotFound(
            "There is no invite with this token addressed to the account you are logged in with."
        )
    if invite.accepted_at is not None:
        raise Gone("This invite has been used already.")
    now = utcnow()
    if invite.expires_at <= now:
        raise Gone("This invite has expired; ask the organisation for a new one.")
    already = session.exec(
        select(OrgMember).where(
            col(OrgMember.org_id) == invite.org_id, col(OrgMember.user_id) == user.id
        )
    ).first()
    if already is not None:
        raise Conflict("You are a member of this organisation already.")
    invite.accepted_at = now
    invite.accepted_by = user.id
    invite.updated_at = now
    session.add(invite)
    member = OrgMember(org_id=invite.org_id, user_id=user.id, role=invite.role)
    session.add(member)
    session.flush()
    return member


# API keys


def create_api_key(
    *, session: Session, org: Organisation, creator: User, data: ApiKeyCreate
) -> tuple[ApiKey, str]:
    """A new key for the organisation; returns it with its secret, which is not kept."""
    secret = new_token(API_KEY_PREFIX, 32)
    key = ApiKey(
        org_id=org.id,
        name=data.name,
        prefix=secret[:API_KEY_SHOWN_PREFIX_LENGTH],
        key_hash=hash_token(secret),
        scopes=list(data.scopes) if data.scopes is not None else list(SCOPES),
        created_by=creator.id,
    )
    session.add(key)
    session.flush()
    return key, secret


def list_api_keys(
    *, session: Session, org: Organisation, limit: int, cursor: str | None
) -> tuple[list[ApiKey], str | None]:
    """The organisation's keys, revoked ones included, newest first."""
    statement = select(ApiKey).where(col(ApiKey.org_id) == org.id)
    return paginate(session, statement, col(ApiKey.id), limit=limit, cursor=cursor)


def revoke_api_key(*, session: Session, org: Organisation, key_id: str) -> None:
    """Revoke one of the organisation's keys; requests with it are 401 from now on."""
    key = session.exec(
        select(ApiKey)
        .where(col(ApiKey.id) == key_id, col(ApiKey.org_id) == org.id)
        .with_for_update()
    ).first()
    if key is None:
        raise NotFound("There is no API key with this id.")
    if key.revoked_at is None:
        key.revoked_at = key.updated_at = utcnow()
        session.add(key)


# Grants


def grant_status(grant: Grant, now: datetime | None = None) -> GrantStatus:
    now = now or utcnow()
    if grant.revoked_at is not None:
        return "revoked"
    if grant.expires_at is not None and grant.expires_at <= now:
        return "expired"
    return "active"


def _active(now: datetime) -> ColumnElement[bool]:
    return and_(
        col(Grant.revoked_at).is_(None),
        or_(col(Grant.expires_at).is_(None), col(Grant.expires_at) > now),
    )


def active_grant(*, session: Session, org_id: str, user_id: str) -> Grant | None:
    """The user's grant to the organisation in force right now, if there is one."""
    return session.exec(
        select(Grant)
        .where(col(Grant.org_id) == org_id, col(Grant.user_id) == user_id, _active(utcnow()))
        .order_by(col(Grant.id).desc())
    ).first()


def create_grant(*, session: Session, owner: User, data: GrantCreate) -> Grant:
    """Let an organisation read what `scopes` name; it replaces the grant in force, if any."""
    now = utcnow()
    if data.expires_at is not None and data.expires_at <= now:
        raise Unprocessable("expires_at must be in the future.", loc=["body", "expires_at"])
    if session.get(Organisation, data.org_id) is None:
        raise Unprocessable("There is no organisation with this id.", loc=["body", "org_id"])
    # One grant in force per organisation: lock the user's row so that two concurrent
    # grants cannot both find none and both be created.
    session.exec(select(User.id).where(col(User.id) == owner.id).with_for_update()).first()
    in_force = session.exec(
        select(Grant).where(
            col(Grant.user_id) == owner.id, col(Grant.org_id) == data.org_id, _active(now)
        )
    ).all()
    for old in in_force:
        _revoke(session, old, now)
    grant = Grant.model_validate(data.model_dump(), update={"user_id": owner.id})
    session.add(grant)
    session.flush()
    record_event(session, type="grant.created", user_id=owner.id, subject_id=grant.id)
    return grant


def _revoke(session: Session, grant: Grant, now: datetime) -> None:
    grant.revoked_at = grant.updated_at = now
    grant.version += 1
    session.add(grant)
    record_event(session, type="grant.revoked", user_id=grant.user_id, subject_id=grant.id)


def list_grants(
    *, session: Session, owner: User, limit: int, cursor: str | None
) -> tuple[list[Grant], str | None]:
    """Every grant the user has given, ended ones included, newest first."""
    statement = select(Grant).where(col(Grant.user_id) == owner.id)
    return paginate(session, statement, col(Grant.id), limit=limit, cursor=cursor)


def get_grant(*, session: Session, owner: User, grant_id: str, lock: bool = False) -> Grant:
    """One of the user's grants, or 404."""
    statement = select(Grant).where(col(Grant.id) == grant_id, col(Grant.user_id) == owner.id)
    grant = session.exec(statement.with_for_update() if lock else statement).first()
    if grant is None:
        raise NotFound("There is no grant with this id.")
    return grant


def revoke_grant(*, session: Session, grant: Grant) -> None:
    """End the grant now; the organisation's next request is refused. Idempotent."""
    if grant.revoked_at is None:
        _revoke(session, grant, utcnow())


def org_names(session: Session, org_ids: Iterable[str]) -> dict[str, str]:
    wanted = set(org_ids)
    if not wanted:
        return {}
    rows = session.exec(
        select(Organisation.id, Organisation.name).where(col(Organisation.id).in_(wanted))
    )
    return dict(rows.all())


# The access log


@dataclass(frozen=True)
class AccessRecord:
    """One read to log, gathered during the request and written when it succeeded."""

    grant_id: str
    user_id: str
    org_id: str
    actor: str
    method: str
    path: str
    scope: str


def write_access_log(session: Session, record: AccessRecord) -> None:
    """Add the record to the log (in whichever transaction `session` is)."""
    session.add(
        AccessLogEntry(
            grant_id=record.grant_id,
            user_id=record.user_id,
            org_id=record.org_id,
            actor=record.actor,
            method=record.method,
            path=record.path[:2048],
            scope=record.scope,
            at=utcnow(),
        )
    )


def list_access_log(
    *, session: Session, grant: Grant, limit: int, cursor: str | None
) -> tuple[list[tuple[AccessLogEntry, str | None]], str | None]:
    """Who read what under the grant, newest first, each with the actor's name."""
    statement = select(AccessLogEntry).where(col(AccessLogEntry.grant_id) == grant.id)
    entries, next_cursor = paginate(
        session, statement, col(AccessLogEntry.id), limit=limit, cursor=cursor
    )
    key_ids = {e.actor.partition(":")[2] for e in entries if e.actor.startswith("api_key:")}
    user_ids = {e.actor.partition(":")[2] for e in entries if e.actor.startswith("user:")}
    names: dict[str, str] = {}
    if key_ids:
        for key_id, name in session.exec(
            select(ApiKey.id, ApiKey.name).where(col(ApiKey.id).in_(key_ids))
        ):
            names[f"api_key:{key_id}"] = name
    for user_id, user in _users_by_id(session, user_ids).items():
        names[f"user:{user_id}"] = user.display_name or user.email
    return [(entry, names.get(entry.actor)) for entry in entries], next_cursor


# Clients: the users who let an organisation read


def list_clients(
    *, session: Session, org: Organisation, limit: int, cursor: str | None
) -> tuple[list[tuple[Grant, User]], str | None]:
    """The users whose grant to the organisation is in force, newest grant first."""
    statement = select(Grant).where(col(Grant.org_id) == org.id, _active(utcnow()))
    grants, next_cursor = paginate(session, statement, col(Grant.id), limit=limit, cursor=cursor)
    users = _users_by_id(session, (grant.user_id for grant in grants))
    return [(grant, users[grant.user_id]) for grant in grants], next_cursor
