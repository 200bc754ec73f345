"""The backends against a real SMTP server on loopback (aiosmtpd)."""

from __future__ import annotations

import asyncio
import socket
from email.message import EmailMessage

import pytest
from structlog.testing import capture_logs

from api.config import Settings
from api.email.backends import (
    ConsoleBackend,
    EmailBackend,
    EmailDeliveryError,
    SmtpBackend,
    close_shared_email_backend,
    email_backend,
    shared_email_backend,
)
from api.email.message import build_message
from tests.plugins.smtp import SmtpTestServer, smtp_settings_for


def _message(settings: Settings, to: str = "hr@acme.example", n: int = 0) -> EmailMessage:
    return build_message(
        settings=settings,
        to=to,
        subject=f"Feedback request {n}",
        text=f"Hello, this is message {n}.",
        html=f"<p>Hello, this is message {n}.</p>",
        reply_to="alex@candidate.example",
        list_unsubscribe_url="https://rebound.example/f/tok/opt-out",
        one_click_unsubscribe=True,
    )


def _send(backend: EmailBackend, *messages: EmailMessage) -> None:
    async def go() -> None:
        try:
            for message in messages:
                await backend.send(message)
        finally:
            await backend.close()

    asyncio.run(go())


def test_console_is_the_default_and_logs_the_message(settings: Settings) -> None:
    backend = email_backend(settings)
    assert isinstance(backend, ConsoleBackend)
    message = _message(settings)

    with capture_logs() as logs:
        _send(backend, message)

    (entry,) = [log for log in logs if log["event"] == "email.console"]
    assert entry["to"] == "hr@acme.example"
    assert entry["subject"] == "Feedback request 0"
    assert entry["message_id"] == message["Message-ID"]
    assert entry["text"].strip() == "Hello, this is message 0."


def test_smtp_delivers_the_message_as_built(
    smtp_server: SmtpTestServer, smtp_settings: Settings
) -> None:
    backend = email_backend(smtp_settings)
    assert isinstance(backend, SmtpBackend)
    message = _message(smtp_settings)

    _send(backend, message)

    (received,) = smtp_server.wait_for(1)
    (envelope,) = smtp_server.envelopes
    assert envelope.mail_from == "no-reply@rebound.invalid"
    assert envelope.rcpt_tos == ["hr@acme.example"]
    assert not envelope.tls
    assert received["Message-ID"] == message["Message-ID"]
    assert received["Reply-To"] == "alex@candidate.example"
    assert received["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert b"List-Unsubscribe: <https://rebound.example/f/tok/opt-out>\r\n" in envelope.content
    plain = received.get_body(preferencelist=("plain",))
    assert plain is not None and plain.get_content().strip() == "Hello, this is message 0."


def test_smtp_upgrades_with_starttls_when_offered(
    smtp_server_starttls: SmtpTestServer, settings: Settings
) -> None:
    smtp_settings = smtp_settings_for(settings, smtp_server_starttls)

    _send(email_backend(smtp_settings), _message(smtp_settings))

    smtp_server_starttls.wait_for(1)
    assert smtp_server_starttls.envelopes[0].tls


def test_starttls_with_an_unverifiable_certificate_is_refused_when_verifying(
    smtp_server_starttls: SmtpTestServer, settings: Settings
) -> None:
    strict = smtp_settings_for(settings, smtp_server_starttls).model_copy(
        update={"smtp_tls_verify": True}
    )

    with pytest.raises(EmailDeliveryError) as caught:
        _send(email_backend(strict), _message(strict))

    assert not caught.value.permanent
    assert smtp_server_starttls.messages == []


def test_smtps_is_tls_from_the_start(smtps_server: SmtpTestServer, settings: Settings) -> None:
    smtp_settings = smtp_settings_for(settings, smtps_server)
    assert smtp_settings.smtp_url is not None and smtp_settings.smtp_url.startswith("smtps://")

    _send(email_backend(smtp_settings), _message(smtp_settings))

    smtps_server.wait_for(1)
    assert smtps_server.envelopes[0].tls


def test_one_connection_carries_many_messages(
    smtp_server: SmtpTestServer, smtp_settings: Settings
) -> None:
    backend = email_backend(smtp_settings)
    assert isinstance(backend, SmtpBackend)

    _send(backend, *(_message(smtp_settings, n=n) for n in range(50)))

    received = smtp_server.wait_for(50)
    assert [m["Subject"] for m in received] == [f"Feedback request {n}" for n in range(50)]
    assert smtp_server.connections == 1
    assert backend.connections_opened == 1


def test_concurrent_sends_share_the_connection_one_at_a_time(
    smtp_server: SmtpTestServer, smtp_settings: Settings
) -> None:
    backend = email_backend(smtp_settings)

    async def go() -> None:
        await asyncio.gather(*(backend.send(_message(smtp_settings, n=n)) for n in range(20)))
        await backend.close()

    asyncio.run(go())

    assert len(smtp_server.wait_for(20)) == 20
    assert smtp_server.connections == 1


def test_concurrent_sends_spread_over_at_most_the_connections_allowed(
    smtp_server: SmtpTestServer, smtp_settings: Settings
) -> None:
    backend = email_backend(smtp_settings, connections=3)
    assert isinstance(backend, SmtpBackend)

    async def go() -> None:
        await asyncio.gather(*(backend.send(_message(smtp_settings, n=n)) for n in range(30)))
        await asyncio.gather(*(backend.send(_message(smtp_settings, n=n)) for n in range(30, 40)))
        await backend.close()

    asyncio.run(go())

    received = smtp_server.wait_for(40)
    assert sorted(m["Subject"] for m in received) == sorted(
        f"Feedback request {n}" for n in range(40)
    )
    # Three at once, kept open for the second round, each used for many messages.
    assert backend.connections_opened == 3
    assert smtp_server.connections == 3


def test_a_dropped_connection_is_replaced(
    smtp_server: SmtpTestServer, smtp_settings: Settings
) -> None:
    backend = email_backend(smtp_settings)

    async def go() -> None:
        await backend.send(_message(smtp_settings, n=1))
        smtp_server.restart()  # cuts the open connection
        await backend.send(_message(smtp_settings, n=2))
        await backend.close()

    asyncio.run(go())

    assert [m["Subject"] for m in smtp_server.wait_for(2)] == [
        "Feedback request 1",
        "Feedback request 2",
    ]
    assert smtp_server.connections == 2


# The first loop's socket is shut down but only freed with its transport (a ResourceWarning).
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_backend_survives_a_new_event_loop(
    smtp_server: SmtpTestServer, smtp_settings: Settings
) -> None:
    backend = email_backend(smtp_settings)

    asyncio.run(backend.send(_message(smtp_settings, n=1)))
    asyncio.run(backend.send(_message(smtp_settings, n=2)))
    asyncio.run(backend.close())

    assert len(smtp_server.wait_for(2)) == 2


def test_a_refused_recipient_is_a_permanent_failure(
    smtp_server: SmtpTestServer, smtp_settings: Settings
) -> None:
    smtp_server.refuse("gone@acme.example")
    backend = email_backend(smtp_settings)

    async def go() -> EmailDeliveryError:
        with pytest.raises(EmailDeliveryError) as caught:
            await backend.send(_message(smtp_settings, to="gone@acme.example"))
        # The connection is still good for the next message.
        await backend.send(_message(smtp_settings, n=2))
        await backend.close()
        return caught.value

    error = asyncio.run(go())

    assert error.permanent
    assert error.code == 550
    assert "gone@acme.example" in str(error)
    assert [m["To"] for m in smtp_server.wait_for(1)] == ["hr@acme.example"]


def test_a_4xx_refusal_is_temporary(smtp_server: SmtpTestServer, smtp_settings: Settings) -> None:
    smtp_server.refuse("busy@acme.example", code=450)

    with pytest.raises(EmailDeliveryError) as caught:
        _send(email_backend(smtp_settings), _message(smtp_settings, to="busy@acme.example"))

    assert not caught.value.permanent
    assert caught.value.code == 450
    assert smtp_server.messages == []


@pytest.mark.parametrize(
    ("reply", "permanent"),
    [("554 5.7.1 Rejected as spam", True), ("451 4.3.0 Local problem, try later", False)],
)
def test_a_refused_message_body(
    smtp_server: SmtpTestServer, smtp_settings: Settings, reply: str, permanent: bool
) -> None:
    smtp_server.reply_to_data(reply)

    with pytest.raises(EmailDeliveryError) as caught:
        _send(email_backend(smtp_settings), _message(smtp_settings))

    assert caught.value.permanent is permanent
    assert caught.value.code == int(reply[:3])


def test_no_server_is_a_temporary_failure(settings: Settings) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    unreachable = settings.model_copy(
        update={"email_backend": "smtp", "smtp_url": f"smtp://127.0.0.1:{port}", "smtp_timeout": 2}
    )

    with pytest.raises(EmailDeliveryError) as caught:
        _send(email_backend(unreachable), _message(unreachable))

    assert not caught.value.permanent


def test_smtp_url_is_parsed() -> None:
    backend = SmtpBackend.from_url("smtps://user%40x:p%3Ass@mail.example:2465", timeout=3)
    assert (backend.hostname, backend.port, backend.implicit_tls) == ("mail.example", 2465, True)
    assert (backend.username, backend.password, backend.timeout) == ("user@x", "p:ss", 3)

    plain = SmtpBackend.from_url("smtp://mail.example")
    assert (plain.port, plain.implicit_tls, plain.username) == (25, False, None)
    assert SmtpBackend.from_url("smtps://mail.example").port == 465


@pytest.mark.parametrize("url", ["http://mail.example", "smtp://", "mail.example:25"])
def test_a_bad_smtp_url_is_refused(url: str) -> None:
    with pytest.raises(ValueError, match="REBOUND_SMTP_URL"):
        SmtpBackend.from_url(url)


def test_smtp_backend_needs_a_url(settings: Settings) -> None:
    with pytest.raises(ValueError, match="REBOUND_SMTP_URL"):
        email_backend(settings.model_copy(update={"email_backend": "smtp", "smtp_url": None}))


def test_smtp_logs_in_with_the_credentials_in_the_url(
    smtp_server_auth: SmtpTestServer, settings: Settings
) -> None:
    smtp_settings = smtp_settings_for(settings, smtp_server_auth)
    assert "rebound:s3cret%3Ap%40ss@" in (smtp_settings.smtp_url or "")

    _send(email_backend(smtp_settings), _message(smtp_settings))

    smtp_server_auth.wait_for(1)
    assert smtp_server_auth.envelopes[0].tls


def test_a_wrong_password_is_a_temporary_failure(
    smtp_server_auth: SmtpTestServer, settings: Settings
) -> None:
    wrong = smtp_settings_for(settings, smtp_server_auth)
    wrong = wrong.model_copy(update={"smtp_url": (wrong.smtp_url or "").replace("s3cret", "wrong")})

    with pytest.raises(EmailDeliveryError, match="login refused") as caught:
        _send(email_backend(wrong), _message(wrong))

    assert not caught.value.permanent
    assert caught.value.code == 535
    assert smtp_server_auth.messages == []


def test_a_shared_backend_reuses_one_connection_until_closed(
    smtp_server: SmtpTestServer, smtp_settings: Settings
) -> None:
    services: dict[str, object] = {}

    async def worker_run() -> None:
        for n in range(5):  # as five separate jobs would
            await shared_email_backend(services, smtp_settings).send(_message(smtp_settings, n=n))
        await close_shared_email_backend(services)

    asyncio.run(worker_run())

    assert len(smtp_server.wait_for(5)) == 5
    assert smtp_server.connections == 1
    assert services == {}
