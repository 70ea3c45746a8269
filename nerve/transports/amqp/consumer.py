"""A subscription's queue as this process consumes it: the consumer, on a channel of its
own, and the deliveries it buffers until the worker asks for them."""

from __future__ import annotations

import asyncio
import functools
import logging
import re
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aio_pika.abc import (
    AbstractIncomingMessage,
    AbstractRobustChannel,
    AbstractRobustConnection,
    AbstractRobustQueue,
)

from nerve.events import Event
from nerve.transports.amqp.client import settle_quietly
from nerve.transports.amqp.delivery import AMQPDelivery

__all__ = ["SubscriptionQueue"]

log = logging.getLogger("nerve")


@dataclass(slots=True)
class SubscriptionQueue:
    """A subscription's queue, as this process declared it and consumes it."""

    name: str  # the subscription's
    queue: str
    exchange: str  # the events exchange it is bound to
    pattern: re.Pattern[str]  # what the queue's binding should match
    arguments: dict[str, Any]
    buffer: deque[AMQPDelivery] = field(default_factory=deque)  # consumed, not yet returned
    arrived: asyncio.Event = field(default_factory=asyncio.Event)
    channel: AbstractRobustChannel | None = None  # the consumer's, opened at first receive
    stale_types: set[str] = field(default_factory=set)

    async def consume(
        self,
        connection: AbstractRobustConnection,
        prefetch: int,
        on_message: Callable[[AbstractIncomingMessage], Awaitable[None]],
    ) -> None:
        """Consume the queue on a channel of its own, ``prefetch`` deliveries at most,
        handing each message to ``on_message``."""
        channel = await connection.channel(publisher_confirms=False)
        await channel.set_qos(prefetch_count=prefetch)
        queue: AbstractRobustQueue = await channel.declare_queue(
            self.queue, durable=True, arguments=self.arguments
        )
        await queue.consume(on_message)
        self.channel = channel

    async def event_of(self, message: AbstractIncomingMessage) -> Event[Any] | None:
        """The event a consumed message carries, or None if it is none to handle: one a
        stale binding brought is acknowledged, a malformed one parked."""
        routing_key = message.routing_key or ""
        if message.exchange == self.exchange and not self.pattern.fullmatch("." + routing_key):
            # A binding left by an earlier pattern of this subscription: not ours to handle.
            if routing_key not in self.stale_types:
                self.stale_types.add(routing_key)
                log.warning(
                    "%s: queue %s gets %r events its pattern does not match: remove the "
                    "binding left by an earlier pattern",
                    self.name,
                    self.queue,
                    routing_key,
                )
            await settle_quietly(message, message.ack)
            return None
        try:
            return Event.model_validate_json(message.body)
        except ValueError:
            log.exception("%s: parking malformed message from %s", self.name, self.queue)
            # dead-lettered to the parked queue
            await settle_quietly(message, functools.partial(message.reject, requeue=False))
            return None

    def put(self, delivery: AMQPDelivery) -> None:
        """Buffer a delivery for the next receive."""
        self.buffer.append(delivery)
        self.arrived.set()

    def stop(self) -> None:
        """The transport closes: receivers return at once, and nothing is buffered."""
        self.arrived.set()
        self.buffer.clear()
        self.channel = None
