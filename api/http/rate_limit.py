"""Rate limits with the `limits` library, in memory or in Redis (shared by replicas).

Every request counts against one bucket of `REBOUND_RATE_LIMIT`: the user's (a valid
access token), the API key's (a Bearer `rbk_…` key, by a digest of it), or else the
client address's. The window is limits' sliding window counter: two counters per bucket,
O(1) in memory and in Redis, without a fixed window's double burst at its edge.

Failed logins have their own, stricter limit per account and per address
(`REBOUND_LOGIN_RATE_LIMIT`), checked by the login route.
"""

from __future__ import annotations

import hashlib
import math
import time
from dataclasses import dataclass
from typing import Any, cast

import structlog
from limits import RateLimitItem, parse
from limits.aio.storage import Storage as AsyncStorage
from limits.aio.strategies import SlidingWindowCounterRateLimiter as AsyncSlidingWindow
from limits.storage import storage_from_string
from limits.strategies import MovingWindowRateLimiter
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.config import Settings
from api.errors import TooManyRequests
from api.http.middleware import send_problem
from api.security import decode_access_token

log = structlog.get_logger("rebound.rate_limit")

API_KEY_PREFIX = "rbk_"
# Liveness, readiness and metrics answer probes and scrapers, which must never be refused.
UNLIMITED_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})


@dataclass(frozen=True, slots=True)
class RateDecision:
    allowed: bool
    limit: int
    remaining: int
    reset_in: int  # seconds until the bucket has room again

    def headers(self, policy: str) -> list[tuple[bytes, bytes]]:
        return [
            (b"ratelimit-limit", str(self.limit).encode()),
            (b"ratelimit-remaining", str(self.remaining).encode()),
            (b"ratelimit-reset", str(self.reset_in).encode()),
            (b"ratelimit-policy", policy.encode()),
        ]


class LocalSlidingWindow:
    """limits' sliding window counter for one process, in a plain dictionary.

    Two fixed windows per bucket; the previous one counts in proportion to how much of it
    still overlaps the sliding window. limits' own memory storage starts a timer thread to
    expire keys whenever a key is counted, which cost more than the rest of a request's
    rate limiting; this runs only on the event loop (no lock needed) and drops idle
    buckets in one sweep per window.
    """

    def __init__(self, item: RateLimitItem) -> None:
        self.amount = item.amount
        self.window = item.get_expiry()
        # bucket -> [index of the current window, previous window's count, current count]
        self._buckets: dict[str, list[int]] = {}
        self._swept_at = 0

    def _counts(self, bucket: str, now: float) -> tuple[list[int], float]:
        """The bucket's counts moved to the window `now` is in, and how far into it `now` is."""
        index = int(now // self.window)
        if index != self._swept_at:
            self._swept_at = index
            self._buckets = {b: c for b, c in self._buckets.items() if c[0] >= index - 1}
        counts = self._buckets.get(bucket)
        if counts is None or counts[0] < index - 1:
            counts = self._buckets[bucket] = [index, 0, 0]
        elif counts[0] == index - 1:
            counts[:] = [index, counts[2], 0]
        return counts, (now % self.window) / self.window

    def _weighted(self, counts: list[int], into: float) -> float:
        return counts[1] * (1 - into) + counts[2]

    def has_room(self, bucket: str) -> bool:
        counts, into = self._counts(bucket, time.time())
        return self._weighted(counts, into) + 1 <= self.amount

    def hit(self, bucket: str) -> RateDecision:
        counts, into = self._counts(bucket, time.time())
        weighted = self._weighted(counts, into)
        allowed = weighted + 1 <= self.amount
        if allowed:
            counts[2] += 1
            weighted += 1
        window_left = self.window * (1 - into)
        if allowed or counts[1] == 0:
            reset_in = window_left
        else:
            # The previous window's share drains linearly over this window.
            reset_in = min(window_left, (weighted + 1 - self.amount) * self.window / counts[1])
        return RateDecision(
            allowed,
            self.amount,
            max(0, math.floor(self.amount - weighted)),
            max(0 if allowed else 1, math.ceil(reset_in)),
        )


class RateLimiter:
    def __init__(self, settings: Settings) -> None:
        self.storage = storage_from_string(settings.rate_limit_storage)
        self.limiter = MovingWindowRateLimiter(self.storage)
        self.request_limit = parse(settings.rate_limit)
        self.login_limit = parse(settings.login_rate_limit)
        self.policy = f"{self.request_limit.amount};w={self.request_limit.get_expiry()}"
        # In memory the calls are plain dictionary work: made inline, no awaiting. Any
        # other storage is a network round trip: made with limits' asyncio client, so
        # the event loop never blocks on it.
        self._local = LocalSlidingWindow(self.request_limit)
        self._async_requests: AsyncSlidingWindow | None = None
        if not settings.rate_limit_storage.startswith("memory"):
            options: dict[str, Any] = {}
            if settings.rate_limit_storage.startswith(("redis", "rediss")):
                options["implementation"] = "redispy"
            async_storage = storage_from_string("async+" + settings.rate_limit_storage, **options)
            self._async_requests = AsyncSlidingWindow(cast(AsyncStorage, async_storage))
        self._last_storage_error = 0.0

    # -- requests -------------------------------------------------------------------

    async def hit_request(self, bucket: str) -> RateDecision:
        """Count one request against `bucket`; say whether it may go on, and the window."""
        if self._async_requests is None:
            return self._local.hit(bucket)
        item = self.request_limit
        try:
            allowed = await self._async_requests.hit(item, "request", bucket)
            reset_at, remaining = await self._async_requests.get_window_stats(
                item, "request", bucket
            )
        except Exception as exc:
            # The limit store is down: serve rather than fail every request; say so.
            now = time.monotonic()
            if now - self._last_storage_error > 60:
                self._last_storage_error = now
                log.warning("rate_limit_storage_unavailable", error=str(exc))
            return RateDecision(True, item.amount, item.amount, item.get_expiry())
        reset_in = max(0, math.ceil(reset_at - time.time()))
        if not allowed:
            reset_in = max(1, reset_in)
        return RateDecision(allowed, item.amount, remaining, reset_in)

    async def request_bucket_has_room(self, bucket: str) -> bool:
        if self._async_requests is None:
            return self._local.has_room(bucket)
        try:
            return await self._async_requests.test(self.request_limit, "request", bucket)
        except Exception:
            return True

    # -- failed logins --------------------------------------------------------------

    def retry_after(self, item: RateLimitItem, *identifiers: str) -> int:
        reset_at, _remaining = self.limiter.get_window_stats(item, *identifiers)
        return max(1, math.ceil(reset_at - time.time()))

    def refuse(self, item: RateLimitItem, *identifiers: str, what: str) -> TooManyRequests:
        retry_after = self.retry_after(item, *identifiers)
        return TooManyRequests(
            f"Too many {what}; try again in {retry_after} seconds.",
            headers={
                "Retry-After": str(retry_after),
                "RateLimit-Limit": str(item.amount),
                "RateLimit-Remaining": "0",
                "RateLimit-Reset": str(retry_after),
            },
        )

    def check_login(self, *, email: str, address: str) -> None:
        """429 when the account or the address has failed to log in too often lately."""
        for identifiers in (("login-account", email), ("login-address", address)):
            if not self.limiter.test(self.login_limit, *identifiers):
                raise self.refuse(self.login_limit, *identifiers, what="failed logins")

    def record_failed_login(self, *, email: str, address: str) -> None:
        self.limiter.hit(self.login_limit, "login-account", email)
        self.limiter.hit(self.login_limit, "login-address", address)


def client_address(scope: Scope) -> str:
    client = scope.get("client")
    return str(client[0]) if client else "unknown"


class RateLimitMiddleware:
    """429 problem+json with `Retry-After` over the limit; `RateLimit-*` headers always."""

    def __init__(self, app: ASGIApp, limiter: RateLimiter, settings: Settings) -> None:
        self.app = app
        self.limiter = limiter
        self.settings = settings

    def bucket(self, scope: Scope) -> tuple[str, bool]:
        """The bucket this request counts against, and whether it is an API key's."""
        for name, value in scope["headers"]:
            if name == b"authorization":
                scheme, _, credentials = value.decode("latin-1").partition(" ")
                token = credentials.strip()
                if scheme.lower() != "bearer" or not token:
                    break
                if token.startswith(API_KEY_PREFIX):
                    digest = hashlib.sha256(token.encode()).hexdigest()[:32]
                    return f"key:{digest}", True
                claims = decode_access_token(self.settings, token)
                if claims is not None:
                    return f"user:{claims.user_id}", False
                break
        return f"address:{client_address(scope)}", False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in UNLIMITED_PATHS:
            await self.app(scope, receive, send)
            return
        bucket, api_key = self.bucket(scope)
        address_bucket = f"address:{client_address(scope)}"
        # Made-up API keys each get a bucket of their own, so an address whose keys keep
        # failing is also held to the address's limit.
        if api_key and not await self.limiter.request_bucket_has_room(address_bucket):
            decision = await self.limiter.hit_request(address_bucket)
        else:
            decision = await self.limiter.hit_request(bucket)
        if not decision.allowed:
            await send_problem(
                send,
                429,
                "Too Many Requests",
                f"Too many requests; try again in {decision.reset_in} seconds.",
                headers=(
                    (b"retry-after", str(decision.reset_in).encode()),
                    *decision.headers(self.limiter.policy),
                ),
            )
            return
        headers = decision.headers(self.limiter.policy)
        status = 0

        async def send_with_headers(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", ()), *headers]
            await send(message)

        await self.app(scope, receive, send_with_headers)
        if api_key and status == 401:
            await self.limiter.hit_request(address_bucket)
