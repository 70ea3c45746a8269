"""The in-process store: dicts, gone with the process."""

from __future__ import annotations

import time
from typing import Any

from nerve.events import Event
from nerve.stores.base import DEFAULT_WINDOW, AttemptError, DeadLetter, DeliveryState, Store

Pair = tuple[str, str]


class _Expiring(dict[Any, Any]):
    """A dict whose oldest entries drop out after ``window`` seconds or past ``max_entries``.

    Dicts keep insertion order and re-inserting moves nothing, so the oldest entry is always
    first: pruning pops from the front and stops at the first live entry (amortised O(1)).
    """

    def __init__(self, window: float, max_entries: int) -> None:
        super().__init__()
        self.window = window
        self.max_entries = max_entries
        self._times: dict[Any, float] = {}

    def put(self, key: Any, value: Any) -> None:
        now = time.monotonic()
        if key in self:
            del self[key]
            del self._times[key]
        self[key] = value
        self._times[key] = now
        if (
            len(self._times) > self.max_entries
            or next(iter(self._times.values())) < now - self.window
        ):
            self._prune(now)

    def _prune(self, now: float) -> None:
        horizon = now - self.window
        times = self._times
        while times:
            key, at = next(iter(times.items()))
            if at >= horizon and len(times) <= self.max_entries:
                break
            del times[key]
            self.pop(key, None)


class MemoryStore(Store):
    """Keeps everything in dicts. Nothing survives the process.

    Args:
        window: seconds an idempotency mark (and publish record) is kept.
        max_entries: at most this many marks (and as many publish records) are kept; the
            oldest go first, so a long-running in-memory bus does not grow without end.
    """

    def __init__(self, *, window: float = DEFAULT_WINDOW, max_entries: int = 1_000_000) -> None:
        self._done = _Expiring(window, max_entries)  # event_id -> subscriptions done
        self._published = _Expiring(window, max_entries)
        self._failures: dict[Pair, list[AttemptError]] = {}
        self._dead: dict[Pair, DeadLetter] = {}

    async def record_published(self, event: Event[Any]) -> None:
        self._published.put(event.event_id, event.event_type)

    async def event_type(self, event_id: str) -> str | None:
        found: str | None = self._published.get(event_id)
        return found

    async def is_done(self, subscription: str, event_id: str) -> bool:
        subs = self._done.get(event_id)
        return subs is not None and subscription in subs

    async def mark_done(self, subscription: str, event_id: str) -> None:
        subs = self._done.get(event_id)
        if subs is None:
            self._done.put(event_id, {subscription})  # the window runs from the first mark
        else:
            subs.add(subscription)
        if self._failures:
            self._failures.pop((subscription, event_id), None)

    async def add_failure(self, subscription: str, event_id: str, error: AttemptError) -> None:
        self._failures.setdefault((subscription, event_id), []).append(error)

    async def take_failures(self, subscription: str, event_id: str) -> list[AttemptError]:
        return self._failures.pop((subscription, event_id), [])

    async def add_dead_letter(self, entry: DeadLetter) -> None:
        key = (entry.subscription, entry.event.event_id)
        self._dead.pop(key, None)  # re-insert so the newest is last
        self._dead[key] = entry

    async def dead_letters(
        self,
        *,
        event_id: str | None = None,
        subscription: str | None = None,
        limit: int | None = None,
    ) -> list[DeadLetter]:
        found = [e for e in reversed(self._dead.values()) if _selects(e, event_id, subscription)]
        return found if limit is None else found[:limit]

    async def take_dead_letters(
        self, *, event_id: str | None = None, subscription: str | None = None
    ) -> list[DeadLetter]:
        taken = [e for e in self._dead.values() if _selects(e, event_id, subscription)]
        for entry in taken:
            del self._dead[(entry.subscription, entry.event.event_id)]
        return taken

    async def states(self, event_id: str) -> dict[str, DeliveryState]:
        found: dict[str, DeliveryState] = {}
        for sub, eid in self._failures:
            if eid == event_id:
                found[sub] = DeliveryState.FAILED
        for sub, eid in self._dead:
            if eid == event_id:
                found[sub] = DeliveryState.DEAD_LETTERED
        for sub in self._done.get(event_id, ()):
            found[sub] = DeliveryState.DONE
        return found


def _selects(entry: DeadLetter, event_id: str | None, subscription: str | None) -> bool:
    return (event_id is None or entry.event.event_id == event_id) and (
        subscription is None or entry.subscription == subscription
    )
