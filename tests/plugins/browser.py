"""Fixtures for real headless Chromium."""

from __future__ import annotations
