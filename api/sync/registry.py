"""The object types `GET /v1/sync` serves, registered by the feature that owns each.

A feature registers its table once, at import time of its own module:

    register_sync_type("rejection", Rejection, serialize_rejections)

`serialize` turns a batch of live rows (all of the same model, all the user's) into
JSON-ready dicts, exactly what the feature's own GET returns for each, so a synced
device holds the same objects the API serves. It gets the whole batch so it can load
related rows in one query instead of one per object.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlmodel import Session

from api.models.base import Tracked

Serializer = Callable[[Session, Sequence[Any]], list[dict[str, Any]]]


@dataclass(frozen=True)
class SyncType:
    name: str
    model: type[Tracked]
    serialize: Serializer


_TYPES: dict[str, SyncType] = {}


def register_sync_type(name: str, model: type[Tracked], serialize: Serializer) -> None:
    """Make `model`'s rows part of the sync feed under the type `name`."""
    existing = _TYPES.get(name)
    if existing is not None and existing.model is not model:
        raise ValueError(f"sync type {name!r} is already registered for {existing.model}")
    for other in _TYPES.values():
        if other.model is model and other.name != name:
            raise ValueError(f"{model.__name__} is already registered as {other.name!r}")
    _TYPES[name] = SyncType(name=name, model=model, serialize=serialize)


def sync_types() -> list[SyncType]:
    """Every registered type, in registration order."""
    return list(_TYPES.values())


def sync_type_of(model: type[Any]) -> SyncType | None:
    for sync_type in _TYPES.values():
        if sync_type.model is model:
            return sync_type
    return None
