"""A delivery of one JetStream message, and the deliveries this process holds in flight.

The delivery count in the message's metadata is the attempt: a retry
(:meth:`NATSDelivery.nack` -> ``-NAK {"delay": ...}``), a takeover after ``ack_wait`` (a
dead worker) and a release at shutdown all count, so a crash counts as an attempt.
nats-server 2.9.10 reports a delivery count of 1 for a redelivery that first met the pull
request of a worker that has just gone: ``attempt`` is then low once (more retries than
asked, nothing lost).

Acks are ``+ACK``; a dead-lettered delivery is terminated (``+TERM``). While a delivery is
held here (handled, or waiting in a buffer), ``+WPI`` (``in_progress``) is sent every
``ack_wait / 3``, so a long LLM call is not redelivered to another worker while it runs. A
frozen process (stopped, not dead) loses its deliveries after ``ack_wait`` and may still
acknowledge them later: handled twice, caught by the idempotency store.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager
from typing import Any, Literal

import nats.errors
from nats.aio.msg import Msg

from nerve import clock
from nerve.events import Event
from nerve.transports.base import Delivery

log = logging.getLogger("nerve")

#: How a delivery is settled: ``+ACK``, ``-NAK`` (with a delay or none), ``+TERM``.
Settlement = Literal["ack", "nak", "term"]
#: The transport's translation of nats-py's errors, around what it is ``doing``.
Translate = Callable[[str], AbstractContextManager[None]]


class NATSDelivery(Delivery):
    """A delivery of one JetStream message to one subscription's consumer."""

    __slots__ = ("_in_flight", "msg")

    def __init__(self, event: Event[Any], subscription: str, msg: Msg, in_flight: InFlight) -> None:
        super().__init__(event, subscription, msg.metadata.num_delivered)
        self._in_flight = in_flight
        self.msg = msg

    async def _ack(self) -> None:
        await self._in_flight.settle([self], "ack")

    async def _nack(self, delay: float) -> None:
        await self._in_flight.settle([self], "nak", delay)

    async def _reject(self) -> None:
        await self._in_flight.settle([self], "term")


class InFlight:
    """The deliveries this process holds: arrived, and not settled yet.

    Iterating gives them in the order they arrived.
    """

    def __init__(self, translate: Translate) -> None:
        self._held: dict[NATSDelivery, None] = {}  # a dict: ordered, unlike a set
        self._translate = translate

    def __iter__(self) -> Iterator[NATSDelivery]:
        return iter(self._held)

    def hold(self, delivery: NATSDelivery) -> None:
        """Hold ``delivery`` until it is settled (or the transport closes)."""
        self._held[delivery] = None

    def forget(self) -> list[NATSDelivery]:
        """Hold nothing any more; return what was held and not settled (to release it)."""
        unsettled = [d for d in self._held if not d.settled]
        self._held.clear()
        return unsettled

    async def settle(
        self, deliveries: Sequence[NATSDelivery], how: Settlement, delay: float = 0.0
    ) -> None:
        """Settle ``deliveries`` (claimed already) on the server, one message each."""
        for delivery in deliveries:  # all of them, before a failure can stop the loop below
            self._held.pop(delivery, None)
        with self._translate(f"settling {len(deliveries)} deliveries ({how})"):
            for delivery in deliveries:
                if how == "ack":
                    await delivery.msg.ack()
                elif how == "nak":
                    await delivery.msg.nak(delay=delay if delay > 0 else None)
                else:
                    await delivery.msg.term()

    async def keep_alive(self, every: float) -> None:
        """Tell the server every ``every`` seconds that each delivery held is still being
        worked on (``+WPI``), until cancelled."""
        while True:
            await clock.sleep(every)
            try:
                for delivery in list(self._held):
                    if not delivery.settled:
                        await delivery.msg.in_progress()
            except nats.errors.Error:
                log.warning("could not extend the ack wait of in-flight deliveries", exc_info=True)
