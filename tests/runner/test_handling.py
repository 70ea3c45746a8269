"""The consume loop when its own parts fail: nothing is lost, nothing stalls."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence

from nerve import Backoff, DeliveryState, Event, EventBus, StoreError
from nerve.stores.memory import MemoryStore
from tests.conftest import eventually


class FlakyStore(MemoryStore):
    """Fails the first write of successes, as a store losing its connection would."""

    def __init__(self) -> None:
        super().__init__()
        self.failures_left = 1

    async def mark_done_many(self, done: Mapping[str, Sequence[str]]) -> None:
        if self.failures_left:
            self.failures_left -= 1
            raise StoreError("connection reset")
        await super().mark_done_many(done)


async def test_a_store_failure_after_the_handler_leaves_the_event_for_redelivery() -> None:
    bus = EventBus(store=FlakyStore())
    calls: list[int] = []

    @bus.on("a.b", name="h", backoff=Backoff(initial=0.01))
    async def handler(event: Event) -> None:
        calls.append(1)

    async with bus:
        event = await bus.publish(Event(event_type="a.b"))
    # At least once: the success could not be recorded, so the handler ran again.
    assert len(calls) == 2
    assert (await bus.status(event.event_id)).subscriptions == {"h": DeliveryState.DONE}
    assert bus.unfinished == []


class StoreDownAtFirst(MemoryStore):
    """Cannot tell which events were handled for its first two asks, as a store that is
    down when the worker starts."""

    def __init__(self) -> None:
        super().__init__()
        self.failures_left = 2

    async def done_among(self, subscription: str, event_ids: Sequence[str]) -> set[str]:
        if self.failures_left:
            self.failures_left -= 1
            raise StoreError("connection refused")
        return await super().done_among(subscription, event_ids)


async def test_a_store_down_when_events_arrive_holds_them_until_it_is_back() -> None:
    store = StoreDownAtFirst()
    bus = EventBus(store=store)
    handled: list[int] = []

    @bus.on("a.b", name="h")
    async def handler(event: Event) -> None:
        handled.append(event.payload["n"])

    async with bus:
        for n in range(3):
            await bus.publish(Event(event_type="a.b", payload={"n": n}))
        await bus.join(timeout=10)  # the worker kept asking instead of ending
    assert store.failures_left == 0
    assert sorted(handled) == [0, 1, 2]  # each once: neither dropped nor run blind twice


async def test_a_duplicate_of_an_event_being_handled_waits_for_the_outcome() -> None:
    """The second copy of an event (a broker's redelivery after a lost connection, or the
    same event published twice) arrives while the first is still running, and the first
    then fails: the copy must be handled, not acknowledged as done."""
    bus = EventBus()
    gate = asyncio.Event()
    outcomes: list[str] = []

    @bus.on("a.b", name="h", retries=0)
    async def handler(event: Event) -> None:
        if not outcomes:
            outcomes.append("failing")
            await gate.wait()  # the copy arrives meanwhile
            raise RuntimeError("the first attempt fails")
        outcomes.append("handled")

    async with bus:
        event = Event(event_type="a.b")
        await bus.publish(event)
        await eventually(lambda: outcomes == ["failing"])
        await bus.publish(event)  # the same id
        await asyncio.sleep(0)
        gate.set()
        await bus.join(timeout=10)
    assert outcomes == ["failing", "handled"]
    assert (await bus.status(event.event_id)).subscriptions == {"h": DeliveryState.DONE}
    assert [entry.event.event_id for entry in await bus.dlq.list()] == [event.event_id]


async def test_a_duplicate_of_an_event_being_handled_is_acknowledged_once_it_succeeds() -> None:
    bus = EventBus()
    gate = asyncio.Event()
    calls: list[str] = []

    @bus.on("a.b", name="h")
    async def handler(event: Event) -> None:
        calls.append(event.event_id)
        await gate.wait()

    async with bus:
        event = Event(event_type="a.b")
        await bus.publish(event)
        await eventually(lambda: len(calls) == 1)
        await bus.publish(event)
        await asyncio.sleep(0.05)  # the copy is waiting, not running
        assert len(calls) == 1
        gate.set()
        await bus.join(timeout=10)
    assert len(calls) == 1
