"""The last computed insights of each user, kept so they can never be stale.

An entry is found by (user, `from`, `to`) and is only served while its *version* still
matches: the user's change counter (`users.sync_seq`) and the user's local date. Every
write to an input of insights is a tracked object (rejection, reflection — a step write
bumps its reflection —, feedback request, action plan, action item) and bumps the owner's
counter in the same transaction (api.models.base); the only time-dependent figure,
`actions.overdue`, depends on nothing but the local date. So a changed input always
changes the version, and the old entry is simply never matched again: there is nothing
to invalidate, and several processes each with a cache of their own stay correct.

The counter is read with the user at the start of the request, before any insights
query, so a computed answer is never older than the version it is stored under.

Bounded by the bytes it holds (least recently used out first); it lives in one process.
Requests that miss the same entry at the same time (a user's phone and laptop after a
change) share one computation (`compute_once`).
"""

from __future__ import annotations

import asyncio
import threading
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import date

from starlette.datastructures import State

MAX_BYTES = 16 * 1024 * 1024

Slot = tuple[str, date | None, date | None]  # user id, from, to
Version = tuple[int, date]  # the user's sync_seq, the user's local date


@dataclass(frozen=True)
class _Entry:
    version: Version
    body: bytes


class InsightsCache:
    def __init__(self, max_bytes: int = MAX_BYTES) -> None:
        self.max_bytes = max_bytes
        self._entries: OrderedDict[Slot, _Entry] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        # Computations under way, on the event loop that serves the requests.
        self._computing: dict[tuple[Slot, Version], asyncio.Future[bytes]] = {}

    def get(self, slot: Slot, version: Version) -> bytes | None:
        with self._lock:
            entry = self._entries.get(slot)
            if entry is None or entry.version != version:
                return None
            self._entries.move_to_end(slot)
            return entry.body

    def put(self, slot: Slot, version: Version, body: bytes) -> None:
        with self._lock:
            old = self._entries.get(slot)
            if old is not None:
                if old.version[0] > version[0]:
                    return  # a request that started later already stored a newer answer
                self._bytes -= len(old.body)
                del self._entries[slot]
            if len(body) > self.max_bytes:
                return
            self._entries[slot] = _Entry(version, body)
            self._bytes += len(body)
            while self._bytes > self.max_bytes:
                _, evicted = self._entries.popitem(last=False)
                self._bytes -= len(evicted.body)

    async def compute_once(
        self, slot: Slot, version: Version, compute: Callable[[], Awaitable[bytes]]
    ) -> bytes:
        """The entry, computed by `compute` and stored; while one request computes it,
        the others that miss it wait for that answer instead of computing it again. A
        failure is every waiter's (they asked for the same thing at the same moment); a
        computing request that went away leaves the next waiter to compute it."""
        key = (slot, version)
        while (computing := self._computing.get(key)) is not None:
            try:
                return await asyncio.shield(computing)
            except asyncio.CancelledError:
                if not computing.cancelled():
                    raise  # this request itself was cancelled
        future: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        self._computing[key] = future
        try:
            body = await compute()
        except asyncio.CancelledError:
            future.cancel()
            raise
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # retrieved: no warning when nobody was waiting
            raise
        finally:
            del self._computing[key]
        future.set_result(body)
        self.put(slot, version, body)
        return body

    def __len__(self) -> int:
        return len(self._entries)


def cache_of(state: State) -> InsightsCache:
    """The application's cache, made on first use."""
    cache: InsightsCache | None = getattr(state, "insights_cache", None)
    if cache is None:
        cache = state.insights_cache = InsightsCache()
    return cache
