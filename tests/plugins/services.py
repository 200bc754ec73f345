"""Tests that need an outside service (Redis, Chromium) skip when it is missing on a
developer's machine, and fail in CI, where REBOUND_TEST_REQUIRE_SERVICES=1."""

from __future__ import annotations

import os

import pytest

REQUIRED = os.environ.get("REBOUND_TEST_REQUIRE_SERVICES") == "1"


def missing_service(reason: str) -> None:
    """Fail in CI, skip elsewhere."""
    if REQUIRED:
        pytest.fail(f"required service missing: {reason}")
    pytest.skip(reason)
