"""A delivery from Kafka, and how it is settled.

Acknowledged or rejected, a delivery's offset leaves its partition's offsets in flight and
the subscription commits what is settled below them (see
:mod:`nerve.transports.kafka.partition`).

Retries never block a partition: :meth:`KafkaDelivery.nack` publishes the event to the
subscription's retry topic with its next attempt number and due time (``nerve-attempt``,
``nerve-due`` headers, wall-clock milliseconds), then settles the original offset. The
group reads the retry topic next to the events topic and keeps records that are not due
yet in memory (their offsets stay uncommitted) until they are. DLQ replays
(``publish(event, subscription=name)``) go to the same topic as attempt 1.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from nerve import clock
from nerve.events import Event
from nerve.transports.base import Delivery
from nerve.transports.kafka.partition import Partition
from nerve.transports.kafka.producer import Producer
from nerve.transports.kafka.wire import retry_headers


class Member(Protocol):
    """What a delivery needs of its subscription's group member: where retries go, and
    the commit of what is settled."""

    name: str
    retry_topic: str

    @property
    def producer(self) -> Producer: ...

    async def commit(self) -> None: ...


class KafkaDelivery(Delivery):
    """A record of a subscription's events or retry topic, handed to its handler."""

    __slots__ = ("_sub", "offset", "partition")

    def __init__(
        self,
        sub: Member,
        event: Event[Any],
        attempt: int,
        partition: Partition,
        offset: int,
    ) -> None:
        super().__init__(event, sub.name, attempt)
        self._sub = sub
        self.partition = partition
        self.offset = offset

    async def _ack(self) -> None:
        await settle([self])

    async def _reject(self) -> None:
        await settle([self])

    async def _nack(self, delay: float) -> None:
        await self._retry(delay, self.attempt + 1)

    async def _release(self) -> None:
        await self._retry(0.0, self.attempt)  # never started: no attempt

    async def _retry(self, delay: float, attempt: int) -> None:
        # Published even from a revoked partition (it may come back here; if another member
        # has it, the event is delivered twice, which the idempotency store absorbs).
        due = int((clock.time() + delay) * 1000) if delay > 0 else 0
        await self._sub.producer.write(
            self._sub.retry_topic,
            self.event,
            retry_headers(attempt, due),
            f"requeueing {self.event.event_id}",
        )
        await settle([self])


async def settle(deliveries: Sequence[KafkaDelivery]) -> None:
    """Settle deliveries already claimed: their offsets leave the in-flight sets, then
    each of their subscriptions commits."""
    # Recorded even on a revoked partition: it may come straight back to this member
    # (then its state must be right); if it went to another, that one redelivers.
    for delivery in deliveries:
        delivery.partition.in_flight.discard(delivery.offset)
    for sub in dict.fromkeys(delivery._sub for delivery in deliveries):
        await sub.commit()
