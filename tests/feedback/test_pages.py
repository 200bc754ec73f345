"""The recipient's pages: the answer form, its states, its headers, and the opt-out."""

from __future__ import annotations

from datetime import timedelta

from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from api.config import Settings
from api.db import utcnow
from api.models.feedback import EmailSuppression, FeedbackMessage
from tests.factories import UserHandle, make_rejection
from tests.feedback.conftest import (
    create_request,
    get_request,
    link_path,
    run_worker,
    timeline,
)
from tests.plugins.smtp import SmtpTestServer

PRIVATE = {
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
}


def _sent(
    user: UserHandle, engine: Engine, settings: Settings, server: SmtpTestServer, **fields: object
) -> tuple[dict[str, object], str]:
    before = len(server.messages)
    request = create_request(user, **fields)
    run_worker(engine, settings)
    return request, link_path(server.wait_for(before + 1)[-1])


def _assert_private(response: object) -> None:
    headers = response.headers  # type: ignore[attr-defined]
    for name, value in PRIVATE.items():
        assert headers[name] == value
    assert "noindex" in headers["X-Robots-Tag"]
    assert "frame-ancestors 'none'" in headers["Content-Security-Policy"]
    assert headers["content-type"].startswith("text/html")


def test_the_form_shows_only_what_the_recipient_needs(
    client: TestClient,
    engine: Engine,
    settings: Settings,
    smtp_server: SmtpTestServer,
    user: UserHandle,
) -> None:
    rejection = make_rejection(
        user,
        company="Acme <script>alert(1)</script>",
        notes="my private notes",
        reason_text="they went with someone else",
    )
    request, path = _sent(user, engine, settings, smtp_server, rejection_id=rejection["id"])
    page = client.get(path)
    assert page.status_code == 200
    _assert_private(page)
    html = page.text
    assert "Ada Lovelace" in html
    assert "Backend Engineer" in html
    assert "Acme &lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "<script>" not in html
    for secret in (user.email, "my private notes", "someone else", "dana@acme.example"):
        assert secret not in html
    # Labelled fields, and no resource from another site.
    for field in ("text", "strengths", "improvements"):
        assert f'<label for="{field}"' in html
    assert "http://" not in html and "https://" not in html
    assert '<meta name="viewport"' in html
    css = client.get("/f-assets/feedback.css")
    assert css.status_code == 200
    assert css.headers["content-type"].startswith("text/css")
    # Looking changed nothing.
    assert get_request(user, str(request["id"]))["status"] == "sent"
    assert [e["type"] for e in timeline(user, str(request["id"]))] == ["scheduled", "sent"]


def test_an_answer_with_points_then_the_link_is_spent(
    client: TestClient,
    engine: Engine,
    settings: Settings,
    smtp_server: SmtpTestServer,
    user: UserHandle,
) -> None:
    request, path = _sent(user, engine, settings, smtp_server)
    empty = client.post(path, data={"outcome": "responded", "text": "  "})
    assert empty.status_code == 422
    assert 'role="alert"' in empty.text
    assert 'aria-invalid="true"' in empty.text
    assert get_request(user, str(request["id"]))["status"] == "sent"

    answered = client.post(
        path,
        data={
            "outcome": "responded",
            "text": "Thank you for applying.",
            "strengths": "Clear communication\n\n- SQL\n",
            "improvements": "System design",
        },
        follow_redirects=False,
    )
    assert answered.status_code == 303
    assert answered.headers["location"] == f"{path}/thanks"
    thanks = client.get(f"{path}/thanks")
    assert thanks.status_code == 200
    _assert_private(thanks)
    assert "Thank you" in thanks.text

    body = get_request(user, str(request["id"]))
    assert body["status"] == "responded"
    assert body["response"] == {
        "outcome": "responded",
        "text": "Thank you for applying.",
        "strengths": ["Clear communication", "SQL"],
        "improvements": ["System design"],
    }
    again = client.get(path)
    assert again.status_code == 410
    _assert_private(again)
    assert "already been answered" in again.text
    second = client.post(path, data={"outcome": "declined"})
    assert second.status_code == 410
    assert get_request(user, str(request["id"]))["status"] == "responded"


def test_we_do_not_give_feedback(
    client: TestClient,
    engine: Engine,
    settings: Settings,
    smtp_server: SmtpTestServer,
    user: UserHandle,
) -> None:
    request, path = _sent(user, engine, settings, smtp_server)
    declined = client.post(path, data={"outcome": "declined"})
    assert declined.status_code == 200  # after the redirect
    assert "Thank you for letting" in declined.text
    body = get_request(user, str(request["id"]))
    assert body["status"] == "declined"
    assert body["responded_at"] is not None
    assert body["response"]["outcome"] == "declined"
    assert timeline(user, str(request["id"]))[-1]["type"] == "declined"
    run_worker(engine, settings)
    notice = smtp_server.wait_for(2)[-1]
    assert notice["To"].addresses[0].addr_spec == user.email
    assert "do not give feedback" in str(notice.get_body(preferencelist=("plain",)).get_content())


def test_unknown_expired_and_closed_links(
    client: TestClient,
    engine: Engine,
    settings: Settings,
    smtp_server: SmtpTestServer,
    user: UserHandle,
) -> None:
    unknown = client.get("/f/" + "A" * 43)
    assert unknown.status_code == 404
    _assert_private(unknown)
    assert client.post("/f/short", data={"outcome": "declined"}).status_code == 404
    assert client.get("/f/" + "A" * 43 + "/opt-out").status_code == 404

    request, path = _sent(user, engine, settings, smtp_server)
    with Session(engine) as session:
        message = session.exec(select(FeedbackMessage)).one()
        message.token_expires_at = utcnow() - timedelta(seconds=1)
        session.add(message)
        session.commit()
    expired = client.get(path)
    assert expired.status_code == 410
    assert "expired" in expired.text
    assert client.post(path, data={"text": "late"}).status_code == 410
    assert get_request(user, str(request["id"]))["status"] == "sent"

    other, other_path = _sent(user, engine, settings, smtp_server)
    client.post(f"/v1/feedback-requests/{other['id']}/cancel", headers=user.headers)
    closed = client.get(other_path)
    assert closed.status_code == 410
    assert "closed" in closed.text


def test_a_late_answer_after_no_response_is_kept(
    client: TestClient,
    engine: Engine,
    settings: Settings,
    smtp_server: SmtpTestServer,
    user: UserHandle,
) -> None:
    request, path = _sent(user, engine, settings, smtp_server, max_follow_ups=0)
    with Session(engine) as session:
        from api.models.feedback import FeedbackRequest

        row = session.get(FeedbackRequest, request["id"])
        assert row is not None
        row.status = "no_response"
        session.add(row)
        session.commit()
    assert client.get(path).status_code == 200
    assert client.post(path, data={"text": "Sorry for the delay: ..."}).status_code == 200
    assert get_request(user, str(request["id"]))["status"] == "responded"


def test_opt_out_page_confirms_and_get_changes_nothing(
    client: TestClient,
    db: Session,
    engine: Engine,
    settings: Settings,
    smtp_server: SmtpTestServer,
    user: UserHandle,
) -> None:
    request, path = _sent(user, engine, settings, smtp_server)
    page = client.get(f"{path}/opt-out")
    assert page.status_code == 200
    _assert_private(page)
    assert f'action="{path}/opt-out"' in page.text
    assert db.exec(select(EmailSuppression)).all() == []
    # The confirmation page's own button.
    done = client.post(f"{path}/opt-out", data={"List-Unsubscribe": "One-Click"})
    assert done.status_code == 200
    _assert_private(done)
    assert get_request(user, str(request["id"]))["status"] == "opted_out"
    with Session(engine) as session:
        assert [row.email for row in session.exec(select(EmailSuppression))] == [
            "dana@acme.example"
        ]
    again = client.get(f"{path}/opt-out")
    assert "already opted out" in again.text
    assert client.post(f"{path}/opt-out").status_code == 200  # twice is harmless


def test_the_pages_are_rate_limited(client: TestClient) -> None:
    statuses = [client.post("/f/" + "B" * 43, data={}).status_code for _ in range(21)]
    assert statuses[:20] == [404] * 20
    assert statuses[20] == 429
