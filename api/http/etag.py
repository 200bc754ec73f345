"""Optimistic concurrency: an object's ETag is its version; writes may say `If-Match`."""

from __future__ import annotations

from typing import Any, Protocol

from fastapi import Request, Response
from sqlalchemy.orm import Session, object_session

from api.errors import PreconditionFailed


class Versioned(Protocol):
    version: int


def etag_of(obj: Versioned) -> str:
    session = object_session(obj)
    if session is not None and (obj in session.dirty or obj in session.new):
        session.flush()  # the version is bumped at flush
    return etag_for(obj.version)


def etag_for(version: int) -> str:
    return f'"{version}"'


def set_etag(response: Response, obj: Versioned) -> None:
    response.headers["ETag"] = etag_of(obj)


def lock_for_write(session: Session, obj: Any) -> None:
    """Re-read `obj` locked for this transaction (`FOR UPDATE`), before `check_if_match`.

    For an object loaded without the lock (the current user, say): two writes that both
    checked the same version would otherwise both win, and one update would be lost.
    """
    session.refresh(obj, with_for_update=True)


def check_if_match(request: Request, obj: Versioned) -> None:
    """412 when the client's `If-Match` names another version; without it, go on."""
    header = request.headers.get("if-match")
    if header is None:
        return
    current = etag_for(obj.version)
    candidates = [tag.strip().removeprefix("W/") for tag in header.split(",")]
    if "*" in candidates or current in candidates:
        return
    raise PreconditionFailed(
        f"If-Match {header} does not match the current version {current}.",
        headers={"ETag": current},
    )
