"""Every forged, stale or misused token is refused with 401."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from typing import Any

import pytest
from fastapi.testclient import TestClient
from jose import jwt

from api.config import Settings
from api.security import ALGORITHM, AUDIENCE, ISSUER, create_access_token, key_id
from tests.factories import PASSWORD, make_user


def _b64(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")


def _claims(user_id: str, **overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    claims: dict[str, Any] = {
        "sub": user_id,
        "typ": "access",
        "sv": 1,
        "aud": AUDIENCE,
        "iss": ISSUER,
        "iat": now,
        "exp": now + 600,
    }
    for name, value in overrides.items():
        if value is None:
            claims.pop(name, None)
        else:
            claims[name] = value
    return claims


def _sign(
    settings: Settings, claims: dict[str, Any], *, secret: str | None = None, kid: str | None = None
) -> str:
    secret = secret or settings.secret_key
    return jwt.encode(claims, secret, algorithm=ALGORITHM, headers={"kid": kid or key_id(secret)})


def _status(client: TestClient, token: str) -> int:
    return client.get("/v1/me", headers={"Authorization": f"Bearer {token}"}).status_code


def test_a_genuine_token_works(client: TestClient, settings: Settings) -> None:
    user = make_user(client)
    assert _status(client, _sign(settings, _claims(user.id))) == 200


@pytest.mark.parametrize(
    ("case", "overrides"),
    [
        ("expired", {"exp": int(time.time()) - 5}),
        ("no exp", {"exp": None}),
        ("no iat", {"iat": None}),
        ("wrong audience", {"aud": "someone-else"}),
        ("no audience", {"aud": None}),
        ("wrong issuer", {"iss": "evil"}),
        ("no issuer", {"iss": None}),
        ("no subject", {"sub": None}),
        ("unknown subject", {"sub": "00000000-0000-7000-8000-000000000000"}),
        ("refresh type", {"typ": "refresh"}),
        ("no type", {"typ": None}),
        ("old session version", {"sv": 0}),
    ],
)
def test_bad_claims_are_refused(
    client: TestClient, settings: Settings, case: str, overrides: dict[str, Any]
) -> None:
    user = make_user(client)
    assert _status(client, _sign(settings, _claims(user.id, **overrides))) == 401, case


def test_alg_none_is_refused(client: TestClient) -> None:
    user = make_user(client)
    token = f"{_b64({'alg': 'none', 'typ': 'JWT'})}.{_b64(_claims(user.id))}."
    assert _status(client, token) == 401


def test_other_keys_and_unknown_kid_are_refused(client: TestClient, settings: Settings) -> None:
    user = make_user(client)
    claims = _claims(user.id)
    # Signed with another secret under our kid, or under its own kid.
    assert (
        _status(client, _sign(settings, claims, secret="x" * 40, kid=key_id(settings.secret_key)))
        == 401
    )
    assert _status(client, _sign(settings, claims, secret="x" * 40)) == 401
    assert _status(client, _sign(settings, claims, kid="unknown-kid")) == 401


def test_hs256_signed_with_a_public_key_is_refused(client: TestClient) -> None:
    user = make_user(client)
    # The classic confusion attack: an HMAC made with a public key as the secret
    # (built by hand: jose itself refuses to use a PEM key as an HMAC secret).
    public_key = b"-----BEGIN PUBLIC KEY-----\nMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE\n-----END PUBLIC KEY-----"
    signing_input = (
        f"{_b64({'alg': 'HS256', 'typ': 'JWT', 'kid': 'rsa-1'})}.{_b64(_claims(user.id))}"
    )
    mac = hmac.new(public_key, signing_input.encode(), hashlib.sha256).digest()
    forged = f"{signing_input}.{base64.urlsafe_b64encode(mac).decode().rstrip('=')}"
    assert _status(client, forged) == 401


def test_tampered_payload_is_refused(client: TestClient, settings: Settings) -> None:
    alice, bob = make_user(client), make_user(client)
    header, _payload, signature = _sign(settings, _claims(alice.id)).split(".")
    tampered = f"{header}.{_b64(_claims(bob.id))}.{signature}"
    assert _status(client, tampered) == 401


def test_rotated_keys_keep_old_tokens_valid(client: TestClient, settings: Settings) -> None:
    user = make_user(client)
    old_token, _ = create_access_token(settings, user_id=user.id, session_version=1)
    rotated = settings.model_copy(
        update={
            "secret_key": "a-brand-new-secret-key-of-sufficient-length",
            "previous_secret_keys": [settings.secret_key],
        }
    )
    client.app.state.settings = rotated  # type: ignore[attr-defined]
    assert _status(client, old_token) == 200
    client.app.state.settings = rotated.model_copy(update={"previous_secret_keys": []})  # type: ignore[attr-defined]
    assert _status(client, old_token) == 401


def test_refresh_token_and_garbage_are_not_access_tokens(client: TestClient) -> None:
    make_user(client, email="tok@example.com")
    pair = client.post(
        "/v1/auth/token", data={"username": "tok@example.com", "password": PASSWORD}
    ).json()
    assert _status(client, pair["refresh_token"]) == 401
    assert _status(client, "a.b.c") == 401
    assert _status(client, "x" * 10_000) == 401
    assert client.get("/v1/me", headers={"Authorization": "Basic Zm9vOmJhcg=="}).status_code == 401
