"""Fixtures of the HTTP convention tests."""

from tests.http.live import server_url

__all__ = ["server_url"]
