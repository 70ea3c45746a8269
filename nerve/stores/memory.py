"""The in-process store: dicts, gone with the process."""

from __future__ import annotations

import heapq
import itertools
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from typing import Any, Self

from nerve import clock
from nerve.events import Event
from nerve.matching import event_key
from nerve.records import (
    AttemptError,
    DeadLetter,
    DeliveryState,
    EventRecord,
    Outcome,
    OutcomeRow,
    PublishedRow,
    Timer,
    WaitRecord,
)
from nerve.settings import Settings
from nerve.stores.base import DEFAULT_WINDOW, RATE_EPSILON, Store

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
        self._born = clock.monotonic()
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
        now = clock.monotonic()
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
        max_history: at most this many events are kept in the event log (the oldest go
            first, with their outcomes).
    """

    def __init__(
        self,
        *,
        window: float = DEFAULT_WINDOW,
        max_entries: int = 1_000_000,
        max_history: int = 10_000,
    ) -> None:
        self._window = window
        self._max_entries = max_entries
        self._max_history = max_history
        # OrderedDicts: popping the oldest of a dict is O(1) only for them (a plain dict
        # rescans the deleted slots at its front on every next(iter(...))).
        self._log: OrderedDict[str, tuple[int, Event[Any], float]] = OrderedDict()
        self._log_outcomes: OrderedDict[str, list[OutcomeRow]] = OrderedDict()
        self._log_seq = 0
        self._declared: dict[str, str] = {}
        self._done: dict[str, _Generations] = {}  # subscription -> event ids done
        self._published = _Generations(window, max_entries)  # event_id -> event type
        self._failures: dict[Pair, list[AttemptError]] = {}
        self._dead: dict[Pair, DeadLetter] = {}
        self._steps: dict[Pair, dict[str, str]] = {}
        self._counters: dict[Pair, dict[str, dict[str, float]]] = {}  # counter -> totals
        self._touched: dict[Pair, float] = {}  # last write of a pair's steps or counters
        self._timers: dict[str, tuple[Timer, int]] = {}  # id -> (timer, version)
        self._due: list[tuple[float, int, str]] = []  # heap of (due, version, id)
        self._versions = itertools.count()
        self._waits: dict[str, WaitRecord] = {}
        # awaited event type -> shape -> key -> wait ids
        self._wait_index: dict[str, dict[tuple[str, ...], dict[str, set[str]]]] = {}
        self._waiting: dict[Pair, int] = {}  # waits per suspended pair (pins its steps)
        self._slots: dict[tuple[str, str], dict[str, float]] = {}  # holder -> lease end
        self._rates: dict[tuple[str, str], float] = {}  # GCRA theoretical arrival times

    @classmethod
    def from_url(cls, url: str, settings: Settings) -> Self:
        return cls(window=settings.idempotency_window)

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
        now = clock.monotonic()
        for entry in taken:
            pair = (entry.subscription, entry.event.event_id)
            del self._dead[pair]
            self._counters.pop(pair, None)  # a replay starts its counts afresh
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

    async def add_to(
        self, subscription: str, event_id: str, counter: str, amounts: Mapping[str, float]
    ) -> dict[str, float]:
        pair = (subscription, event_id)
        if not amounts:
            found = self._counters.get(pair, {}).get(counter)
            return {} if found is None else dict(found)
        totals = self._counters.setdefault(pair, {}).setdefault(counter, {})
        for name, amount in amounts.items():
            totals[name] = totals.get(name, 0.0) + amount
        self._touch(pair)
        return dict(totals)

    def _touch(self, pair: Pair) -> None:
        """Note a write of the pair's steps or counters, and forget pairs a window old.

        ``_touched`` is in order of last write, so the expired pairs are at its front. A
        pair with a dead letter is pinned: it goes to the back, to be looked at again a
        window later.
        """
        touched = self._touched
        now = clock.monotonic()
        touched.pop(pair, None)
        touched[pair] = now
        horizon = now - self._window
        for old, at in list(itertools.islice(touched.items(), 8)):
            if at >= horizon:
                break
            del touched[old]
            if old in self._dead or old in self._waiting:
                touched[old] = now
            else:
                self._steps.pop(old, None)
                self._counters.pop(old, None)

    # the event log: dicts in logging order, bounded by max_history

    async def record_history(
        self, events: Sequence[PublishedRow], outcomes: Sequence[OutcomeRow]
    ) -> None:
        log = self._log
        for event, at in events:
            if event.event_id not in log:
                self._log_seq += 1
                log[event.event_id] = (self._log_seq, event, at)
        for row in outcomes:
            self._log_outcomes.setdefault(row[1], []).append(row)
        while len(log) > self._max_history:
            self._log_outcomes.pop(log.popitem(last=False)[0], None)
        while len(self._log_outcomes) > 2 * self._max_history:  # outcomes of unlogged events
            self._log_outcomes.popitem(last=False)

    async def trim_history(self, before: float) -> None:
        log = self._log
        while log:
            event_id, (_seq, _event, at) = next(iter(log.items()))
            if at >= before:
                break
            log.popitem(last=False)
            self._log_outcomes.pop(event_id, None)
        for event_id, rows in list(self._log_outcomes.items()):
            if rows[-1][4] < before:
                del self._log_outcomes[event_id]

    def _record(self, seq: int, event: Event[Any], at: float) -> EventRecord:
        outcomes = [Outcome.from_row(r) for r in self._log_outcomes.get(event.event_id, ())]
        return EventRecord.from_log(event, at, outcomes, seq)

    async def history_event(self, event_id: str) -> EventRecord | None:
        found = self._log.get(event_id)
        return None if found is None else self._record(*found)

    async def history_chain(self, correlation_id: str) -> list[EventRecord]:
        return [
            self._record(*entry)
            for entry in self._log.values()
            if entry[1].correlation_id == correlation_id
        ]

    async def history_after(
        self, after: str | None, limit: int
    ) -> tuple[list[EventRecord], str | None]:
        newer: list[tuple[int, Event[Any], float]] = []
        if after is None:
            if not self._log:
                return [], None
            newer = list(itertools.islice(reversed(self._log.values()), limit))
            newer.reverse()
            return [self._record(*e) for e in newer], str(self._log_seq)
        last = int(after)
        for entry in reversed(self._log.values()):
            if entry[0] <= last:
                break
            newer.append(entry)
        newer.reverse()
        taken = [self._record(*e) for e in newer[:limit]]
        return taken, (taken[-1].cursor if taken else after)

    async def history_of_type(self, event_type: str, since: float, limit: int) -> list[EventRecord]:
        found = [
            self._record(*entry)
            for entry in self._log.values()
            if entry[2] >= since and entry[1].event_type == event_type
        ]
        return found[:limit]

    # timers: a dict and a heap of (due, version, id); stale heap entries are skipped

    async def add_timer(self, timer: Timer, *, replace: bool = False) -> bool:
        if not replace and timer.timer_id in self._timers:
            return False
        self._put_timer(timer)
        return True

    def _put_timer(self, timer: Timer) -> None:
        version = next(self._versions)
        self._timers[timer.timer_id] = (timer, version)
        heapq.heappush(self._due, (timer.due, version, timer.timer_id))

    async def claim_timers(self, now: float, lease: float, limit: int) -> list[Timer]:
        claimed: list[Timer] = []
        heap = self._due
        while heap and len(claimed) < limit and heap[0][0] <= now:
            _due, version, timer_id = heapq.heappop(heap)
            found = self._timers.get(timer_id)
            if found is None or found[1] != version:
                continue  # deleted or moved since
            timer = found[0]
            claimed.append(timer)
            self._put_timer(timer.model_copy(update={"due": now + lease}))
        return claimed

    async def delete_timer(self, timer_id: str) -> bool:
        return self._timers.pop(timer_id, None) is not None

    async def timers(self, prefix: str = "", limit: int = 100) -> list[Timer]:
        found = [t for t, _v in self._timers.values() if t.timer_id.startswith(prefix)]
        found.sort(key=lambda t: (t.due, t.timer_id))
        return found[:limit]

    async def timer(self, timer_id: str) -> Timer | None:
        found = self._timers.get(timer_id)
        return None if found is None else found[0]

    # waits: by awaited type, then shape, then key

    async def add_wait(self, wait: WaitRecord) -> None:
        await self.remove_wait(wait.wait_id)
        self._waits[wait.wait_id] = wait
        by_shape = self._wait_index.setdefault(wait.event_type, {})
        by_shape.setdefault(wait.shape, {}).setdefault(wait.key, set()).add(wait.wait_id)
        pair = (wait.subscription, wait.event.event_id)
        self._waiting[pair] = self._waiting.get(pair, 0) + 1

    async def waits_for(self, events: Sequence[Event[Any]]) -> list[tuple[WaitRecord, Event[Any]]]:
        found: list[tuple[WaitRecord, Event[Any]]] = []
        index = self._wait_index
        for event in events:
            by_shape = index.get(event.event_type)
            if not by_shape:
                continue
            for shape, by_key in by_shape.items():
                key = event_key(event, shape)
                if key is None:
                    continue
                for wait_id in by_key.get(key, ()):
                    found.append((self._waits[wait_id], event))
        return found

    async def remove_wait(self, wait_id: str) -> bool:
        wait = self._waits.pop(wait_id, None)
        if wait is None:
            return False
        by_shape = self._wait_index[wait.event_type]
        by_key = by_shape[wait.shape]
        ids = by_key[wait.key]
        ids.discard(wait_id)
        if not ids:
            del by_key[wait.key]
            if not by_key:
                del by_shape[wait.shape]
                if not by_shape:
                    del self._wait_index[wait.event_type]
        pair = (wait.subscription, wait.event.event_id)
        left = self._waiting[pair] - 1
        if left:
            self._waiting[pair] = left
        else:
            del self._waiting[pair]
            if pair in self._touched:
                self._touch(pair)  # its steps: kept another window from now
        return True

    async def waits(
        self,
        *,
        subscription: str | None = None,
        event_id: str | None = None,
        event_type: str | None = None,
        limit: int | None = None,
    ) -> list[WaitRecord]:
        found = [
            w
            for w in self._waits.values()
            if (subscription is None or w.subscription == subscription)
            and (event_id is None or w.event.event_id == event_id)
            and (event_type is None or w.event_type == event_type)
        ]
        return found if limit is None else found[:limit]

    # flow control: slots with leases, GCRA states

    async def take_slot(
        self, limiter: str, key: str, holder: str, *, limit: int, lease: float, now: float
    ) -> bool:
        holders = self._slots.setdefault((limiter, key), {})
        for gone in [h for h, end in holders.items() if end <= now]:
            del holders[gone]
        if holder not in holders and len(holders) >= limit:
            return False
        holders[holder] = now + lease
        return True

    async def free_slot(self, limiter: str, key: str, holder: str) -> None:
        holders = self._slots.get((limiter, key))
        if holders is not None:
            holders.pop(holder, None)
            if not holders:
                del self._slots[(limiter, key)]

    async def slots_taken(self, limiter: str, key: str, now: float) -> int:
        holders = self._slots.get((limiter, key), {})
        return sum(1 for end in holders.values() if end > now)

    async def take_rate(
        self,
        limiter: str,
        key: str,
        *,
        interval: float,
        burst: float,
        cost: float,
        now: float,
        force: bool = False,
    ) -> float:
        tat = max(self._rates.get((limiter, key), now), now)
        new = max(now, tat + cost * interval)
        wait = new - now - burst * interval
        if wait <= RATE_EPSILON or force:
            self._rates[(limiter, key)] = new
        return 0.0 if wait <= RATE_EPSILON else wait

    async def block_rate(
        self, limiter: str, key: str, *, until: float, burst: float, interval: float
    ) -> None:
        blocked = until + burst * interval
        if self._rates.get((limiter, key), 0.0) < blocked:
            self._rates[(limiter, key)] = blocked

    async def declare_subscriptions(self, subscriptions: Mapping[str, str]) -> None:
        self._declared.update(subscriptions)

    async def subscriptions(self) -> dict[str, str]:
        return dict(self._declared)


def _selects(entry: DeadLetter, event_id: str | None, subscription: str | None) -> bool:
    return (event_id is None or entry.event.event_id == event_id) and (
        subscription is None or entry.subscription == subscription
    )
