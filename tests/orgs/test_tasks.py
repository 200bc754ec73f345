"""The invite e-mail, sent by the worker through a real SMTP server on loopback."""

from __future__ import annotations

import asyncio
from email.message import EmailMessage

from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine
from sqlmodel import col, select

from api.config import Settings
from api.db import open_session
from api.models import Job
from api.worker.registry import WorkerContext
from api.worker.runner import run_until_idle
from tests.factories import make_org, make_user
from tests.plugins.smtp import SmtpTestServer


def run_worker(engine: Engine, settings: Settings) -> None:
    asyncio.run(run_until_idle(WorkerContext(engine=engine, settings=settings, worker_id="t")))


def text_of(message: EmailMessage) -> str:
    body = message.get_body(preferencelist=("plain",))
    assert isinstance(body, EmailMessage)
    return str(body.get_content())


def invite_jobs(engine: Engine) -> list[Job]:
    with open_session(engine, write=False) as session:
        return list(session.exec(select(Job).where(col(Job.kind) == "orgs.send_invite")))


def test_the_invitee_gets_the_code_by_email(
    client: TestClient,
    engine: Engine,
    smtp_server: SmtpTestServer,
    smtp_settings: Settings,
) -> None:
    owner = make_user(client, display_name="Morgan Owner")
    org = make_org(owner, name="Northfield Careers")
    invite = client.post(
        f"/v1/orgs/{org['id']}/invites",
        json={"email": "new.advisor@example.com", "role": "advisor"},
        headers=owner.headers,
    ).json()
    run_worker(engine, smtp_settings)

    (message,) = smtp_server.wait_for(1)
    assert message["To"] == "new.advisor@example.com"
    assert "Morgan Owner" in message["Subject"]
    assert "Northfield Careers" in message["Subject"]
    text = text_of(message)
    assert invite["token"] in text
    assert f"/v1/invites/{invite['token']}/accept" in text
    assert "an advisor" in text
    html = message.get_body(preferencelist=("html",))
    assert isinstance(html, EmailMessage)
    assert invite["token"] in html.get_content()
    assert [job.status for job in invite_jobs(engine)] == ["done"]


def test_an_invite_accepted_before_the_email_goes_out_is_not_sent(
    client: TestClient,
    engine: Engine,
    smtp_server: SmtpTestServer,
    smtp_settings: Settings,
) -> None:
    owner, invitee = make_user(client), make_user(client)
    org = make_org(owner)
    invite = client.post(
        f"/v1/orgs/{org['id']}/invites", json={"email": invitee.email}, headers=owner.headers
    ).json()
    accepted = client.post(f"/v1/invites/{invite['token']}/accept", headers=invitee.headers)
    assert accepted.status_code == 201
    run_worker(engine, smtp_settings)
    assert smtp_server.messages == []
    assert [job.status for job in invite_jobs(engine)] == ["done"]


def test_a_refused_address_is_not_retried_forever(
    client: TestClient,
    engine: Engine,
    smtp_server: SmtpTestServer,
    smtp_settings: Settings,
) -> None:
    owner = make_user(client)
    org = make_org(owner)
    smtp_server.refuse("nobody@example.com")
    created = client.post(
        f"/v1/orgs/{org['id']}/invites", json={"email": "nobody@example.com"}, headers=owner.headers
    )
    assert created.status_code == 201
    run_worker(engine, smtp_settings)
    assert smtp_server.messages == []
    # A permanent refusal ends the job; the owner still has the code to pass on by hand.
    assert [job.status for job in invite_jobs(engine)] == ["done"]
