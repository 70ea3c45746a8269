"""The in-memory transport's own promises: bounded pending work, and what it loses at stop."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from nerve import BusFull, Event, EventBus, Settings

MemoryBusFactory = Callable[..., EventBus]


@pytest.fixture
async def make_bus() -> AsyncIterator[MemoryBusFactory]:
    made: list[EventBus] = []

    def factory(**settings: Any) -> EventBus:
        bus = EventBus("memory://", settings=Settings(**settings))
        made.append(bus)
        return bus

    yield factory
    for bus in made:
        await bus.stop(grace=1.0)


async def test_publish_raises_bus_full_after_its_timeout(make_bus: MemoryBusFactory) -> None:
    bus = make_bus(max_pending=5)

    @bus.on("x.y")
    async def handler(event: Event) -> None:
        pass

    for _ in range(5):  # nothing consumes yet: the bus is not started
        await bus.publish(Event(event_type="x.y"))
    with pytest.raises(BusFull, match="max_pending=5"):
        await bus.publish(Event(event_type="x.y"), timeout=0.05)


async def test_publish_waits_for_room_then_goes_through(make_bus: MemoryBusFactory) -> None:
    bus = make_bus(max_pending=5)
    handled: list[int] = []

    @bus.on("x.y")
    async def handler(event: Event) -> None:
        assert isinstance(event.payload, dict)
        handled.append(event.payload["n"])

    for n in range(5):
        await bus.publish(Event(event_type="x.y", payload={"n": n}))
    blocked = asyncio.create_task(bus.publish(Event(event_type="x.y", payload={"n": 5})))
    await asyncio.sleep(0.01)
    assert not blocked.done()  # waiting, not growing the queue
    async with bus:
        await blocked
    assert handled == list(range(6))


async def test_handlers_publishing_into_a_full_bus_do_not_deadlock(
    make_bus: MemoryBusFactory,
) -> None:
    """A handler that publishes while the bus is full must not wait for room it holds."""
    bus = make_bus(max_pending=2)
    children = 0

    @bus.on("job.#", concurrency=1)
    async def expand(event: Event) -> None:
        nonlocal children
        if event.event_type == "job.part":
            children += 1
            return
        for _ in range(3):
            await bus.publish(Event(event_type="job.part"))

    async with bus:
        for _ in range(300):  # more than the subscription's buffer and the bus's bound
            await bus.publish(Event(event_type="job.whole"))
        await bus.join(20)
    assert children == 900
