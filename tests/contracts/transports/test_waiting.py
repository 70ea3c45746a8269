"""Contract for time and waiting, on every transport: delayed events, schedules, durable
waits (resumed from another process, timed out across restarts, cancelled), and the race
of an answer published right after the trigger.

Two buses on one URL stand for two processes; on ``memory://`` they are one bus.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections import Counter
from datetime import datetime, timedelta
from typing import Any

import pytest

from nerve import DeliveryState, Event, EventBus, step
from nerve.exceptions import RunCancelled
from nerve.schedules import DUE_KEY
from nerve.waits import wait_for
from tests.conftest import BusFactory, eventually

pytestmark = pytest.mark.timeout(120)

QUICK = {"timer_poll": 0.05}


def durable(bus: EventBus) -> bool:
    return bus.transport.durable


async def test_a_delayed_event_comes_when_due_not_before(make_bus: BusFactory) -> None:
    bus = make_bus(**QUICK)
    seen: dict[str, float] = {}

    @bus.on("reminder.due", name="remind")
    async def remind(event: Event) -> None:
        seen[event.payload["n"]] = time.time()

    await bus.start()
    sent = time.time()
    first = await bus.publish(Event(event_type="reminder.due", payload={"n": "a"}), delay=0.8)
    gone = await bus.publish(
        Event(event_type="reminder.due", payload={"n": "b"}), delay=timedelta(seconds=0.5)
    )
    last = await bus.publish(Event(event_type="reminder.due", payload={"n": "c"}), delay=1.2)
    status = await bus.status(first.event_id)
    assert status.subscriptions == {"remind": DeliveryState.SCHEDULED}
    assert [e.event_id for e, _due in await bus.scheduled()] == [
        gone.event_id,
        first.event_id,
        last.event_id,
    ]
    assert await bus.cancel_scheduled(gone.event_id)
    assert not await bus.cancel_scheduled(gone.event_id)
    await eventually(lambda: "c" in seen, timeout=20)
    assert seen["a"] - sent >= 0.8
    assert seen["c"] - sent >= 1.2
    assert "b" not in seen  # cancelled: "c", due after it, has come and "b" has not
    await eventually_status(bus, first.event_id, DeliveryState.DONE)


async def eventually_status(bus: EventBus, event_id: str, state: DeliveryState) -> None:
    deadline = time.monotonic() + 20
    while True:
        found = await bus.status(event_id)
        if found.subscriptions and all(s is state for s in found.subscriptions.values()):
            return
        if time.monotonic() > deadline:
            pytest.fail(f"{event_id} is {found.subscriptions}, not {state}")
        await asyncio.sleep(0.05)


async def test_a_delayed_event_outlives_every_process(make_bus: BusFactory) -> None:
    first = make_bus(**QUICK)
    if not durable(first):
        pytest.skip("memory:// keeps nothing across processes, by design")
    got: list[str] = []

    def worker() -> EventBus:
        bus = make_bus(**QUICK)

        @bus.on("reminder.due", name="remind")
        async def remind(event: Event) -> None:
            got.append(event.event_id)

        return bus

    one = worker()
    await one.start()
    event = await one.publish(Event(event_type="reminder.due"), delay=1.0)
    await one.stop()
    two = worker()
    await two.start()
    await eventually(lambda: got == [event.event_id], timeout=20)


class Refunds:
    """A refund handler that drafts (a counted step), asks, waits, and records."""

    def __init__(self, bus: EventBus, timeout: float = 30.0) -> None:
        self.drafts: Counter[str] = Counter()
        self.runs: Counter[str] = Counter()
        self.decisions: dict[str, Any] = {}
        self.cancelled: list[str] = []

        @bus.on(
            "refund.requested",
            name="refund",
            cancel_on=[("refund.withdrawn", "payload.id")],
        )
        async def refund(event: Event) -> None:
            rid = event.payload["id"]
            self.runs[rid] += 1

            async def draft() -> str:
                self.drafts[rid] += 1
                return f"draft {rid}"

            await step("draft", draft)
            try:
                decision = await wait_for(
                    "refund.decided", match={"payload.id": rid}, timeout=timeout
                )
            except RunCancelled:
                self.cancelled.append(rid)
                raise
            self.decisions[rid] = None if decision is None else decision.payload["ok"]


async def test_a_wait_is_resumed_by_an_event_from_another_process(make_bus: BusFactory) -> None:
    worker = make_bus(**QUICK)
    refunds = Refunds(worker)
    await worker.start()
    other = make_bus(**QUICK) if durable(worker) else worker  # a publisher elsewhere
    trigger = await other.publish(Event(event_type="refund.requested", payload={"id": "r1"}))
    await eventually_status(worker, trigger.event_id, DeliveryState.WAITING)
    [waiting] = await worker.waits()
    assert waiting.event.event_id == trigger.event_id
    assert waiting.match == {"payload.id": "r1"}
    await other.publish(Event(event_type="refund.decided", payload={"id": "r1", "ok": True}))
    await eventually(lambda: "r1" in refunds.decisions, timeout=20)
    assert refunds.decisions == {"r1": True}
    assert refunds.drafts["r1"] == 1  # the step ran once, the handler twice
    assert refunds.runs["r1"] == 2
    await eventually_status(worker, trigger.event_id, DeliveryState.DONE)
    assert await worker.waits() == []


async def test_a_wait_times_out_after_every_process_restarted(make_bus: BusFactory) -> None:
    first = make_bus(**QUICK)
    if not durable(first):
        pytest.skip("memory:// keeps nothing across processes, by design")
    refunds = Refunds(first, timeout=1.5)
    await first.start()
    trigger = await first.publish(Event(event_type="refund.requested", payload={"id": "r2"}))
    await eventually_status(first, trigger.event_id, DeliveryState.WAITING)
    await first.stop()
    second = make_bus(**QUICK)
    later = Refunds(second, timeout=1.5)
    await second.start()
    await eventually(lambda: "r2" in later.decisions, timeout=20)
    assert later.decisions == {"r2": None}  # timed out
    assert refunds.drafts["r2"] + later.drafts["r2"] == 1
    await eventually_status(second, trigger.event_id, DeliveryState.DONE)


async def test_cancel_on_ends_a_waiting_run(make_bus: BusFactory) -> None:
    bus = make_bus(**QUICK)
    refunds = Refunds(bus)
    await bus.start()
    trigger = await bus.publish(Event(event_type="refund.requested", payload={"id": "r3"}))
    await eventually_status(bus, trigger.event_id, DeliveryState.WAITING)
    await bus.publish(Event(event_type="refund.withdrawn", payload={"id": "r3"}))
    await eventually(lambda: refunds.cancelled == ["r3"], timeout=20)
    await eventually_status(bus, trigger.event_id, DeliveryState.DONE)
    assert "r3" not in refunds.decisions
    assert await bus.waits() == []


async def test_bus_cancel_ends_a_waiting_run(make_bus: BusFactory) -> None:
    bus = make_bus(**QUICK)
    refunds = Refunds(bus)
    await bus.start()
    trigger = await bus.publish(Event(event_type="refund.requested", payload={"id": "r4"}))
    await eventually_status(bus, trigger.event_id, DeliveryState.WAITING)
    assert await bus.cancel(trigger.event_id) == 1
    await eventually(lambda: refunds.cancelled == ["r4"], timeout=20)
    await eventually_status(bus, trigger.event_id, DeliveryState.DONE)


RACES = 1000


async def test_an_answer_published_right_after_the_trigger_is_never_missed(
    make_bus: BusFactory,
) -> None:
    bus = make_bus(**QUICK)
    refunds = Refunds(bus)
    await bus.start()
    other = make_bus(**QUICK) if durable(bus) else bus
    for batch in range(0, RACES, 100):
        events: list[Event] = []
        for n in range(batch, batch + 100):
            rid = f"race-{n}"
            events.append(Event(event_type="refund.requested", payload={"id": rid}))
            events.append(Event(event_type="refund.decided", payload={"id": rid, "ok": n % 2 == 0}))
        for event in events:  # each answer right after its trigger
            await other.publish(event)
    await eventually(lambda: len(refunds.decisions) == RACES, timeout=90)
    assert all(refunds.decisions[f"race-{n}"] == (n % 2 == 0) for n in range(RACES))
    assert max(refunds.drafts.values()) == 1


async def test_a_schedule_fires_once_per_due_time_across_three_processes(
    make_bus: BusFactory,
) -> None:
    fired: Counter[str] = Counter()
    buses = []
    for _ in range(3 if durable(make_bus()) else 1):
        bus = make_bus(**QUICK)

        @bus.every(timedelta(seconds=0.5), event_type="tick", name="tick")
        async def tick(event: Event) -> None:
            fired[event.metadata[DUE_KEY]] += 1

        buses.append(bus)
    for bus in buses:
        await bus.start()
    await eventually(lambda: len(fired) >= 5, timeout=30)
    for bus in buses:
        await bus.stop()
    assert set(fired.values()) == {1}, fired
    dues = sorted(fired)
    gaps = {
        round((datetime.fromisoformat(b) - datetime.fromisoformat(a)).total_seconds(), 3)
        for a, b in itertools.pairwise(dues)
    }
    assert gaps == {0.5}  # none skipped
