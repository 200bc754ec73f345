from __future__ import annotations

from datetime import date, datetime
from urllib.parse import urlsplit

from fastapi.testclient import TestClient
from icalendar import Calendar
from sqlmodel import Session, select

from api.models.action_plan import CalendarFeed
from tests.action_plans.test_router import make_item, make_plan
from tests.factories import UserHandle, make_user


def new_feed(user: UserHandle) -> str:
    response = user.client.post("/v1/me/calendar-feed", headers=user.headers)
    assert response.status_code == 201, response.text
    url = response.json()["url"]
    assert url.startswith("http://testserver/v1/calendar/") and url.endswith(".ics")
    return urlsplit(url).path


def fetch(client: TestClient, path: str) -> Calendar:
    response = client.get(path)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/calendar")
    return Calendar.from_ical(response.content)


def test_feed_has_one_all_day_event_per_open_dated_item(client: TestClient) -> None:
    user = make_user(client)
    plan = make_plan(user, title="Interview practice")
    todo = make_item(user, plan["id"], title="Mock interview", due_on="2026-12-01", notes="Ask Sam")
    doing = make_item(user, plan["id"], title="STAR stories", due_on="2026-12-03", status="doing")
    make_item(user, plan["id"], title="Done already", due_on="2026-12-02", status="done")
    make_item(user, plan["id"], title="Dropped", due_on="2026-12-02", status="dropped")
    make_item(user, plan["id"], title="Someday")  # no date
    gone = make_item(user, plan["id"], title="Deleted", due_on="2026-12-04")
    assert client.delete(f"/v1/action-items/{gone['id']}", headers=user.headers).status_code == 204
    other_user = make_user(client)
    make_item(other_user, make_plan(other_user)["id"], title="Not mine", due_on="2026-12-01")

    path = new_feed(user)
    calendar = fetch(client, path)
    assert str(calendar["VERSION"]) == "2.0"
    assert str(calendar["PRODID"]) == "-//Rebound//Action items//EN"
    events = calendar.walk("VEVENT")
    assert [str(event["SUMMARY"]) for event in events] == ["Mock interview", "STAR stories"]
    first, second = events
    assert first.decoded("DTSTART") == date(2026, 12, 1)
    assert first["DTSTART"].params.get("VALUE") == "DATE"
    assert first.decoded("DTEND") == date(2026, 12, 2)
    assert second.decoded("DTSTART") == date(2026, 12, 3)
    assert isinstance(first.decoded("DTSTAMP"), datetime)
    assert "Interview practice" in str(first["DESCRIPTION"])
    assert "Ask Sam" in str(first["DESCRIPTION"])
    assert str(first["UID"]) == f"action-item-{todo['id']}@rebound"
    assert str(second["UID"]) == f"action-item-{doing['id']}@rebound"

    # UIDs are stable across fetches; a change shows up on the next one.
    client.patch(
        f"/v1/action-items/{todo['id']}", json={"due_on": "2026-12-05"}, headers=user.headers
    )
    again = fetch(client, path).walk("VEVENT")
    assert [str(event["UID"]) for event in again] == [str(second["UID"]), str(first["UID"])]
    assert again[1].decoded("DTSTART") == date(2026, 12, 5)


def test_a_new_address_replaces_the_old_and_delete_revokes(client: TestClient, db: Session) -> None:
    user = make_user(client)
    first = new_feed(user)
    assert client.get(first).status_code == 200
    second = new_feed(user)
    assert second != first
    missing = client.get(first)
    assert missing.status_code == 404
    assert missing.headers["content-type"] == "application/problem+json"
    assert client.get(second).status_code == 200
    rows = db.exec(select(CalendarFeed)).all()
    assert len(rows) == 1
    token = second.removeprefix("/v1/calendar/").removesuffix(".ics")
    assert token not in rows[0].token_hash and len(rows[0].token_hash) == 64

    assert client.delete("/v1/me/calendar-feed", headers=user.headers).status_code == 204
    assert client.get(second).status_code == 404
    assert client.delete("/v1/me/calendar-feed", headers=user.headers).status_code == 204


def test_feed_needs_a_login_to_manage_and_unknown_tokens_are_404(client: TestClient) -> None:
    assert client.post("/v1/me/calendar-feed").status_code == 401
    assert client.delete("/v1/me/calendar-feed").status_code == 401
    assert client.get("/v1/calendar/not-a-real-token.ics").status_code == 404
    assert client.get("/v1/calendar/x.ics").status_code == 404


def test_empty_feed_is_still_a_valid_calendar(client: TestClient) -> None:
    user = make_user(client)
    calendar = fetch(client, new_feed(user))
    assert calendar.walk("VEVENT") == []
    assert str(calendar["PRODID"]) == "-//Rebound//Action items//EN"
