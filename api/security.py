"""Everything cryptographic: access tokens (the only module that imports jose), password
hashing, and the random tokens Rebound stores only as hashes."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime

from jose import JWTError, jwt
from pwdlib import PasswordHash
from pwdlib.hashers.argon2 import Argon2Hasher

from api.config import Settings
from api.db import utcnow

ALGORITHM = "HS256"
AUDIENCE = "rebound-api"
ISSUER = "rebound"
ACCESS_TOKEN_TYPE = "access"
MAX_TOKEN_LENGTH = 4096

password_hasher = PasswordHash((Argon2Hasher(),))
# Verified against when the e-mail is unknown, so that both cases cost the same time.
_DUMMY_HASH = password_hasher.hash("a password nobody has")


def hash_password(password: str) -> str:
    return password_hasher.hash(password)


def verify_password(password: str, password_hash: str | None) -> bool:
    """Check a password; with no hash (unknown account) spend the same time and fail."""
    if password_hash is None:
        password_hasher.verify(password, _DUMMY_HASH)
        return False
    return password_hasher.verify(password, password_hash)


def new_token(prefix: str = "", nbytes: int = 32) -> str:
    """A random token of `nbytes` bytes (256 bits by default), URL-safe."""
    return prefix + secrets.token_urlsafe(nbytes)


def hash_token(token: str) -> str:
    """Tokens are stored as SHA-256 digests: they carry enough entropy not to need a slow hash."""
    return hashlib.sha256(token.encode()).hexdigest()


def key_id(secret: str) -> str:
    return hashlib.sha256(b"rebound-kid:" + secret.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class AccessClaims:
    user_id: str
    session_version: int
    expires_at: datetime


def create_access_token(
    settings: Settings, *, user_id: str, session_version: int
) -> tuple[str, int]:
    """A short-lived signed JWT for `user_id`; returns it with its lifetime in seconds."""
    now = utcnow()
    ttl = settings.access_token_ttl
    claims = {
        "sub": user_id,
        "typ": ACCESS_TOKEN_TYPE,
        "sv": session_version,
        "aud": AUDIENCE,
        "iss": ISSUER,
        "iat": int(now.timestamp()),
        "exp": int((now + ttl).timestamp()),
        "jti": secrets.token_hex(8),
    }
    token = jwt.encode(
        claims,
        settings.secret_key,
        algorithm=ALGORITHM,
        headers={"kid": key_id(settings.secret_key)},
    )
    return token, int(ttl.total_seconds())


# Verified tokens, so a client's next requests skip the signature check; keyed by the
# token and the keys in force, so a key rotation is honoured at once.
_verified: dict[tuple[str, str, tuple[str, ...]], AccessClaims] = {}
_VERIFIED_MAX = 10_000


def decode_access_token(settings: Settings, token: str) -> AccessClaims | None:
    """The claims of a valid access token, or None for anything else."""
    if len(token) > MAX_TOKEN_LENGTH:
        return None
    cache_key = (token, settings.secret_key, tuple(settings.previous_secret_keys))
    claims = _verified.get(cache_key)
    if claims is not None:
        if claims.expires_at > utcnow():
            return claims
        del _verified[cache_key]
    claims = _verify_access_token(settings, token)
    if claims is not None:
        if len(_verified) >= _VERIFIED_MAX:
            _verified.clear()
        _verified[cache_key] = claims
    return claims


def _verify_access_token(settings: Settings, token: str) -> AccessClaims | None:
    try:
        header = jwt.get_unverified_header(token)
    except JWTError:
        return None
    if header.get("alg") != ALGORITHM:
        return None
    keys = {key_id(k): k for k in [settings.secret_key, *settings.previous_secret_keys]}
    secret = keys.get(str(header.get("kid")))
    if secret is None:
        return None
    try:
        claims = jwt.decode(
            token,
            secret,
            algorithms=[ALGORITHM],
            audience=AUDIENCE,
            issuer=ISSUER,
            options={
                "require_exp": True,
                "require_iat": True,
                "require_sub": True,
                "require_aud": True,
                "require_iss": True,
            },
        )
    except JWTError:
        return None
    if claims.get("typ") != ACCESS_TOKEN_TYPE:
        return None
    sub, version, exp = claims.get("sub"), claims.get("sv"), claims.get("exp")
    if not isinstance(sub, str) or not isinstance(version, int) or not isinstance(exp, int):
        return None
    return AccessClaims(
        user_id=sub,
        session_version=version,
        expires_at=datetime.fromtimestamp(exp, UTC),
    )


def constant_time_equals(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())
