from __future__ import annotations

from fastapi.testclient import TestClient
from sqlmodel import Session, select

from api.models import IdempotencyRecord
from tests.factories import make_user, rejection_body


def test_stored_responses_are_encrypted_and_still_replay(client: TestClient, db: Session) -> None:
    user = make_user(client)
    headers = {**user.headers, "Idempotency-Key": "sealed-1"}
    body = rejection_body(company="Plainly Visible Company")
    first = client.post("/v1/rejections", json=body, headers=headers)
    assert first.status_code == 201

    record = db.exec(select(IdempotencyRecord)).one()
    assert "Plainly Visible Company" not in record.response_body
    assert first.json()["id"] not in record.response_body

    again = client.post("/v1/rejections", json=body, headers=headers)
    assert again.status_code == 201
    assert again.json() == first.json()
    assert again.headers["Idempotency-Replayed"] == "true"
