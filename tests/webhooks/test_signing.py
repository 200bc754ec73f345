"""Secrets and signatures, checked against the Standard Webhooks reference implementation."""

from __future__ import annotations

import base64
from datetime import timedelta

import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from api.db import utcnow
from api.webhooks.signing import new_secret, webhook_headers


def test_a_secret_is_whsec_and_base64_of_enough_random_bytes() -> None:
    secrets = {new_secret() for _ in range(20)}
    assert len(secrets) == 20
    for secret in secrets:
        assert secret.startswith("whsec_")
        assert 24 <= len(base64.b64decode(secret.removeprefix("whsec_"), validate=True)) <= 32


def test_headers_verify_with_the_reference_implementation() -> None:
    secret = new_secret()
    body = '{"type":"rejection.created","timestamp":"2026-11-25T10:00:00Z","data":{}}'
    headers = webhook_headers([secret], msg_id="msg-1", timestamp=utcnow(), body=body)
    assert Webhook(secret).verify(body, headers)["type"] == "rejection.created"
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(body.replace("created", "updated"), headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(body, {**headers, "webhook-id": "msg-2"})


def test_two_secrets_give_two_signatures_each_verifying() -> None:
    new, old = new_secret(), new_secret()
    body = "{}"
    headers = webhook_headers([new, old], msg_id="m", timestamp=utcnow(), body=body)
    assert len(headers["webhook-signature"].split(" ")) == 2
    assert all(s.startswith("v1,") for s in headers["webhook-signature"].split(" "))
    Webhook(new).verify(body, headers)
    Webhook(old).verify(body, headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(new_secret()).verify(body, headers)


def test_an_old_timestamp_is_refused_by_receivers() -> None:
    secret = new_secret()
    headers = webhook_headers(
        [secret], msg_id="m", timestamp=utcnow() - timedelta(minutes=10), body="{}"
    )
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify("{}", headers)
