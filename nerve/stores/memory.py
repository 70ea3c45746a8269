"""The in-process store: dicts, gone with the process."""

from __future__ import annotations

import itertools
import time
from collections.abc import Mapping, Sequence
from typing import Any

from nerve.events import Event
from nerve.stores.base import (
    DEFAULT_WINDOW,
    AttemptError,
    DeadLetter,
    DeliveryState,
    Spend,
    Store,
)

Pair = tuple[str, str]

#: Generations check their age and size once every this many puts.
_CHECK_EVERY = 64


class _Generations:
    """A dict that forgets: two generations, the older dropped when the younger is full.

    The young generation is retired (and the old one dropped) once it is ``window``
    seconds old or holds ``max_entries // 2`` keys, checked every ``_CHECK_EVERY`` puts.
    An entry therefore lives at least ``window`` seconds unless the size bound retires it
    sooner, and at most about twice that; a put is a dict store, never a scan.
    """

    __slots__ = ("_born", "_puts", "cap", "old", "window", "young")

    def __init__(self, window: float, max_entries: int) -> None:
        self.window = window
        self.cap = max(1, max_entries // 2)
        self.young: dict[Any, Any] = {}
        self.old: dict[Any, Any] = {}
        self._born = time.monotonic()
        self._puts = 0

    def get(self, key: Any) -> Any:
        found = self.young.get(key)
        return self.old.get(key) if found is None else found

    def put(self, key: Any, value: Any) -> None:
        self.young[key] = value
        self._puts += 1
        if self._puts >= _CHECK_EVERY:
            self._age()

    def put_many(self, keys: Sequence[Any], value: Any) -> None:
        self.young.update(dict.fromkeys(keys, value))
        self._puts += len(keys)
        if self._puts >= _CHECK_EVERY:
            self._age()

    def _age(self) -> None:
        self._puts = 0
        now = time.monotonic()
        if len(self.young) >= self.cap or now - self._born >= self.window:
            self.old = self.young
            self.young = {}
            self._born = now

    def __len__(self) -> int:
        return len(self.young) + len(self.old)


class MemoryStore(Store):
    """Keeps everything in dicts. Nothing survives the process.

    Args:
        window: seconds an idempotency mark (and publish record) is kept.
        max_entries: at most about this many marks per subscription (and as many publish
            records) are kept; the oldest go first, so a long-running in-memory bus does
            not grow without end.
    """

    def __init__(self, *, window: float = DEFAULT_WINDOW, max_entries: int = 1_000_000) -> None:
        self._window = window
        self._max_entries = max_entries
        self._done: dict[str, _Generations] = {}  # subscription -> event ids done
        self._published = _Generations(window, max_entries)  # event_id -> event type
        self._failures: dict[Pair, list[AttemptError]] = {}
        self._dead: dict[Pair, DeadLetter] = {}
        self._steps: dict[Pair, dict[str, str]] = {}
        self._spend: dict[Pair, Spend] = {}
        self._touched: dict[Pair, float] = {}  # last write of a pair's steps or spend

    async def record_published(self, event: Event[Any]) -> None:
        self._published.put(event.event_id, event.event_type)

    async def event_type(self, event_id: str) -> str | None:
        found: str | None = self._published.get(event_id)
        return found

    # One generation pair per subscription, mapping event ids to True: strings and True
    # are not tracked by the garbage collector, so a million marks cost the collector
    # nothing (a set per event slowed the whole bus by a third).

    def _marks(self, subscription: str) -> _Generations:
        marks = self._done.get(subscription)
        if marks is None:
            marks = self._done[subscription] = _Generations(self._window, self._max_entries)
        return marks

    async def is_done(self, subscription: str, event_id: str) -> bool:
        marks = self._done.get(subscription)
        return marks is not None and marks.get(event_id) is not None

    async def mark_done(self, subscription: str, event_id: str) -> None:
        await self.mark_done_many({subscription: (event_id,)})

    async def done_among(self, subscription: str, event_ids: Sequence[str]) -> set[str]:
        marks = self._done.get(subscription)
        if marks is None:
            return set()
        young, old = marks.young, marks.old
        return {eid for eid in event_ids if eid in young or eid in old}

    async def mark_done_many(self, done: Mapping[str, Sequence[str]]) -> None:
        for subscription, event_ids in done.items():
            self._marks(subscription).put_many(event_ids, True)
            if self._failures:
                for event_id in event_ids:
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
        now = time.monotonic()
        for entry in taken:
            pair = (entry.subscription, entry.event.event_id)
            del self._dead[pair]
            self._spend.pop(pair, None)  # a replay starts with a fresh budget
            if self._touched.pop(pair, None) is not None:
                self._touched[pair] = now  # its steps: kept another window from now
        return taken

    async def states(self, event_id: str) -> dict[str, DeliveryState]:
        found: dict[str, DeliveryState] = {}
        for sub, eid in self._failures:
            if eid == event_id:
                found[sub] = DeliveryState.FAILED
        for sub, eid in self._dead:
            if eid == event_id:
                found[sub] = DeliveryState.DEAD_LETTERED
        for sub, marks in self._done.items():
            if marks.get(event_id) is not None:
                found[sub] = DeliveryState.DONE
        return found

    async def step_result(self, subscription: str, event_id: str, step: str) -> str | None:
        steps = self._steps.get((subscription, event_id))
        return None if steps is None else steps.get(step)

    async def record_step(self, subscription: str, event_id: str, step: str, result: str) -> None:
        pair = (subscription, event_id)
        self._steps.setdefault(pair, {})[step] = result
        self._touch(pair)

    async def add_spend(
        self, subscription: str, event_id: str, tokens: int = 0, seconds: float = 0.0
    ) -> Spend:
        pair = (subscription, event_id)
        old = self._spend.get(pair, Spend(0, 0.0))
        if not tokens and not seconds:
            return old
        new = self._spend[pair] = Spend(old.tokens + tokens, old.seconds + seconds)
        self._touch(pair)
        return new

    def _touch(self, pair: Pair) -> None:
        """Note a write of the pair's steps or spend, and forget pairs a window old.

        ``_touched`` is in order of last write, so the expired pairs are at its front. A
        pair with a dead letter is pinned: it goes to the back, to be looked at again a
        window later.
        """
        touched = self._touched
        now = time.monotonic()
        touched.pop(pair, None)
        touched[pair] = now
        horizon = now - self._window
        for old, at in list(itertools.islice(touched.items(), 8)):
            if at >= horizon:
                break
            del touched[old]
            if old in self._dead:
                touched[old] = now
            else:
                self._steps.pop(old, None)
                self._spend.pop(old, None)


def _selects(entry: DeadLetter, event_id: str | None, subscription: str | None) -> bool:
    return (event_id is None or entry.event.event_id == event_id) and (
        subscription is None or entry.subscription == subscription
    )
