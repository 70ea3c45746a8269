"""Later: a bus's delayed events and schedules, kept as timers in its store.

``bus.publish(event, delay=...)`` stores the event in a timer ``event:<id>`` due then;
``bus.schedule(...)`` keeps one timer ``schedule:<name>`` due at the next firing (see
:mod:`nerve.schedules`). A running bus's timer loop (:mod:`nerve.timers`) claims them
when due and calls :meth:`Later.due_event` / :meth:`Later.due_schedule`, which publish
through the bus like any other publish, then forget or move the timer. Publishing again
after a crash is harmless: the event has the same id, and subscriptions that handled
it recognise it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from nerve import clock
from nerve.events import Event
from nerve.exceptions import SubscriptionError
from nerve.records import Timer
from nerve.schedules import CatchUp, Schedule
from nerve.stores.base import Store

EVENT_PREFIX = "event:"


def due_time(delay: timedelta | float | None, at: datetime | None, now: float) -> float:
    """When an event published with ``delay`` or ``at`` is due (unix time).

    Raises:
        ValueError: both given, a naive datetime, or a negative delay.
    """
    if delay is not None and at is not None:
        raise ValueError("give publish a delay or a time (at), not both")
    if at is not None:
        if at.tzinfo is None:
            raise ValueError("publish(at=...) takes an aware datetime (with a tz)")
        return at.timestamp()
    seconds = delay.total_seconds() if isinstance(delay, timedelta) else float(delay or 0)
    if seconds < 0:
        raise ValueError(f"publish delay must be >= 0, got {seconds}s")
    return now + seconds


class Later:
    """The delayed events and schedules of one bus.

    Args:
        store: the bus's store, ready (the bus connects it lazily).
        publish: publishes one event now (the bus's ``publish``).
        publish_many: publishes events now (the bus's ``publish_many``).
    """

    def __init__(
        self,
        store: Callable[[], Awaitable[Store]],
        publish: Callable[[Event[Any]], Awaitable[Any]],
        publish_many: Callable[[Sequence[Event[Any]]], Awaitable[Any]],
    ) -> None:
        self._store = store
        self._publish = publish
        self._publish_many = publish_many
        self.schedules: dict[str, Schedule] = {}

    def add_schedule(self, schedule: Schedule) -> None:
        if schedule.name in self.schedules:
            raise SubscriptionError(f"a schedule named {schedule.name!r} exists already")
        self.schedules[schedule.name] = schedule

    async def install(self) -> None:
        """Store each schedule's timer, unless the same definition is there already (a
        restart keeps its due time: nothing skipped, nothing repeated)."""
        store = await self._store()
        now = clock.time()
        for sched in self.schedules.values():
            stored = await store.timer(sched.timer_id)
            if stored is not None and sched.same_as(stored):
                continue
            await store.add_timer(sched.timer(sched.next_after(now)), replace=True)

    async def schedule_event(self, event: Event[Any], due: float) -> None:
        """Keep ``event`` until ``due`` (a second schedule of its id keeps the first)."""
        store = await self._store()
        await store.record_published(event)  # status knows its type meanwhile
        timer = Timer(timer_id=EVENT_PREFIX + event.event_id, due=due, body=event.model_dump_json())
        await store.add_timer(timer)

    async def cancel(self, event_id: str) -> bool:
        store = await self._store()
        return await store.delete_timer(EVENT_PREFIX + event_id)

    async def is_scheduled(self, event_id: str) -> bool:
        store = await self._store()
        return await store.timer(EVENT_PREFIX + event_id) is not None

    async def scheduled(self, limit: int) -> list[tuple[Event[Any], datetime]]:
        store = await self._store()
        return [
            (Event.model_validate_json(t.body), datetime.fromtimestamp(t.due, UTC))
            for t in await store.timers(EVENT_PREFIX, limit)
        ]

    # the timer loop's handlers

    async def due_event(self, timer: Timer) -> None:
        """A delayed event is due: publish it, then forget its timer."""
        await self._publish(Event.model_validate_json(timer.body))
        store = await self._store()
        await store.delete_timer(timer.timer_id)

    async def due_schedule(self, timer: Timer) -> None:
        """A schedule is due: publish its firing(s), then move its timer on."""
        sched = Schedule.model_validate_json(timer.body)  # the stored definition rules
        events, following = sched.firings(timer.due, clock.time())
        if events:
            await self._publish_many(events)
        store = await self._store()
        await store.add_timer(sched.timer(following), replace=True)


__all__ = ["CatchUp", "Later", "due_time"]
