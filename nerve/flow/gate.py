"""The gate a delivery passes before its handler runs, when its subscription has flow
controls (:mod:`nerve.flow.controls`).

:meth:`FlowGate.admit` answers with a :class:`Verdict`:

- ``go``: run the handler now (holding a concurrency slot, freed by :meth:`FlowGate.done`);
- ``defer``: not now: the runner acknowledges the delivery and keeps the event in a timer
  ``defer:<subscription>:<event id>`` due at ``until`` (holding no slot, no lease), which
  hands it back to the subscription then; the event carries in its metadata which
  controls it has passed already, so it is not counted twice;
- ``drop`` / ``dead_letter``: over a rate limit (or, for ``drop``, superseded by a later
  event of its debounce burst): settled without running.

The controls run in this order: rate limit, debounce, throttle, concurrency. All their
state is in the store (:class:`nerve.stores.base.Limits`): every process sharing it
shares the limits.

Debounce, per key: ``quiet`` is when the key will have been quiet for ``period`` (the last
arrival plus ``period``); ``deadline`` is the burst's first arrival plus ``max_wait``. An
arriving event pushes ``quiet`` on and is deferred to ``min(arrival + period,
deadline)``; when it comes back it runs only if no event arrived after it (``quiet`` is
still its own), else it is dropped as superseded. The event that runs at the deadline
starts the next deadline, so a key that never goes quiet still runs once per
``max_wait``.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any, Literal

from nerve import clock
from nerve.events import Event
from nerve.flow.controls import Concurrency, Debounce, RateLimit, Throttle, key_of
from nerve.stores.base import RATE_EPSILON, Limits

#: Metadata: the controls an event has passed (comma-separated), so a deferred event
#: comes back past them.
PASSED_KEY = "nerve-flow-passed"
#: Metadata: when the event arrived at its debounce (unix time, repr).
ARRIVED_KEY = "nerve-flow-arrived"
#: Metadata: how many times the event was deferred for a concurrency slot.
DEFERRALS_KEY = "nerve-flow-deferrals"


@dataclass(frozen=True, slots=True)
class Verdict:
    """What to do with a delivery (see the module)."""

    action: Literal["go", "defer", "drop", "dead_letter"]
    event: Event[Any]
    until: float = 0.0
    reason: str = ""
    slot: tuple[str, str, str] | None = field(default=None)


class FlowGate:
    """The flow controls of one subscription, over the store's :class:`Limits`."""

    def __init__(
        self,
        subscription: str,
        store: Limits,
        *,
        concurrency: Concurrency | None = None,
        throttle: Throttle | None = None,
        rate_limit: RateLimit | None = None,
        debounce: Debounce | None = None,
    ) -> None:
        self._name = subscription
        self._store = store
        self._concurrency = concurrency
        self._throttle = throttle
        self._rate_limit = rate_limit
        self._debounce = debounce

    async def admit(self, event: Event[Any]) -> Verdict:
        """Pass ``event`` through the controls (see the module)."""
        passed = set(filter(None, event.metadata.get(PASSED_KEY, "").split(",")))
        now = clock.time()
        limit = self._rate_limit
        if limit is not None and "rate" not in passed:
            key = key_of(limit.key, event)
            wait = await self._store.take_rate(
                f"{self._name}:rate",
                key,
                interval=limit.interval,
                burst=limit.limit,
                cost=1,
                now=now,
            )
            if wait > 0:
                why = f"over the rate limit of {limit.limit} per {limit.per} (key {key!r})"
                return Verdict(
                    "drop" if limit.excess == "drop" else "dead_letter", event, reason=why
                )
            passed.add("rate")
        if self._debounce is not None:
            verdict = await self._debounced(event, passed, now)
            if verdict is not None:
                return verdict
            passed.add("debounce")
        throttle = self._throttle
        if throttle is not None and "throttle" not in passed:
            key = key_of(throttle.key, event)
            wait = await self._store.take_rate(
                f"{self._name}:throttle",
                key,
                interval=throttle.interval,
                burst=throttle.bursts,
                cost=1,
                now=now,
                force=True,  # its moment is reserved: it comes back then, past the throttle
            )
            passed.add("throttle")
            if wait > 0:
                return Verdict(
                    "defer",
                    _marked(event, passed),
                    until=now + wait,
                    reason=f"throttled (key {key!r}) until {now + wait:.3f}",
                )
        slots = self._concurrency
        if slots is not None:
            key = key_of(slots.key, event)
            held = await self._store.take_slot(
                f"{self._name}:slots",
                key,
                event.event_id,
                limit=slots.limit,
                lease=slots.lease,
                now=now,
            )
            if not held:
                tries = int(event.metadata.get(DEFERRALS_KEY, "0"))
                pause = min(2.0, 0.05 * 2**tries) * (0.5 + random.random())
                marked = _marked(event, passed, {DEFERRALS_KEY: str(tries + 1)})
                why = f"waiting for a slot of key {key!r} ({slots.limit} at once)"
                return Verdict("defer", marked, until=now + pause, reason=why)
            return Verdict("go", event, slot=(f"{self._name}:slots", key, event.event_id))
        return Verdict("go", event)

    async def done(self, verdict: Verdict) -> None:
        """The handler of a ``go`` ended: free its slot."""
        if verdict.slot is not None:
            await self._store.free_slot(*verdict.slot)

    async def _debounced(self, event: Event[Any], passed: set[str], now: float) -> Verdict | None:
        bounce = self._debounce
        assert bounce is not None  # noqa: S101  # the caller checked
        key = key_of(bounce.key, event)
        quiet_name, deadline_name = f"{self._name}:quiet", f"{self._name}:deadline"
        arrived_text = event.metadata.get(ARRIVED_KEY)
        if "debounce" in passed:
            return None
        if arrived_text is None:  # arriving: push the quiet time on, wait for it
            pending = await self._read(quiet_name, key, now)
            longest = bounce.longest
            if pending <= 0 and longest is not None:  # a new burst: its deadline
                await self._store.block_rate(
                    deadline_name, key, until=now + longest, burst=0.0, interval=1.0
                )
            await self._store.block_rate(
                quiet_name, key, until=now + bounce.seconds, burst=0.0, interval=1.0
            )
            until = now + bounce.seconds
            if longest is not None:
                left = await self._read(deadline_name, key, now)
                until = min(until, now + left) if left > 0 else now
            marked = _marked(event, passed, {ARRIVED_KEY: repr(now)})
            return Verdict("defer", marked, until=until, reason=f"debounced (key {key!r})")
        arrived = float(arrived_text)
        # Read from its own arrival: the quiet time is still its own unless a later event
        # pushed it on (however late this one comes back).
        last = await self._read(quiet_name, key, arrived) <= bounce.seconds + RATE_EPSILON
        if not last:
            if bounce.longest is None:
                return Verdict("drop", event, reason=f"superseded in its debounce (key {key!r})")
            left = await self._read(deadline_name, key, now)
            if left > 0 or not await self._newest_at_deadline(event, key, arrived):
                return Verdict("drop", event, reason=f"superseded in its debounce (key {key!r})")
        if bounce.longest is not None:  # this run ends the burst's wait: the next deadline
            await self._store.block_rate(
                deadline_name, key, until=now + bounce.longest, burst=0.0, interval=1.0
            )
        return None

    async def _read(self, name: str, key: str, now: float) -> float:
        """Seconds until a debounce state's time (0 when past), changing nothing."""
        return await self._store.take_rate(name, key, interval=1.0, burst=0.0, cost=0.0, now=now)

    async def _newest_at_deadline(self, event: Event[Any], key: str, arrived: float) -> bool:
        """At a burst's deadline, whether this event is the one to run: the first of the
        burst's events back at the deadline claims it (one per deadline, across
        processes); it may not be the very latest of the burst."""
        return await self._store.take_slot(
            f"{self._name}:deadline-run",
            key,
            event.event_id,
            limit=1,
            lease=self._debounce_lease(),
            now=clock.time(),
        )

    def _debounce_lease(self) -> float:
        bounce = self._debounce
        return bounce.seconds if bounce is not None else 1.0


def _marked(event: Event[Any], passed: set[str], extra: dict[str, str] | None = None) -> Event[Any]:
    metadata = {**event.metadata, PASSED_KEY: ",".join(sorted(passed)), **(extra or {})}
    return event.model_copy(update={"metadata": metadata})
