"""Redis deliveries, and the ones this consumer holds: settling them, keeping their
entries claimed while handlers run, letting them go at close.

A delivery is an entry pending in its subscription's group, owned by this consumer. It
stays pending until settled: an ack or a reject acknowledges it; a nack acknowledges it
and requeues the event for this subscription alone (:file:`lua/nack.lua`). While it is
held, :meth:`InFlight.refresh` resets its idle time (``XCLAIM ... JUSTID``, only while
this consumer still owns it), so a long LLM call is not taken over by another consumer.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, Final

from redis.asyncio import Redis

from nerve.events import Event
from nerve.transports.base import Delivery
from nerve.transports.redis.link import Link

#: Idle time given to in-flight entries released at close: claimable at once by anyone.
RELEASED_IDLE_MS: Final = 365 * 24 * 3_600_000


class RedisDelivery(Delivery):
    """A delivery read from one of a subscription's streams."""

    __slots__ = ("_held", "entry_id", "stream")

    def __init__(
        self,
        held: InFlight,
        event: Event[Any],
        subscription: str,
        attempt: int,
        stream: str,
        entry_id: str,
    ) -> None:
        super().__init__(event, subscription, attempt)
        self._held = held
        self.stream = stream
        self.entry_id = entry_id

    async def _ack(self) -> None:
        await self._held.settle([self])

    _reject = _ack  # given up (dead-lettered by the core): acknowledged all the same

    async def _nack(self, delay: float) -> None:
        await self._held.requeue(self, delay)

    async def _release(self) -> None:
        await self._held.requeue(self, 0.0, tried=False)


class InFlight:
    """The deliveries this consumer has read and not settled yet.

    Iterating it gives them (in the order they were read).

    Args:
        link: the transport's link to Redis.
        wake: called when a retry went to a delayed set, so the task moving due retries
            recomputes its sleep.
    """

    def __init__(self, link: Link, wake: Callable[[], None]) -> None:
        self._link = link
        self._wake = wake
        self._held: dict[RedisDelivery, None] = {}

    def __iter__(self) -> Iterator[RedisDelivery]:
        return iter(self._held)

    def __len__(self) -> int:
        return len(self._held)

    def hold(
        self, event: Event[Any], subscription: str, attempt: int, stream: str, entry_id: str
    ) -> RedisDelivery:
        """A delivery of the entry ``entry_id`` of ``stream``, held from now on (taken
        before any await: a cancellation then loses nothing)."""
        delivery = RedisDelivery(self, event, subscription, attempt, stream, entry_id)
        self._held[delivery] = None
        return delivery

    def let_go(self) -> list[RedisDelivery]:
        """Forget every delivery held; return those not settled (at close)."""
        unsettled = [d for d in self._held if not d.settled]
        self._held.clear()
        return unsettled

    # settling

    async def ack_many(self, deliveries: Sequence[Delivery]) -> None:
        """Acknowledge the deliveries not settled yet, in one round trip."""
        batch = [d for d in deliveries if isinstance(d, RedisDelivery) and d.claim()]
        if batch:
            await self.settle(batch)

    async def settle(self, deliveries: Sequence[RedisDelivery]) -> None:
        """Acknowledge deliveries already claimed (ack or reject)."""
        for delivery in deliveries:
            self._held.pop(delivery, None)
        with self._link.translate(f"acknowledging {len(deliveries)} deliveries"):
            async with self._link.client().pipeline(transaction=False) as pipe:
                for (stream, group), ids in _by_stream(deliveries).items():
                    self._link.acknowledge(pipe, stream, group, ids)
                await pipe.execute()

    async def requeue(self, delivery: RedisDelivery, delay: float, *, tried: bool = True) -> None:
        """Acknowledge a claimed delivery and deliver its event again to its subscription
        after ``delay`` seconds: with the next attempt number if ``tried``, else the same."""
        self._held.pop(delivery, None)
        link, name = self._link, delivery.subscription
        with link.translate(f"requeueing {delivery.event.event_id}"):
            client = link.client()
            await link.scripts.nack(
                keys=[delivery.stream, link.direct_key(name), link.delayed_key(name)],
                args=[
                    name,
                    delivery.entry_id,
                    int(delay * 1000),
                    delivery.attempt + 1 if tried else delivery.attempt,
                    delivery.event.model_dump_json(),
                    0 if delivery.stream == link.events_key else 1,
                ],
                client=client,
            )
        if delay > 0:
            self._wake()

    # claims

    async def refresh(self) -> None:
        """Reset the idle time of the entries held, so that no one takes them over."""
        await self._touch(self._link.client(), list(self._held), 0)

    async def release(self, client: Redis, deliveries: Iterable[RedisDelivery]) -> None:
        """Leave the entries pending for redelivery (durable), but claimable at once by
        another consumer instead of after the lease (at close, with the client detached)."""
        await self._touch(client, deliveries, RELEASED_IDLE_MS)

    async def _touch(
        self, client: Redis, deliveries: Iterable[RedisDelivery], idle_ms: int
    ) -> None:
        by_stream = _by_stream(deliveries)
        if not by_stream:
            return
        async with client.pipeline(transaction=False) as pipe:
            for (stream, group), ids in by_stream.items():
                await self._link.scripts.touch(
                    keys=[stream], args=[group, self._link.consumer, idle_ms, *ids], client=pipe
                )
            await pipe.execute()


def _by_stream(deliveries: Iterable[RedisDelivery]) -> dict[tuple[str, str], list[str]]:
    """Entry ids by (stream, group): one command per stream and group."""
    ids: dict[tuple[str, str], list[str]] = {}
    for delivery in deliveries:
        ids.setdefault((delivery.stream, delivery.subscription), []).append(delivery.entry_id)
    return ids
