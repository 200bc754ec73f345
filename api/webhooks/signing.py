"""Signing secrets and Standard Webhooks signatures.

A secret is `whsec_` + base64 of 32 random bytes. Each delivery carries `webhook-id`,
`webhook-timestamp` and `webhook-signature`; during a rotation's grace period the
signature header holds one `v1,…` signature per live secret, space-separated, so a
receiver that still knows only the old secret keeps verifying.
"""

from __future__ import annotations

import base64
import secrets
from collections.abc import Sequence
from datetime import datetime

from standardwebhooks.webhooks import Webhook

SECRET_PREFIX = "whsec_"
SECRET_BYTES = 32


def new_secret() -> str:
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode()


def signature_header(
    signing_secrets: Sequence[str], *, msg_id: str, timestamp: datetime, body: str
) -> str:
    """`v1,<sig>` for each secret, newest first, joined by spaces."""
    if not signing_secrets:
        raise ValueError("at least one signing secret is needed")
    return " ".join(
        Webhook(secret).sign(msg_id=msg_id, timestamp=timestamp, data=body)
        for secret in signing_secrets
    )


def webhook_headers(
    signing_secrets: Sequence[str], *, msg_id: str, timestamp: datetime, body: str
) -> dict[str, str]:
    """The three Standard Webhooks headers for one attempt."""
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(timestamp.timestamp())),
        "webhook-signature": signature_header(
            signing_secrets, msg_id=msg_id, timestamp=timestamp, body=body
        ),
    }
