"""A message consumed from a subscription's queue, as a :class:`~nerve.transports.Delivery`:
settled by the transport that consumed it, on the channel it came on."""

from __future__ import annotations

from typing import Any, Protocol

from aio_pika.abc import AbstractIncomingMessage

from nerve.events import Event
from nerve.transports.amqp.client import channel_of
from nerve.transports.base import Delivery

__all__ = ["AMQPDelivery", "Settler"]


class Settler(Protocol):
    """What settles an :class:`AMQPDelivery` once it has claimed the right to (the
    transport that consumed it)."""

    async def settle_claimed(self, delivery: AMQPDelivery) -> None:
        """Acknowledge it: never deliver it again."""

    async def requeue_claimed(
        self, delivery: AMQPDelivery, delay: float, *, next_attempt: bool
    ) -> None:
        """Deliver it again after ``delay`` seconds, with ``attempt + 1`` if
        ``next_attempt``."""


class AMQPDelivery(Delivery):
    """A message consumed from a subscription's queue, settled on the channel it came on."""

    __slots__ = ("_settler", "message")

    def __init__(
        self,
        settler: Settler,
        event: Event[Any],
        subscription: str,
        attempt: int,
        message: AbstractIncomingMessage,
    ) -> None:
        super().__init__(event, subscription, attempt)
        self._settler = settler
        self.message = message

    @property
    def returned(self) -> bool:
        """Its channel is gone: the broker has put it back in the queue already."""
        return channel_of(self.message) is None

    async def _ack(self) -> None:
        await self._settler.settle_claimed(self)

    async def _reject(self) -> None:
        await self._settler.settle_claimed(self)  # the core has dead-lettered it in its store

    async def _nack(self, delay: float) -> None:
        await self._settler.requeue_claimed(self, delay, next_attempt=True)

    async def _release(self) -> None:
        # Not started: back to its queue with the same attempt, so a shutdown spends
        # neither a retry nor a return of the delivery limit (a basic.nack would do both).
        await self._settler.requeue_claimed(self, 0.0, next_attempt=False)
