"""Deleting a rejection retires everything hanging off it, and devices learn of it."""

from __future__ import annotations

from fastapi.testclient import TestClient
from sqlmodel import Session, select

from api.models.feedback import FeedbackRequest
from tests.factories import make_rejection, make_user


def test_deleting_a_rejection_cancels_its_requests_and_syncs_tombstones(
    client: TestClient, db: Session
) -> None:
    user = make_user(client)
    rejection = make_rejection(user)
    created = client.post(
        f"/v1/rejections/{rejection['id']}/feedback-requests",
        json={"recipient_email": "dana@acme.example"},
        headers=user.headers,
    )
    assert created.status_code == 201, created.text
    assert created.json()["status"] == "scheduled"
    cursor = client.get("/v1/sync", headers=user.headers).json()["next_cursor"]

    assert (
        client.delete(f"/v1/rejections/{rejection['id']}", headers=user.headers).status_code == 204
    )

    stored = db.exec(select(FeedbackRequest)).one()
    assert stored.status == "cancelled"
    assert stored.deleted_at is not None
    page = client.get(f"/v1/sync?since={cursor}", headers=user.headers).json()
    deleted = {(item["type"], item["id"]) for item in page["deleted"]}
    assert ("rejection", rejection["id"]) in deleted
    assert ("feedback_request", created.json()["id"]) in deleted
