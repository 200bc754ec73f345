"""The feedback-request endpoints: creation defaults and validation, the status machine,
changes, ETags, lists and the timeline."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from api.db import utcnow
from api.models import Job, Rejection
from api.models.feedback import FeedbackRequest, FeedbackRequestEvent
from tests.factories import UserHandle, make_rejection, make_user
from tests.feedback.conftest import create_request, get_request, timeline


def _url(rejection_id: str) -> str:
    return f"/v1/rejections/{rejection_id}/feedback-requests"


def _near_now(value: str) -> bool:
    return abs(datetime.fromisoformat(value) - utcnow()) < timedelta(seconds=30)


def test_create_with_defaults(client: TestClient, db: Session, user: UserHandle) -> None:
    rejection = make_rejection(user, stage="onsite")
    response = client.post(_url(rejection["id"]), json={}, headers=user.headers)
    assert response.status_code == 201, response.text
    body = response.json()
    assert response.headers["ETag"] == '"1"'
    assert response.headers["Location"] == f"/v1/feedback-requests/{body['id']}"
    assert body["rejection_id"] == rejection["id"]
    assert body["status"] == "scheduled"
    assert body["channel"] == "email"
    assert body["recipient_name"] == "Dana Recruiter"
    assert body["recipient_email"] == "dana@acme.example"
    assert body["max_follow_ups"] == 2
    assert body["follow_up_interval"] == "P7D"
    assert body["follow_ups_sent"] == 0
    assert body["response"] is None
    # Rejected on 2026-11-02: 09:00 the next day is long past, so: now.
    assert _near_now(body["send_at"])
    assert "interviews" in body["subject"] and "Backend Engineer" in body["subject"]
    assert body["body"].startswith("Hello Dana Recruiter,")
    assert "Acme Corp" in body["body"] and body["body"].rstrip().endswith("Ada Lovelace")
    job = db.exec(select(Job).where(Job.kind == "feedback.send_message")).one()
    assert job.payload == {"request_id": body["id"], "number": 0}


def test_send_at_defaults_to_nine_the_next_morning_in_the_users_time_zone(
    client: TestClient,
) -> None:
    tokyo = make_user(client, timezone="Asia/Tokyo")
    today = datetime.now(ZoneInfo("Asia/Tokyo")).date()
    rejection = make_rejection(tokyo, rejected_on=today.isoformat(), applied_on=None)
    body = create_request(tokyo, rejection["id"])
    expected = datetime(
        today.year, today.month, today.day, 9, tzinfo=ZoneInfo("Asia/Tokyo")
    ) + timedelta(days=1)
    assert datetime.fromisoformat(body["send_at"]) == expected


def test_send_at_given(user: UserHandle) -> None:
    later = (utcnow() + timedelta(days=3)).replace(microsecond=0)
    assert (
        datetime.fromisoformat(create_request(user, send_at=later.isoformat())["send_at"]) == later
    )
    assert _near_now(create_request(user, send_at="2001-01-01T00:00:00+02:00")["send_at"])


STAGE_WORDS = [
    ("applied", "my application"),
    ("phone", "my application"),
    ("technical", "my interviews"),
    ("final", "final round"),
    ("offer", "final round"),
]


def test_the_template_follows_the_stage(user: UserHandle) -> None:
    for stage, words in STAGE_WORDS:
        body = create_request(user, make_rejection(user, stage=stage)["id"])
        assert words in body["subject"], stage


def test_given_fields_win(user: UserHandle) -> None:
    body = create_request(
        user,
        recipient_name="Lee",
        recipient_email="lee@other.example",
        subject="A quick question",
        body="Hi Lee, could you tell me why?",
        max_follow_ups=0,
        follow_up_interval="PT36H",
        status="draft",
    )
    assert (body["recipient_name"], body["recipient_email"]) == ("Lee", "lee@other.example")
    assert (body["subject"], body["body"]) == ("A quick question", "Hi Lee, could you tell me why?")
    assert (body["max_follow_ups"], body["follow_up_interval"]) == (0, "P1DT12H")
    assert body["status"] == "draft"


def test_another_address_does_not_borrow_the_contacts_name(user: UserHandle) -> None:
    body = create_request(user, recipient_email="lee@other.example")
    assert body["recipient_name"] is None
    assert body["body"].startswith("Hello,")
    same = create_request(user, recipient_email="DANA@acme.example")
    assert same["recipient_name"] == "Dana Recruiter"


def test_hand_tracked_requests_start_as_drafts(client: TestClient, user: UserHandle) -> None:
    rejection = make_rejection(user, contact_email=None, contact_name=None)
    body = create_request(user, rejection["id"], channel="linkedin", recipient_name="Sam")
    assert body["status"] == "draft"
    assert body["recipient_email"] is None
    sent = client.post(f"/v1/feedback-requests/{body['id']}/send", headers=user.headers)
    assert sent.status_code == 200
    assert sent.json()["status"] == "sent"
    assert sent.json()["first_sent_at"] is not None
    assert sent.json()["closes_at"] is not None
    answered = client.post(
        f"/v1/feedback-requests/{body['id']}/responses",
        json={"outcome": "responded", "text": "Good call, weak on testing."},
        headers=user.headers,
    )
    assert answered.status_code == 201
    assert answered.json()["status"] == "responded"
    assert answered.json()["response"] == {
        "outcome": "responded",
        "text": "Good call, weak on testing.",
        "strengths": [],
        "improvements": [],
    }
    assert [e["type"] for e in timeline(user, body["id"])] == ["created", "sent", "responded"]


def _bad(**fields: Any) -> dict[str, Any]:
    return fields


INVALID = [
    (_bad(max_follow_ups=4), "max_follow_ups"),
    (_bad(max_follow_ups=-1), "max_follow_ups"),
    (_bad(follow_up_interval="PT0.5S"), "follow_up_interval"),  # under the minimum
    (_bad(follow_up_interval="-P1D"), "follow_up_interval"),
    (_bad(follow_up_interval="P400D"), "follow_up_interval"),
    (_bad(follow_up_interval="7 days"), "follow_up_interval"),
    (_bad(follow_up_interval=3600), "follow_up_interval"),
    (_bad(send_at="2030-01-01T09:00:00"), "send_at"),  # no time zone
    (_bad(recipient_email="not an address"), "recipient_email"),
    (_bad(channel="pigeon"), "channel"),
    (_bad(status="sent"), "status"),
    (_bad(channel="phone", status="scheduled"), "status"),
    (_bad(subject=""), "subject"),
    (_bad(subject="x" * 301), "subject"),
    (_bad(body="x" * 10001), "body"),
    (_bad(subject="Hello\r\nBcc: everyone@example.com"), "subject"),
    (_bad(subject="Hello\nthere"), "subject"),
    (_bad(recipient_name="Dana\r\nBcc: everyone@example.com"), "recipient_name"),
    (_bad(unknown=1), "unknown"),
]


def test_invalid_requests_are_422_and_nothing_is_stored(
    client: TestClient, db: Session, user: UserHandle
) -> None:
    rejection = make_rejection(user)
    for body, field in INVALID:
        response = client.post(_url(rejection["id"]), json=body, headers=user.headers)
        assert response.status_code == 422, (body, response.text)
        assert response.headers["content-type"] == "application/problem+json"
        locs = [part for error in response.json()["errors"] for part in error["loc"]]
        assert field in locs, (body, response.json())
    assert db.exec(select(FeedbackRequest)).all() == []
    assert db.exec(select(Job).where(Job.kind == "feedback.send_message")).all() == []


def test_a_contact_name_with_a_line_break_is_refused(
    client: TestClient, engine: Engine, db: Session, user: UserHandle
) -> None:
    # Rejections refuse such names now; an older row could still hold one.
    rejection = make_rejection(user)
    with Session(engine) as session:
        row = session.get(Rejection, rejection["id"])
        assert row is not None
        row.contact_name = "Dana\nBcc: x@example.com"
        session.add(row)
        session.commit()
    response = client.post(_url(rejection["id"]), json={}, headers=user.headers)
    assert response.status_code == 422
    assert response.json()["errors"][0]["loc"] == ["body", "recipient_name"]
    assert db.exec(select(FeedbackRequest)).all() == []


def test_an_email_request_needs_an_address(
    client: TestClient, db: Session, user: UserHandle
) -> None:
    rejection = make_rejection(user, contact_email=None)
    response = client.post(_url(rejection["id"]), json={}, headers=user.headers)
    assert response.status_code == 422
    assert "recipient_email" in response.json()["detail"]
    assert db.exec(select(FeedbackRequest)).all() == []


def test_the_minimum_interval_is_the_deployments(client: TestClient, user: UserHandle) -> None:
    settings = client.app.state.settings  # type: ignore[attr-defined]
    settings.min_follow_up_interval = timedelta(days=1)
    try:
        response = client.post(
            _url(make_rejection(user)["id"]),
            json={"follow_up_interval": "PT12H"},
            headers=user.headers,
        )
        assert response.status_code == 422
        assert "at least P1D" in response.json()["detail"]
    finally:
        settings.min_follow_up_interval = timedelta(seconds=1)


def test_other_users_cannot_see_or_touch(client: TestClient, user: UserHandle) -> None:
    other = make_user(client)
    mine = create_request(user)
    url = f"/v1/feedback-requests/{mine['id']}"
    assert client.get(url, headers=other.headers).status_code == 404
    assert client.patch(url, json={"subject": "x"}, headers=other.headers).status_code == 404
    for action in ("send", "cancel"):
        assert client.post(f"{url}/{action}", headers=other.headers).status_code == 404
    assert client.get(f"{url}/events", headers=other.headers).status_code == 404
    assert (
        client.post(_url(make_rejection(user)["id"]), json={}, headers=other.headers).status_code
        == 404
    )
    assert client.get("/v1/feedback-requests", headers=other.headers).json()["items"] == []
    assert client.get(url).status_code == 401


def _force_status(engine: Engine, request_id: str, status: str) -> None:
    with Session(engine) as session:
        request = session.get(FeedbackRequest, request_id)
        assert request is not None
        request.status = status
        session.add(request)
        session.commit()


ALL = [
    "draft",
    "scheduled",
    "sent",
    "followed_up",
    "responded",
    "declined",
    "no_response",
    "cancelled",
    "opted_out",
    "bounced",
]
ALLOWED_EMAIL = {
    "patch": {"draft", "scheduled"},
    "send": {"draft", "scheduled"},
    "cancel": {"draft", "scheduled", "sent", "followed_up"},
    # no_response too: a late answer is still worth keeping.
    "responses": {"sent", "followed_up", "no_response"},
}


@pytest.mark.parametrize("action", sorted(ALLOWED_EMAIL))
def test_the_status_machine(
    client: TestClient, engine: Engine, user: UserHandle, action: str
) -> None:
    rejection = make_rejection(user)
    for status in ALL:
        request = create_request(user, rejection["id"], status="draft")
        _force_status(engine, request["id"], status)
        url = f"/v1/feedback-requests/{request['id']}"
        if action == "patch":
            response = client.patch(url, json={"subject": "New subject"}, headers=user.headers)
        elif action == "responses":
            response = client.post(
                f"{url}/responses", json={"outcome": "declined"}, headers=user.headers
            )
        else:
            response = client.post(f"{url}/{action}", headers=user.headers)
        if status in ALLOWED_EMAIL[action]:
            assert response.status_code in (200, 201), (status, response.text)
        else:
            assert response.status_code == 409, (status, response.text)
            problem = response.json()
            assert problem["current_status"] == status
            assert status in problem["detail"]
            assert get_request(user, request["id"])["status"] == status


def test_hand_tracked_send_only_from_draft(
    client: TestClient, engine: Engine, user: UserHandle
) -> None:
    rejection = make_rejection(user)
    for status in ALL:
        request = create_request(user, rejection["id"], channel="phone")
        _force_status(engine, request["id"], status)
        response = client.post(f"/v1/feedback-requests/{request['id']}/send", headers=user.headers)
        assert response.status_code == (200 if status == "draft" else 409), status


def test_patch_while_scheduled(client: TestClient, db: Session, user: UserHandle) -> None:
    request = create_request(user)
    url = f"/v1/feedback-requests/{request['id']}"
    later = (utcnow() + timedelta(days=2)).replace(microsecond=0)
    stale = client.patch(url, json={"subject": "x"}, headers={**user.headers, "If-Match": '"7"'})
    assert stale.status_code == 412
    changed = client.patch(
        url,
        json={
            "subject": "Could I ask you something?",
            "send_at": later.isoformat(),
            "max_follow_ups": 1,
        },
        headers={**user.headers, "If-Match": '"1"'},
    )
    assert changed.status_code == 200, changed.text
    assert changed.headers["ETag"] == '"2"'
    assert changed.json()["subject"] == "Could I ask you something?"
    assert changed.json()["max_follow_ups"] == 1
    job = db.exec(select(Job).where(Job.kind == "feedback.send_message")).one()
    assert job.run_at == later  # the queued send moved with it
    assert (
        timeline(user, request["id"])[-1]["detail"] == "Changed subject, send_at, max_follow_ups."
    )
    cleared = client.patch(url, json={"subject": None}, headers=user.headers)
    assert cleared.status_code == 422
    injected = client.patch(url, json={"recipient_name": "A\r\nB"}, headers=user.headers)
    assert injected.status_code == 422
    too_short = client.patch(url, json={"follow_up_interval": "PT0S"}, headers=user.headers)
    assert too_short.status_code == 422
    assert get_request(user, request["id"])["subject"] == "Could I ask you something?"


def _send_jobs(engine: Engine) -> list[Job]:
    with Session(engine) as session:
        return list(session.exec(select(Job).where(Job.kind == "feedback.send_message")))


def test_a_draft_is_scheduled_by_patch_or_send(
    client: TestClient, engine: Engine, user: UserHandle
) -> None:
    draft = create_request(user, status="draft")
    assert _send_jobs(engine) == []
    url = f"/v1/feedback-requests/{draft['id']}"
    scheduled = client.patch(url, json={"status": "scheduled"}, headers=user.headers)
    assert scheduled.json()["status"] == "scheduled"
    assert len(_send_jobs(engine)) == 1
    back = client.patch(url, json={"status": "draft"}, headers=user.headers)
    assert back.status_code == 409
    assert back.json()["current_status"] == "scheduled"

    other = create_request(user, status="draft", send_at=(utcnow() + timedelta(days=5)).isoformat())
    now = client.post(f"/v1/feedback-requests/{other['id']}/send", headers=user.headers)
    assert now.status_code == 200
    assert now.json()["status"] == "scheduled"
    assert _near_now(now.json()["send_at"])
    assert [e["type"] for e in timeline(user, other["id"])] == ["created", "send_requested"]


def test_lists_filter_and_page(client: TestClient, user: UserHandle) -> None:
    rejection = make_rejection(user)
    first = create_request(user, rejection["id"])
    second = create_request(user, rejection["id"], status="draft")
    third = create_request(user)
    everything = client.get("/v1/feedback-requests", headers=user.headers).json()
    assert [item["id"] for item in everything["items"]] == [third["id"], second["id"], first["id"]]
    drafts = client.get("/v1/feedback-requests?status=draft", headers=user.headers).json()
    assert [item["id"] for item in drafts["items"]] == [second["id"]]
    assert client.get("/v1/feedback-requests?status=lost", headers=user.headers).status_code == 422
    page = client.get("/v1/feedback-requests?limit=2", headers=user.headers).json()
    assert len(page["items"]) == 2
    rest = client.get(
        f"/v1/feedback-requests?limit=2&cursor={page['next_cursor']}", headers=user.headers
    ).json()
    assert [item["id"] for item in rest["items"]] == [first["id"]]
    assert rest["next_cursor"] is None
    of_rejection = client.get(_url(rejection["id"]), headers=user.headers).json()
    assert {item["id"] for item in of_rejection["items"]} == {first["id"], second["id"]}


def test_the_timeline_pages_oldest_first(client: TestClient, db: Session, user: UserHandle) -> None:
    request = create_request(user, status="draft")
    url = f"/v1/feedback-requests/{request['id']}"
    for number in range(3):
        assert (
            client.patch(
                url, json={"subject": f"Subject {number}"}, headers=user.headers
            ).status_code
            == 200
        )
    first = client.get(f"{url}/events?limit=2", headers=user.headers).json()
    assert [e["type"] for e in first["items"]] == ["created", "updated"]
    assert set(first["items"][0]) == {"type", "at", "status", "detail"}
    second = client.get(
        f"{url}/events?limit=2&cursor={first['next_cursor']}", headers=user.headers
    ).json()
    assert [e["detail"] for e in second["items"]] == ["Changed subject.", "Changed subject."]
    assert second["next_cursor"] is None
    assert len(db.exec(select(FeedbackRequestEvent)).all()) == 4
    bad = client.get(f"{url}/events?cursor=bm90LWEtbnVtYmVy", headers=user.headers)
    assert bad.status_code == 422


def test_a_deleted_rejection_hides_its_requests(client: TestClient, user: UserHandle) -> None:
    rejection = make_rejection(user)
    request = create_request(user, rejection["id"])
    assert (
        client.delete(f"/v1/rejections/{rejection['id']}", headers=user.headers).status_code == 204
    )
    assert (
        client.get(f"/v1/feedback-requests/{request['id']}", headers=user.headers).status_code
        == 404
    )
    assert client.get("/v1/feedback-requests", headers=user.headers).json()["items"] == []


def test_rejected_on_is_a_date(user: UserHandle) -> None:
    # A guard for the default send time: rejected_on stays a calendar date.
    assert date.fromisoformat(make_rejection(user)["rejected_on"])
