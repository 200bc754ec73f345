"""Every table model, imported here so that the metadata (and Alembic) sees them all."""

from sqlalchemy import event
from sqlalchemy.orm import Session

from api.models import action_plan, feedback, org, webhook
from api.models.base import Tracked, track_changes
from api.models.job import DomainEvent, IdempotencyRecord, Job
from api.models.org import AccessLogEntry, ApiKey, Grant, Organisation, OrgInvite, OrgMember
from api.models.rejection import Reflection, ReflectionStep, Rejection
from api.models.user import Profile, RefreshToken, User

event.listen(Session, "before_flush", track_changes)

__all__ = [
    "AccessLogEntry",
    "ApiKey",
    "DomainEvent",
    "Grant",
    "IdempotencyRecord",
    "Job",
    "OrgInvite",
    "OrgMember",
    "Organisation",
    "Profile",
    "Reflection",
    "ReflectionStep",
    "RefreshToken",
    "Rejection",
    "Tracked",
    "User",
    "action_plan",
    "feedback",
    "org",
    "webhook",
]
