from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient
from sqlmodel import Session, col, select

from api.models import DomainEvent
from api.models.action_plan import ActionItem, ActionPlan
from tests.factories import UserHandle, make_rejection, make_user


def make_plan(user: UserHandle, **fields: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"title": "Get better at system design", **fields}
    response = user.client.post("/v1/action-plans", json=body, headers=user.headers)
    assert response.status_code == 201, response.text
    return dict(response.json())


def make_item(user: UserHandle, plan_id: str, **fields: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"title": "Read a chapter", "kind": "upskill", **fields}
    response = user.client.post(
        f"/v1/action-plans/{plan_id}/items", json=body, headers=user.headers
    )
    assert response.status_code == 201, response.text
    return dict(response.json())


def plan_progress(user: UserHandle, plan_id: str) -> int:
    response = user.client.get(f"/v1/action-plans/{plan_id}", headers=user.headers)
    assert response.status_code == 200, response.text
    return int(response.json()["progress"])


def test_create_plan_links_rejections_and_normalises_skills(client: TestClient) -> None:
    user = make_user(client)
    first, second = make_rejection(user), make_rejection(user, company="Globex")
    response = client.post(
        "/v1/action-plans",
        json={
            "title": "Close the SQL gap",
            "goal": "Pass the next technical screen",
            "rejection_ids": [first["id"], second["id"], first["id"]],
            "skills": ["  SQL ", "sql", "System   Design"],
        },
        headers=user.headers,
    )
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["rejection_ids"] == [first["id"], second["id"]]
    assert body["skills"] == ["sql", "system design"]
    assert body["progress"] == 0
    assert body["goal"] == "Pass the next technical screen"
    assert response.headers["ETag"] == '"1"'
    assert response.headers["Location"] == f"/v1/action-plans/{body['id']}"
    assert client.get(response.headers["Location"], headers=user.headers).json() == body


def test_invalid_plans_are_refused_and_nothing_is_written(client: TestClient, db: Session) -> None:
    user, other = make_user(client), make_user(client)
    mine = make_rejection(user)
    theirs = make_rejection(other)
    deleted = make_rejection(user)
    assert client.delete(f"/v1/rejections/{deleted['id']}", headers=user.headers).status_code == 204
    cases: list[tuple[dict[str, Any], list[Any]]] = [
        ({"title": "x", "rejection_ids": [mine["id"], theirs["id"]]}, ["rejection_ids", 1]),
        ({"title": "x", "rejection_ids": [deleted["id"]]}, ["rejection_ids", 0]),
        ({"title": "x", "rejection_ids": ["nope"]}, ["rejection_ids", 0]),
        ({"title": "x", "progress": 40}, ["progress"]),
        ({"title": "x", "skills": ["   "]}, ["skills", 0]),
        ({"title": ""}, ["title"]),
        ({"title": "x", "colour": "red"}, ["colour"]),
        ({}, ["title"]),
    ]
    for body, loc in cases:
        response = client.post("/v1/action-plans", json=body, headers=user.headers)
        assert response.status_code == 422, (body, response.text)
        assert response.headers["content-type"] == "application/problem+json"
        locs = [error["loc"][1:] for error in response.json()["errors"]]
        assert loc in locs, (body, response.json())
    bad_id = client.post(
        "/v1/action-plans",
        json={"title": "x", "rejection_ids": [theirs["id"]]},
        headers=user.headers,
    )
    assert theirs["id"] in bad_id.json()["detail"]
    assert db.exec(select(ActionPlan)).all() == []


def test_patch_plan_checks_if_match_and_refuses_progress(client: TestClient) -> None:
    user = make_user(client)
    rejection = make_rejection(user)
    plan = make_plan(user)
    url = f"/v1/action-plans/{plan['id']}"
    updated = client.patch(
        url,
        json={"title": "Renamed", "rejection_ids": [rejection["id"]], "skills": ["Kubernetes"]},
        headers={**user.headers, "If-Match": '"1"'},
    )
    assert updated.status_code == 200, updated.text
    assert updated.headers["ETag"] == '"2"'
    assert updated.json()["skills"] == ["kubernetes"]
    assert updated.json()["rejection_ids"] == [rejection["id"]]
    stale = client.patch(url, json={"goal": "x"}, headers={**user.headers, "If-Match": '"1"'})
    assert stale.status_code == 412
    assert client.patch(url, json={"progress": 100}, headers=user.headers).status_code == 422
    assert client.patch(url, json={"title": None}, headers=user.headers).status_code == 422
    cleared = client.patch(url, json={"goal": None}, headers=user.headers)
    assert cleared.status_code == 200 and cleared.json()["goal"] is None
    assert client.get(url, headers=user.headers).json()["title"] == "Renamed"


def test_progress_is_the_rounded_mean_of_items_not_dropped(client: TestClient) -> None:
    user = make_user(client)
    plan = make_plan(user)
    plan_id = plan["id"]
    assert plan_progress(user, plan_id) == 0
    a = make_item(user, plan_id, progress=50)
    assert plan_progress(user, plan_id) == 50
    make_item(user, plan_id, progress=51)
    assert plan_progress(user, plan_id) == 51  # 50.5 rounds half up
    dropped = make_item(user, plan_id, progress=0, status="dropped")
    assert plan_progress(user, plan_id) == 51  # dropped items are left out
    done = make_item(user, plan_id, status="done")
    assert done["progress"] == 100
    assert plan_progress(user, plan_id) == 67  # (50 + 51 + 100) / 3 = 67.0
    patched = client.patch(
        f"/v1/action-items/{a['id']}", json={"progress": 20}, headers=user.headers
    )
    assert patched.status_code == 200
    assert plan_progress(user, plan_id) == 57  # (20 + 51 + 100) / 3 = 57.0
    assert client.delete(f"/v1/action-items/{done['id']}", headers=user.headers).status_code == 204
    assert plan_progress(user, plan_id) == 36  # (20 + 51) / 2 = 35.5
    client.patch(f"/v1/action-items/{dropped['id']}", json={"status": "todo"}, headers=user.headers)
    assert plan_progress(user, plan_id) == 24  # (20 + 51 + 0) / 3 = 23.67


def test_plan_etag_moves_when_its_progress_moves(client: TestClient) -> None:
    user = make_user(client)
    plan = make_plan(user)
    url = f"/v1/action-plans/{plan['id']}"
    before = client.get(url, headers=user.headers).headers["ETag"]
    make_item(user, plan["id"], progress=40)
    after = client.get(url, headers=user.headers).headers["ETag"]
    assert before != after


def test_done_means_100_and_is_announced_once(client: TestClient, db: Session) -> None:
    user = make_user(client)
    plan = make_plan(user)
    item = make_item(user, plan["id"], progress=30)
    url = f"/v1/action-items/{item['id']}"
    refused = client.patch(url, json={"status": "done", "progress": 60}, headers=user.headers)
    assert refused.status_code == 422
    assert ["body", "progress"] in [e["loc"] for e in refused.json()["errors"]]
    done = client.patch(url, json={"status": "done"}, headers=user.headers)
    assert done.status_code == 200
    assert done.json()["status"] == "done"
    assert done.json()["progress"] == 100
    again = client.patch(url, json={"notes": "finished early"}, headers=user.headers)
    assert again.status_code == 200
    assert client.patch(url, json={"progress": 90}, headers=user.headers).status_code == 422
    events = db.exec(
        select(DomainEvent).where(col(DomainEvent.type) == "action_item.completed")
    ).all()
    assert [event.subject_id for event in events] == [item["id"]]
    created_done = make_item(user, plan["id"], status="done", progress=100)
    db.rollback()  # a new snapshot
    events = db.exec(
        select(DomainEvent).where(col(DomainEvent.type) == "action_item.completed")
    ).all()
    assert sorted(event.subject_id for event in events) == sorted([item["id"], created_done["id"]])


def test_invalid_items_are_refused_and_nothing_is_written(client: TestClient, db: Session) -> None:
    user = make_user(client)
    plan = make_plan(user)
    url = f"/v1/action-plans/{plan['id']}/items"
    cases: list[tuple[dict[str, Any], str]] = [
        ({"title": "x", "kind": "hobby"}, "kind"),
        ({"title": "x", "status": "paused"}, "status"),
        ({"title": "x", "progress": 101}, "progress"),
        ({"title": "x", "progress": -1}, "progress"),
        ({"title": "x", "due_on": "tomorrow"}, "due_on"),
        ({"title": "x", "status": "done", "progress": 10}, "progress"),
        ({"title": ""}, "title"),
        ({"title": "x", "plan": "y"}, "plan"),
    ]
    for body, field in cases:
        response = client.post(url, json=body, headers=user.headers)
        assert response.status_code == 422, (body, response.text)
        locs = [part for error in response.json()["errors"] for part in error["loc"]]
        assert field in locs, (body, response.json())
    assert db.exec(select(ActionItem)).all() == []


def test_other_users_plans_and_items_are_404(client: TestClient) -> None:
    alice, bob = make_user(client), make_user(client)
    plan = make_plan(alice)
    item = make_item(alice, plan["id"])
    plan_url, item_url = f"/v1/action-plans/{plan['id']}", f"/v1/action-items/{item['id']}"
    for url in (plan_url, item_url):
        assert client.get(url, headers=bob.headers).status_code == 404
        assert client.patch(url, json={"title": "mine"}, headers=bob.headers).status_code == 404
        assert client.delete(url, headers=bob.headers).status_code == 404
    created = client.post(f"{plan_url}/items", json={"title": "x"}, headers=bob.headers)
    assert created.status_code == 404
    assert client.get("/v1/action-plans", headers=bob.headers).json()["items"] == []
    assert client.get("/v1/action-items", headers=bob.headers).json()["items"] == []
    bobs_plan = make_plan(bob)
    moved = client.patch(item_url, json={"plan_id": bobs_plan["id"]}, headers=alice.headers)
    assert moved.status_code == 422
    assert client.get(item_url, headers=alice.headers).json()["title"] == "Read a chapter"


def test_moving_an_item_updates_both_plans(client: TestClient) -> None:
    user = make_user(client)
    first, second = make_plan(user), make_plan(user, title="Networking")
    item = make_item(user, first["id"], progress=80)
    make_item(user, second["id"], progress=20)
    assert (plan_progress(user, first["id"]), plan_progress(user, second["id"])) == (80, 20)
    moved = client.patch(
        f"/v1/action-items/{item['id']}", json={"plan_id": second["id"]}, headers=user.headers
    )
    assert moved.status_code == 200 and moved.json()["plan_id"] == second["id"]
    assert (plan_progress(user, first["id"]), plan_progress(user, second["id"])) == (0, 50)


def test_deleting_a_plan_deletes_its_items_as_tombstones(client: TestClient, db: Session) -> None:
    user = make_user(client)
    plan = make_plan(user)
    items = [make_item(user, plan["id"], due_on="2026-12-01", progress=p) for p in (0, 50)]
    stale = client.delete(
        f"/v1/action-plans/{plan['id']}", headers={**user.headers, "If-Match": '"1"'}
    )
    assert stale.status_code == 412  # the second item moved the plan's progress
    etag = client.get(f"/v1/action-plans/{plan['id']}", headers=user.headers).headers["ETag"]
    deleted = client.delete(
        f"/v1/action-plans/{plan['id']}", headers={**user.headers, "If-Match": etag}
    )
    assert deleted.status_code == 204
    assert client.get(f"/v1/action-plans/{plan['id']}", headers=user.headers).status_code == 404
    for item in items:
        assert client.get(f"/v1/action-items/{item['id']}", headers=user.headers).status_code == 404
    assert client.get("/v1/action-items", headers=user.headers).json()["items"] == []
    assert client.get("/v1/action-plans", headers=user.headers).json()["items"] == []
    rows = db.exec(select(ActionItem)).all()
    assert len(rows) == 2 and all(row.deleted_at is not None for row in rows)
    assert db.exec(select(ActionPlan)).one().deleted_at is not None


def test_agenda_orders_by_due_date_undated_last_across_pages(client: TestClient) -> None:
    user = make_user(client)
    first, second = make_plan(user), make_plan(user, title="Second")
    dates = [None, "2026-12-03", "2026-12-01", None, "2026-12-03", "2026-11-20", "2026-12-01"]
    made = [
        make_item(user, (first if n % 2 else second)["id"], title=f"item {n}", due_on=due)
        for n, due in enumerate(dates)
    ]
    expected = sorted(made, key=lambda i: (i["due_on"] is None, i["due_on"] or "", i["id"]))
    seen: list[dict[str, Any]] = []
    cursor: str | None = None
    pages = 0
    while True:
        params: dict[str, Any] = {"limit": 2}
        if cursor:
            params["cursor"] = cursor
        page = client.get("/v1/action-items", params=params, headers=user.headers).json()
        seen += page["items"]
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert pages == 4
    assert [i["id"] for i in seen] == [i["id"] for i in expected]
    assert [i["due_on"] for i in seen] == [
        "2026-11-20",
        "2026-12-01",
        "2026-12-01",
        "2026-12-03",
        "2026-12-03",
        None,
        None,
    ]


def test_agenda_filters(client: TestClient) -> None:
    user = make_user(client)
    plan, other_plan = make_plan(user), make_plan(user, title="Other")
    a = make_item(user, plan["id"], due_on="2026-12-01")
    b = make_item(user, plan["id"], due_on="2026-12-02", status="doing")
    c = make_item(user, other_plan["id"], due_on="2026-12-03", status="done")
    d = make_item(user, plan["id"])  # undated

    def ids(**params: Any) -> list[str]:
        response = client.get("/v1/action-items", params=params, headers=user.headers)
        assert response.status_code == 200, response.text
        return [item["id"] for item in response.json()["items"]]

    assert ids() == [a["id"], b["id"], c["id"], d["id"]]
    assert ids(due_before="2026-12-02") == [a["id"], b["id"]]  # inclusive, undated left out
    assert ids(due_before="2026-11-30") == []
    assert ids(status="todo") == [a["id"], d["id"]]
    assert ids(status=["todo", "doing"]) == [a["id"], b["id"], d["id"]]
    assert ids(plan_id=other_plan["id"]) == [c["id"]]
    bad = client.get("/v1/action-items", params={"status": "later"}, headers=user.headers)
    assert bad.status_code == 422
    bad_cursor = client.get("/v1/action-items", params={"cursor": "!!"}, headers=user.headers)
    assert bad_cursor.status_code == 422


def test_plan_list_and_links_to_deleted_rejections(client: TestClient) -> None:
    user = make_user(client)
    kept, gone = make_rejection(user), make_rejection(user, company="Initech")
    linked = make_plan(user, rejection_ids=[kept["id"], gone["id"]])
    other = make_plan(user, title="Unlinked")
    listed = client.get("/v1/action-plans", headers=user.headers).json()["items"]
    assert [plan["id"] for plan in listed] == [other["id"], linked["id"]]
    only = client.get(
        "/v1/action-plans", params={"rejection_id": kept["id"]}, headers=user.headers
    ).json()["items"]
    assert [plan["id"] for plan in only] == [linked["id"]]
    assert client.delete(f"/v1/rejections/{gone['id']}", headers=user.headers).status_code == 204
    read = client.get(f"/v1/action-plans/{linked['id']}", headers=user.headers).json()
    assert read["rejection_ids"] == [kept["id"]]


def test_both_types_are_registered_for_sync(client: TestClient, db: Session) -> None:
    from api.sync.registry import sync_types

    user = make_user(client)
    plan = make_plan(user, skills=["SQL"])
    item = make_item(user, plan["id"], due_on="2026-12-01")
    by_name = {sync_type.name: sync_type for sync_type in sync_types()}
    plan_row = db.get(ActionPlan, plan["id"])
    item_row = db.get(ActionItem, item["id"])
    assert plan_row is not None and item_row is not None
    assert by_name["action_plan"].model is ActionPlan
    assert by_name["action_item"].model is ActionItem
    served_plan = client.get(f"/v1/action-plans/{plan['id']}", headers=user.headers).json()
    assert by_name["action_plan"].serialize(db, [plan_row]) == [served_plan]
    assert by_name["action_item"].serialize(db, [item_row]) == [item]
