"""Background work for organisations: e-mailing invites."""

from __future__ import annotations

import structlog

from api.db import utcnow
from api.email.backends import EmailDeliveryError
from api.email.message import build_message
from api.email.render import render_email
from api.models import Job, Organisation, OrgInvite, User
from api.orgs.service import SEND_INVITE_JOB, token_of_invite
from api.worker.registry import WorkerContext, task

log = structlog.get_logger("rebound.orgs")

ROLE_WORDS = {
    "advisor": (
        "an advisor",
        "Advisors see the job seekers who chose to share their progress with {org}, "
        "and of each only what that person decided to share.",
    ),
    "owner": (
        "an owner",
        "Owners run {org} on Rebound: they invite advisors, manage API keys and "
        "webhooks, and see what clients share with it.",
    ),
}


@task(SEND_INVITE_JOB)
async def send_invite(job: Job, ctx: WorkerContext) -> None:
    """E-mail the invite's code to the invitee, unless it was used or has expired since."""
    with ctx.session() as session:
        invite = session.get(OrgInvite, job.payload["invite_id"])
        if invite is None or invite.accepted_at is not None or invite.expires_at <= utcnow():
            return
        token = token_of_invite(settings=ctx.settings, invite=invite)
        if token is None:
            # The deployment's secret key changed before the e-mail went out; the owner
            # still has the code from the create response.
            log.warning("org_invite_token_lost", invite_id=invite.id)
            return
        org = session.get(Organisation, invite.org_id)
        inviter = session.get(User, invite.invited_by) if invite.invited_by else None
        if org is None:
            return
        role_phrase, explanation = ROLE_WORDS.get(invite.role, ROLE_WORDS["advisor"])
        base_url = ctx.settings.base_url.rstrip("/")
        rendered = render_email(
            "org_invite",
            {
                "org_name": org.name,
                "inviter_name": (inviter.display_name or inviter.email) if inviter else org.name,
                "role_phrase": role_phrase,
                "role_explanation": explanation.format(org=org.name),
                "email": invite.email,
                "token": token,
                "accept_url": f"{base_url}/v1/invites/{token}/accept",
                "expires_on": f"{invite.expires_at:%d %B %Y} (UTC)",
            },
        )
        message = build_message(
            settings=ctx.settings,
            to=invite.email,
            subject=rendered.subject,
            text=rendered.text,
            html=rendered.html,
        )
    try:
        await ctx.send_email(message)
    except EmailDeliveryError as exc:
        if not exc.permanent:
            raise
        log.warning(
            "org_invite_undeliverable", invite_id=job.payload["invite_id"], reason=exc.reason
        )
