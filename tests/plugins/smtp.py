"""Fixtures for a real SMTP server on loopback (aiosmtpd)."""

from __future__ import annotations
