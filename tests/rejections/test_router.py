from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from fastapi.testclient import TestClient
from sqlalchemy import update
from sqlmodel import Session, col, select

from api.models import ReflectionStep, Rejection
from tests.factories import make_rejection, make_user, rejection_body


def test_create_returns_201_with_etag_and_makes_the_reflection(
    client: TestClient, db: Session
) -> None:
    user = make_user(client)
    response = client.post(
        "/v1/rejections",
        json=rejection_body(tags=["dream job", "dream  job", "fintech"]),
        headers=user.headers,
    )
    assert response.status_code == 201
    body = response.json()
    assert body["company"] == "Acme Corp"
    assert body["tags"] == ["dream job", "fintech"]
    assert response.headers["ETag"] == '"1"'
    assert response.headers["Location"] == f"/v1/rejections/{body['id']}"
    steps = db.exec(select(ReflectionStep).where(ReflectionStep.user_id == user.id)).all()
    assert sorted(step.order for step in steps) == [1, 2, 3, 4, 5, 6, 7]


def test_rejected_on_defaults_to_today(client: TestClient) -> None:
    user = make_user(client)
    body = rejection_body()
    del body["rejected_on"], body["applied_on"]
    created = client.post("/v1/rejections", json=body, headers=user.headers)
    assert created.status_code == 201
    assert created.json()["rejected_on"]


def test_today_is_the_users_own_day(client: TestClient) -> None:
    """The default date and the future check follow the user's time zone: 25 hours
    apart, Kiritimati is always a day or two ahead of Pago Pago."""
    ahead = make_user(client, timezone="Pacific/Kiritimati")
    behind = make_user(client, timezone="Pacific/Pago_Pago")
    for user, zone in ((ahead, "Pacific/Kiritimati"), (behind, "Pacific/Pago_Pago")):
        body = rejection_body()
        del body["rejected_on"], body["applied_on"]
        before = datetime.now(ZoneInfo(zone)).date()
        created = client.post("/v1/rejections", json=body, headers=user.headers)
        after = datetime.now(ZoneInfo(zone)).date()
        assert created.status_code == 201, created.text
        assert created.json()["rejected_on"] in {before.isoformat(), after.isoformat()}

    kiritimati_today = datetime.now(ZoneInfo("Pacific/Kiritimati")).date().isoformat()
    accepted = client.post(
        "/v1/rejections",
        json=rejection_body(rejected_on=kiritimati_today, applied_on=None),
        headers=ahead.headers,
    )
    assert accepted.status_code == 201, accepted.text
    refused = client.post(
        "/v1/rejections",
        json=rejection_body(rejected_on=kiritimati_today, applied_on=None),
        headers=behind.headers,
    )
    assert refused.status_code == 422, refused.text
    assert refused.headers["content-type"] == "application/problem+json"
    assert refused.json()["errors"][0]["loc"] == ["body", "rejected_on"]
    listed = client.get("/v1/rejections", headers=behind.headers).json()["items"]
    assert len(listed) == 1


def test_invalid_rejections_are_refused_and_nothing_is_written(
    client: TestClient, db: Session
) -> None:
    user = make_user(client)
    cases = [
        (rejection_body(stage="lunch"), "stage"),
        (rejection_body(reason_code="bad_luck"), "reason_code"),
        (rejection_body(applied_on="2026-11-10", rejected_on="2026-11-01"), "applied_on"),
        (rejection_body(rejected_on="2999-01-01"), "rejected_on"),
        (rejection_body(contact_email="nope"), "contact_email"),
        (rejection_body(job_url="ftp://x"), "job_url"),
        (rejection_body(emotional_impact=6), "emotional_impact"),
        (rejection_body(company=""), "company"),
        (rejection_body(company="x" * 201), "company"),
        (rejection_body(tags=["x" * 41]), "tags"),
        (rejection_body(unknown_field=1), "unknown_field"),
    ]
    for body, field in cases:
        response = client.post("/v1/rejections", json=body, headers=user.headers)
        assert response.status_code == 422, (field, response.text)
        assert response.headers["content-type"] == "application/problem+json"
        locs = [part for error in response.json()["errors"] for part in error["loc"]]
        assert field in locs, (field, response.json())
    assert db.exec(select(Rejection)).all() == []


def test_another_users_rejection_is_404(client: TestClient) -> None:
    alice, bob = make_user(client), make_user(client)
    rejection = make_rejection(alice)
    url = f"/v1/rejections/{rejection['id']}"
    assert client.get(url, headers=bob.headers).status_code == 404
    assert client.patch(url, json={"notes": "mine"}, headers=bob.headers).status_code == 404
    assert client.delete(url, headers=bob.headers).status_code == 404
    assert client.get(url, headers=alice.headers).json()["notes"] is None
    assert client.get("/v1/rejections", headers=bob.headers).json()["items"] == []


def test_patch_with_if_match_and_stale_etag(client: TestClient) -> None:
    user = make_user(client)
    rejection = make_rejection(user)
    url = f"/v1/rejections/{rejection['id']}"
    updated = client.patch(
        url,
        json={"notes": "Ask about the team", "stage": "final"},
        headers={**user.headers, "If-Match": '"1"'},
    )
    assert updated.status_code == 200
    assert updated.headers["ETag"] == '"2"'
    assert updated.json()["stage"] == "final"
    stale = client.patch(
        url, json={"notes": "lost update"}, headers={**user.headers, "If-Match": '"1"'}
    )
    assert stale.status_code == 412
    assert client.get(url, headers=user.headers).json()["notes"] == "Ask about the team"
    cleared = client.patch(url, json={"company": None}, headers=user.headers)
    assert cleared.status_code == 422
    unconditional = client.patch(url, json={"location": "Remote"}, headers=user.headers)
    assert unconditional.status_code == 200 and unconditional.json()["location"] == "Remote"


def test_delete_is_soft_and_hides_the_rejection(client: TestClient, db: Session) -> None:
    user = make_user(client)
    rejection = make_rejection(user)
    url = f"/v1/rejections/{rejection['id']}"
    assert client.delete(url, headers=user.headers).status_code == 204
    assert client.get(url, headers=user.headers).status_code == 404
    assert client.get("/v1/rejections", headers=user.headers).json()["items"] == []
    tombstone = db.get(Rejection, rejection["id"])
    assert tombstone is not None and tombstone.deleted_at is not None


def test_list_filters(client: TestClient) -> None:
    user = make_user(client)
    make_rejection(
        user,
        company="Acme Corp",
        stage="phone",
        tags=["remote"],
        rejected_on="2026-09-01",
        applied_on=None,
    )
    make_rejection(
        user,
        company="Globex",
        stage="final",
        reason_code="skills_gap",
        notes="Needed more Kubernetes",
        rejected_on="2026-10-15",
    )
    make_rejection(
        user, company="Initech", stage="final", tags=["remote", "fintech"], rejected_on="2026-11-01"
    )

    def companies(query: str) -> list[str]:
        response = client.get(f"/v1/rejections?{query}", headers=user.headers)
        assert response.status_code == 200, response.text
        return [item["company"] for item in response.json()["items"]]

    assert companies("") == ["Initech", "Globex", "Acme Corp"]
    assert companies("stage=final") == ["Initech", "Globex"]
    assert companies("reason_code=skills_gap") == ["Globex"]
    assert companies("company=acme%20corp") == ["Acme Corp"]
    assert companies("tag=remote") == ["Initech", "Acme Corp"]
    assert companies("rejected_from=2026-10-01&rejected_to=2026-10-31") == ["Globex"]
    assert companies("q=kubernetes") == ["Globex"]
    assert companies("q=100%25") == []
    assert client.get("/v1/rejections?stage=bogus", headers=user.headers).status_code == 422


def test_pagination_is_stable_while_rows_are_added(client: TestClient) -> None:
    user = make_user(client)
    created = [make_rejection(user, company=f"Company {n}")["id"] for n in range(5)]
    first = client.get("/v1/rejections?limit=2", headers=user.headers).json()
    assert [item["id"] for item in first["items"]] == created[::-1][:2]
    make_rejection(user, company="Newcomer")  # lands before the first page, not in the next
    seen = [item["id"] for item in first["items"]]
    cursor = first["next_cursor"]
    while cursor:
        page = client.get(f"/v1/rejections?limit=2&cursor={cursor}", headers=user.headers).json()
        seen += [item["id"] for item in page["items"]]
        cursor = page["next_cursor"]
    assert seen == created[::-1]
    assert client.get("/v1/rejections?limit=0", headers=user.headers).status_code == 422
    assert client.get("/v1/rejections?limit=101", headers=user.headers).status_code == 422
    assert client.get("/v1/rejections?cursor=%%%", headers=user.headers).status_code == 422


def test_list_items_are_the_same_json_as_the_rejection_itself(
    client: TestClient, db: Session
) -> None:
    """The database writes the list's items as JSON; each must be what GET of it says."""
    user = make_user(client)
    full = make_rejection(
        user,
        job_url="https://jobs.example.com/1",
        location="Zürich",
        reason_text='Another candidate had more "hands-on" experience.\nLine two.',
        tags=["fintech", "remote"],
        notes="Friendly panel; ✓ good questions.",
        emotional_impact=4,
        channel="phone",
        decided_by="candidate",
    )
    sparse = make_rejection(
        user, applied_on=None, contact_name=None, contact_email=None, tags=[], notes=None
    )
    awkward = make_rejection(
        user,
        company='Back\\slash "Quotes" & <Tags>',
        role_title="Ingénieur 🚀 (senior)",
        notes="Tab\there, bell \u0007, NUL-free \u2028 line separator, \U0001f600.",
        tags=['with "quotes"', "naïve", "🙂"],
        emotional_impact=None,
    )
    # Timestamps with no fraction and with one microsecond: pydantic writes the first
    # without ".000000", the second with all six digits; the database must do the same.
    for created, moment in (
        (sparse, datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)),
        (awkward, datetime(2026, 1, 2, 3, 4, 5, 1, tzinfo=UTC)),
    ):
        db.execute(
            update(Rejection)
            .where(col(Rejection.id) == created["id"])
            .values(created_at=moment, updated_at=moment)
        )
    db.commit()
    listed = client.get("/v1/rejections", headers=user.headers)
    assert listed.status_code == 200
    assert listed.headers["content-type"] == "application/json"
    items = {item["id"]: item for item in listed.json()["items"]}
    for created in (full, sparse, awkward):
        one = client.get(f"/v1/rejections/{created['id']}", headers=user.headers).json()
        assert items[created["id"]] == one
        assert list(items[created["id"]]) == list(one)  # same fields, same order
    assert items[sparse["id"]]["created_at"] == "2026-01-02T03:04:05Z"
    assert items[awkward["id"]]["updated_at"] == "2026-01-02T03:04:05.000001Z"
    assert items[awkward["id"]]["tags"] == ['with "quotes"', "naïve", "🙂"]
    assert items[sparse["id"]]["tags"] == []
