"""Rate limits with the `limits` library, in memory or in Redis (shared by replicas)."""

from __future__ import annotations

import math
import time

from limits import RateLimitItem, parse
from limits.storage import storage_from_string
from limits.strategies import MovingWindowRateLimiter

from api.config import Settings
from api.errors import TooManyRequests


class RateLimiter:
    def __init__(self, settings: Settings) -> None:
        self.storage = storage_from_string(settings.rate_limit_storage)
        self.limiter = MovingWindowRateLimiter(self.storage)
        self.request_limit = parse(settings.rate_limit)
        self.login_limit = parse(settings.login_rate_limit)

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
