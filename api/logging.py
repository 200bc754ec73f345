"""Structured JSON logs (structlog), with the request id bound per request.

Every line is one JSON object on stdout. Whatever a caller binds, a field whose name
says it holds a secret or a journal (`password`, `…token…`, `…secret…`, `journal`,
`authorization`, `cookie`, `api_key`, `key`) is written as "[redacted]", at any depth.
"""

from __future__ import annotations

import logging
from collections.abc import MutableMapping
from functools import lru_cache
from typing import Any

import orjson
import structlog

from api.config import Settings

# A field is redacted when its lower-cased name is one of these or contains one of the
# fragments: never a password, a token, a key or the text of a journal in a log line.
REDACTED_NAMES = frozenset({"key", "api_key", "authorization", "cookie", "set-cookie"})
REDACTED_FRAGMENTS = ("password", "token", "secret", "journal", "passphrase")
REDACTED = "[redacted]"
_CONTAINERS = (dict, list, tuple)


@lru_cache(maxsize=4096)  # on every field of every line: decide each name once
def is_secret_field(name: str) -> bool:
    lowered = name.lower()
    return lowered in REDACTED_NAMES or any(part in lowered for part in REDACTED_FRAGMENTS)


def _redact_value(value: Any) -> Any:
    if isinstance(value, dict):
        return {
            name: REDACTED if is_secret_field(str(name)) else _redact_value(item)
            for name, item in value.items()
        }
    if isinstance(value, list | tuple):
        return [_redact_value(item) for item in value]
    return value


def redact(
    _logger: object, _method: str, event: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    for name, value in event.items():
        if is_secret_field(name):
            event[name] = REDACTED
        elif type(value) in _CONTAINERS:
            event[name] = _redact_value(value)
    return event


def _orjson_dumps(value: Any, **_kwargs: Any) -> bytes:
    return orjson.dumps(value, default=str)


def configure_logging(settings: Settings) -> None:
    level = logging.getLevelName(settings.log_level.upper())
    processors: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        redact,
        structlog.processors.format_exc_info,
    ]
    if settings.log_json:
        processors.append(structlog.processors.JSONRenderer(serializer=_orjson_dumps))
        logger_factory: Any = (
            structlog.BytesLoggerFactory()
        )  # stdout, looked up when a logger is made
    else:
        processors.append(structlog.dev.ConsoleRenderer(colors=False))
        logger_factory = structlog.PrintLoggerFactory()
    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=logger_factory,
        cache_logger_on_first_use=True,
    )
