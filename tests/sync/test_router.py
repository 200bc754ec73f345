"""Offline sync: a client that applies the pages in order ends with the server's state."""

from __future__ import annotations

import random
import threading
from typing import Any

import httpx
from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine
from sqlmodel import Session, SQLModel, col, select

from api.db import open_session
from api.models import Tracked
from api.sync.registry import sync_types
from tests.factories import UserHandle, make_rejection, make_user, rejection_body

SPEC_TYPES = {
    "rejection",
    "reflection",
    "feedback_request",
    "action_plan",
    "action_item",
    "profile",
}

Key = tuple[str, str]


class Replica:
    """A device's copy: applies sync pages in order, keeps the cursor between syncs."""

    def __init__(self) -> None:
        self.objects: dict[Key, dict[str, Any]] = {}
        self.cursor: str | None = None
        self.pages = 0

    def apply(self, page: dict[str, Any]) -> None:
        assert set(page) == {"upserted", "deleted", "next_cursor", "has_more"}
        seen: set[Key] = set()
        for change in page["upserted"]:
            key = (change["type"], change["object"]["id"])
            assert key not in seen, f"{key} twice in one page"
            seen.add(key)
            self.objects[key] = change["object"]
        for gone in page["deleted"]:
            key = (gone["type"], gone["id"])
            assert key not in seen, f"{key} twice in one page"
            seen.add(key)
            self.objects.pop(key, None)
        if self.cursor is not None:
            assert int(page["next_cursor"]) >= int(self.cursor), "the cursor went backwards"
        self.cursor = page["next_cursor"]
        self.pages += 1

    def pull(self, get: Any, headers: dict[str, str], *, limit: int = 100) -> dict[str, Any]:
        params: dict[str, Any] = {"limit": limit}
        if self.cursor is not None:
            params["since"] = self.cursor
        response = get("/v1/sync", params=params, headers=headers)
        assert response.status_code == 200, response.text
        page: dict[str, Any] = response.json()
        self.apply(page)
        return page

    def sync(self, get: Any, headers: dict[str, str], *, limit: int = 100) -> None:
        """Pull until the server says there is no more."""
        for _ in range(10_000):
            if not self.pull(get, headers, limit=limit)["has_more"]:
                return
        raise AssertionError("sync never finished")


def server_state(engine: Engine, user_id: str) -> dict[Key, dict[str, Any]]:
    """Every live object of the user, as each registered type serializes it."""
    state: dict[Key, dict[str, Any]] = {}
    with open_session(engine, write=False) as session:
        for sync_type in sync_types():
            model: Any = sync_type.model
            rows = list(
                session.exec(
                    select(model).where(model.user_id == user_id, col(model.deleted_at).is_(None))
                )
            )
            for row, obj in zip(rows, sync_type.serialize(session, rows), strict=True):
                state[(sync_type.name, row.id)] = obj
    return state


def test_every_tracked_table_is_a_sync_type_of_the_spec() -> None:
    tracked = {
        mapper.class_
        for mapper in SQLModel._sa_registry.mappers  # type: ignore[attr-defined]
        if issubclass(mapper.class_, Tracked)
    }
    registered = {sync_type.model: sync_type.name for sync_type in sync_types()}
    missing = {model.__name__ for model in tracked} - {model.__name__ for model in registered}
    assert not missing, f"tracked tables missing from sync (register_sync_type): {missing}"
    assert set(registered.values()) <= SPEC_TYPES


def test_from_scratch_the_objects_are_what_their_own_gets_return(client: TestClient) -> None:
    user = make_user(client)
    first = make_rejection(user, company="Acme")
    second = make_rejection(user, company="Globex")
    client.put(
        "/v1/me/profile",
        json={"goals": ["Lead"], "values": [{"name": "growth", "weight": 4}], "target_roles": []},
        headers=user.headers,
    )
    page = client.get("/v1/sync", headers=user.headers).json()
    assert page["has_more"] is False
    objects = {(item["type"], item["object"]["id"]): item["object"] for item in page["upserted"]}
    for rejection in (first, second):
        own = client.get(f"/v1/rejections/{rejection['id']}", headers=user.headers).json()
        assert objects[("rejection", rejection["id"])] == own
        if any(sync_type.name == "reflection" for sync_type in sync_types()):
            reflection = client.get(
                f"/v1/rejections/{rejection['id']}/reflection", headers=user.headers
            ).json()
            found = [obj for (kind, _), obj in objects.items() if kind == "reflection"]
            assert reflection in found
    profile = client.get("/v1/me/profile", headers=user.headers).json()
    assert objects[("profile", profile["id"])] == profile
    assert page["deleted"] == []


def test_incremental_pages_carry_only_what_changed(client: TestClient) -> None:
    user = make_user(client)
    kept = make_rejection(user, company="Kept")
    changed = make_rejection(user, company="Changed")
    removed = make_rejection(user, company="Removed")
    cursor = client.get("/v1/sync", headers=user.headers).json()["next_cursor"]

    nothing = client.get("/v1/sync", params={"since": cursor}, headers=user.headers).json()
    assert nothing == {"upserted": [], "deleted": [], "next_cursor": cursor, "has_more": False}

    client.patch(f"/v1/rejections/{changed['id']}", json={"notes": "new"}, headers=user.headers)
    client.delete(f"/v1/rejections/{removed['id']}", headers=user.headers)
    page = client.get("/v1/sync", params={"since": cursor}, headers=user.headers).json()
    upserted = [(item["type"], item["object"]["id"]) for item in page["upserted"]]
    assert upserted == [("rejection", changed["id"])]
    assert page["upserted"][0]["object"]["notes"] == "new"
    assert {"type": "rejection", "id": removed["id"]} in page["deleted"]
    assert all(item["id"] != kept["id"] for item in page["deleted"])
    assert int(page["next_cursor"]) > int(cursor)


def test_pages_follow_in_change_order(client: TestClient) -> None:
    user = make_user(client)
    for n in range(7):
        make_rejection(user, company=f"Company {n}")
    replica = Replica()
    pages: list[dict[str, Any]] = []
    while True:
        pages.append(replica.pull(client.get, user.headers, limit=3))
        if not pages[-1]["has_more"]:
            break
    assert all(len(page["upserted"]) + len(page["deleted"]) == 3 for page in pages[:-1])
    companies = [
        item["object"]["company"]
        for page in pages
        for item in page["upserted"]
        if item["type"] == "rejection"
    ]
    assert companies == [f"Company {n}" for n in range(7)]  # oldest change first


def test_another_users_changes_never_appear(client: TestClient) -> None:
    alice, bob = make_user(client), make_user(client)
    make_rejection(alice)
    page = client.get("/v1/sync", headers=bob.headers).json()
    assert [item["type"] for item in page["upserted"]] == ["profile"]


def test_bad_cursors_and_limits_are_422(client: TestClient) -> None:
    user = make_user(client)
    for params in (
        {"since": "abc"},
        {"since": "-1"},
        {"since": "1" * 21},
        {"since": "999999"},  # ahead of every change this account has
        {"limit": 0},
        {"limit": 501},
    ):
        response = client.get("/v1/sync", params=params, headers=user.headers)
        assert response.status_code == 422, (params, response.text)
        assert response.headers["content-type"] == "application/problem+json"
    assert client.get("/v1/sync").status_code == 401


class World:
    """What the random writer has made and not deleted, to pick its next target from."""

    def __init__(self) -> None:
        self.rejections: list[str] = []
        self.plans: list[str] = []
        self.items: list[str] = []


def _random_write(client: TestClient, user: UserHandle, rng: random.Random, world: World) -> None:
    """One write of a kind a device would make, to any of the synced types."""
    headers = user.headers
    action = rng.choice(
        [
            "create",
            "create",
            "patch",
            "delete",
            "profile",
            "step",
            "feedback",
            "plan",
            "item",
            "item_patch",
            "item_delete",
        ]
    )
    if action == "create" or not world.rejections:
        world.rejections.append(make_rejection(user, company=f"Co {rng.randrange(1000)}")["id"])
        return
    target = rng.choice(world.rejections)
    if action == "patch":
        response = client.patch(
            f"/v1/rejections/{target}",
            json={"notes": f"note {rng.randrange(1000)}", "stage": rng.choice(["phone", "final"])},
            headers=headers,
        )
    elif action == "delete":
        world.rejections.remove(target)
        response = client.delete(f"/v1/rejections/{target}", headers=headers)
    elif action == "profile":
        response = client.put(
            "/v1/me/profile",
            json={"goals": [f"goal {rng.randrange(1000)}"], "values": [], "target_roles": []},
            headers=headers,
        )
    elif action == "step":
        response = client.put(
            f"/v1/rejections/{target}/reflection/steps/attitude",
            json={"status": "done", "content": {"confidence": rng.randint(1, 5)}},
            headers=headers,
        )
    elif action == "feedback":
        response = client.post(
            f"/v1/rejections/{target}/feedback-requests",
            json={"channel": "phone", "recipient_name": "Dana"},
            headers=headers,
        )
    elif action == "plan" or not world.plans:
        response = client.post(
            "/v1/action-plans", json={"title": f"Plan {rng.randrange(1000)}"}, headers=headers
        )
        world.plans.append(response.json()["id"])
    elif action == "item" or not world.items:
        plan = rng.choice(world.plans)
        response = client.post(
            f"/v1/action-plans/{plan}/items", json={"title": "Practise"}, headers=headers
        )
        world.items.append(response.json()["id"])
    elif action == "item_patch":
        response = client.patch(
            f"/v1/action-items/{rng.choice(world.items)}",
            json={"progress": rng.randrange(0, 100, 10)},
            headers=headers,
        )
    else:
        item = world.items.pop(rng.randrange(len(world.items)))
        response = client.delete(f"/v1/action-items/{item}", headers=headers)
    assert response.status_code in (200, 201, 204), (action, response.text)


def test_a_client_syncing_between_writes_ends_with_the_server_state(
    client: TestClient, engine: Engine
) -> None:
    rng = random.Random(20261125)
    user = make_user(client)
    world = World()
    for _ in range(15):
        _random_write(client, user, rng, world)
    phone, laptop = Replica(), Replica()
    # The phone syncs a page at a time while writes keep landing between its pages.
    for _ in range(40):
        phone.pull(client.get, user.headers, limit=rng.randint(1, 4))
        for _ in range(rng.randint(0, 2)):
            _random_write(client, user, rng, world)
    phone.sync(client.get, user.headers, limit=3)
    # The laptop starts from scratch at the end, in one go.
    laptop.sync(client.get, user.headers, limit=500)
    expected = server_state(engine, user.id)
    assert phone.objects == expected
    assert laptop.objects == expected
    rejections = {key[1] for key in expected if key[0] == "rejection"}
    assert rejections == set(world.rejections)
    assert {kind for kind, _ in expected} == {sync_type.name for sync_type in sync_types()}
    # Incremental: one more change, one more small page.
    _random_write(client, user, rng, world)
    phone.sync(client.get, user.headers)
    assert phone.objects == server_state(engine, user.id)


def test_sync_under_truly_concurrent_writes_converges(
    client: TestClient, engine: Engine, server_url: str, db: Session
) -> None:
    """Writers on their own connections commit while a device pulls page after page."""
    user = make_user(client)
    seeded = [make_rejection(user, company=f"Seed {n}")["id"] for n in range(4)]
    done = threading.Event()
    errors: list[str] = []

    def writer(worker: int) -> None:
        with httpx.Client(base_url=server_url, headers=user.headers, timeout=60) as http:
            for step in range(12):
                if step % 4 == 3:
                    response = http.patch(
                        f"/v1/rejections/{seeded[worker]}", json={"notes": f"{worker}-{step}"}
                    )
                else:
                    response = http.post(
                        "/v1/rejections", json=rejection_body(company=f"W{worker}-{step}")
                    )
                if response.status_code not in (200, 201):
                    errors.append(response.text)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(3)]
    for thread in threads:
        thread.start()
    replica = Replica()
    with httpx.Client(base_url=server_url, timeout=60) as http:
        watcher = threading.Thread(
            target=lambda: ([thread.join() for thread in threads], done.set())
        )
        watcher.start()
        while not done.is_set():
            replica.pull(http.get, user.headers, limit=2)
        watcher.join()
        replica.sync(http.get, user.headers, limit=2)
    assert errors == []
    assert replica.objects == server_state(engine, user.id)
    companies = {
        obj["company"] for (kind, _), obj in replica.objects.items() if kind == "rejection"
    }
    assert {f"W{w}-{s}" for w in range(3) for s in range(12) if s % 4 != 3} <= companies
