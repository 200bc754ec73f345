"""Fixtures of the sync tests."""

from tests.http.live import server_url

__all__ = ["server_url"]
