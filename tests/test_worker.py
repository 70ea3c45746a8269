"""The consume loop when its own parts fail: nothing is lost, nothing stalls."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from nerve import Backoff, DeliveryState, Event, EventBus, StoreError
from nerve.stores.memory import MemoryStore


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
