"""Structured JSON logs (structlog), with the request id and user id bound per request."""

from __future__ import annotations

import logging
import sys
from collections.abc import MutableMapping
from typing import Any

import structlog

from api.config import Settings

# Never written to a log line, whatever a caller binds.
REDACTED_KEYS = frozenset(
    {
        "password",
        "current_password",
        "token",
        "access_token",
        "refresh_token",
        "journal",
        "authorization",
        "secret",
        "key",
        "api_key",
    }
)


def _redact(
    _logger: object, _method: str, event: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    for name in REDACTED_KEYS & event.keys():
        event[name] = "[redacted]"
    return event


def configure_logging(settings: Settings) -> None:
    level = logging.getLevelName(settings.log_level.upper())
    renderer = (
        structlog.processors.JSONRenderer()
        if settings.log_json
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            _redact,
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.PrintLoggerFactory(sys.stdout),
        cache_logger_on_first_use=True,
    )
