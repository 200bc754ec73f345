"""Offline sync: everything of a user's that changed after a cursor, page by page.

Every tracked row carries `sync_seq`, the number its owner's change counter gave its last
change (api/models/base.py). The counter is a column of the user's row, bumped under that
row's lock, so a user's changes are numbered in commit order: once a number is visible,
every smaller one is too. The cursor is such a number; a page is the changes numbered
after it, smallest first, across every registered type (api/sync/registry.py).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any

from sqlmodel import Session, col, select

from api.accounts.service import profile_read
from api.errors import Unprocessable
from api.models import Profile, Rejection, User
from api.rejections.router import rejection_read
from api.sync.registry import SyncType, register_sync_type, sync_types
from api.sync.schemas import SyncDeletion, SyncPage, SyncUpsert

# The feature modules that register their types when imported.
FEATURE_MODULES = (
    "api.reflections.service",
    "api.feedback.service",
    "api.action_plans.service",
)


def _serialize_rejections(_session: Session, rows: Any) -> list[dict[str, Any]]:
    return [rejection_read(row).model_dump(mode="json") for row in rows]


def _serialize_profiles(_session: Session, rows: Any) -> list[dict[str, Any]]:
    return [profile_read(row).model_dump(mode="json") for row in rows]


register_sync_type("rejection", Rejection, _serialize_rejections)
register_sync_type("profile", Profile, _serialize_profiles)


def load_sync_types() -> None:
    """Import every feature that registers a sync type (a module not written yet is skipped)."""
    for module in FEATURE_MODULES:
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if exc.name != module:
                raise


load_sync_types()


@dataclass(frozen=True, slots=True)
class _Change:
    seq: int
    sync_type: SyncType
    id: str
    deleted: bool


def parse_cursor(since: str | None) -> int:
    if since is None or since == "":
        return 0
    if not since.isdigit() or len(since) > 19:
        raise Unprocessable("The cursor is not one this API gave out.", loc=["query", "since"])
    return int(since)


def sync_page(*, session: Session, owner: User, since: int, limit: int) -> SyncPage:
    """The owner's changes numbered after `since`, at most `limit`, smallest number first."""
    # Read the counter first and page only up to it: a change committed while this page
    # is read gets a larger number and waits for the next page, in every type alike.
    ceiling = session.exec(select(User.sync_seq).where(User.id == owner.id)).one()
    if since > ceiling:
        raise Unprocessable(
            "The cursor is ahead of this account's changes: sync again from the beginning.",
            loc=["query", "since"],
        )
    changes: list[_Change] = []
    for sync_type in sync_types():
        model: Any = sync_type.model
        rows = session.exec(
            select(model.id, model.sync_seq, model.deleted_at)
            .where(
                model.user_id == owner.id,
                col(model.sync_seq) > since,
                col(model.sync_seq) <= ceiling,
            )
            .order_by(col(model.sync_seq))
            .limit(limit + 1)
        ).all()
        changes.extend(
            _Change(seq=seq, sync_type=sync_type, id=row_id, deleted=deleted_at is not None)
            for row_id, seq, deleted_at in rows
        )
    changes.sort(key=lambda change: change.seq)
    has_more = len(changes) > limit
    page = changes[:limit]
    next_cursor = page[-1].seq if has_more else ceiling

    live = _load_live(session, owner, [change for change in page if not change.deleted])
    upserted: list[SyncUpsert] = []
    deleted: list[SyncDeletion] = []
    for change in page:
        obj = live.get((change.sync_type.name, change.id))
        if obj is None:
            deleted.append(SyncDeletion(type=change.sync_type.name, id=change.id))
        else:
            upserted.append(SyncUpsert(type=change.sync_type.name, object=obj))
    return SyncPage(
        upserted=upserted, deleted=deleted, next_cursor=str(next_cursor), has_more=has_more
    )


def _load_live(
    session: Session, owner: User, changes: list[_Change]
) -> dict[tuple[str, str], dict[str, Any]]:
    """The objects of the changes, serialized by their type, one query per type.

    A row deleted (or soft-deleted) since its change was listed is left out, so the page
    reports it deleted; its deletion has a later number and comes again on a later page.
    """
    by_type: dict[str, tuple[SyncType, list[str]]] = {}
    for change in changes:
        by_type.setdefault(change.sync_type.name, (change.sync_type, []))[1].append(change.id)
    found: dict[tuple[str, str], dict[str, Any]] = {}
    for name, (sync_type, ids) in by_type.items():
        model: Any = sync_type.model
        rows = list(
            session.exec(
                select(model).where(
                    col(model.id).in_(ids),
                    model.user_id == owner.id,
                    col(model.deleted_at).is_(None),
                )
            )
        )
        for row, obj in zip(rows, sync_type.serialize(session, rows), strict=True):
            found[(name, row.id)] = obj
    return found
