"""The AMQP transport: its connection and channels, declaring subscriptions, publishing,
consuming, settling, and what it tells of idleness and lag.

Retries waiting for their delay are :mod:`nerve.transports.amqp.waits`'s; the package's
docstring tells the whole design.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Sequence
from contextlib import suppress
from typing import Any, Final, Self, cast

import aio_pika
from aio_pika.abc import (
    AbstractExchange,
    AbstractIncomingMessage,
    AbstractRobustChannel,
    AbstractRobustConnection,
    ExchangeType,
)
from aiormq.abc import AbstractChannel
from aiormq.exceptions import ChannelInvalidStateError, ChannelPreconditionFailed, PublishError

from nerve.events import Event
from nerve.exceptions import BusClosed, ConfigurationError, SubscriptionError, TransportError
from nerve.routing import compile_pattern, validate_pattern
from nerve.settings import Settings
from nerve.subscription import StartFrom
from nerve.transports.amqp.client import (
    CLIENT_ERRORS,
    channel_of,
    confirm_within,
    ready_count,
    settle_quietly,
    translate,
    unless_lost,
)
from nerve.transports.amqp.consumer import SubscriptionQueue
from nerve.transports.amqp.delivery import AMQPDelivery
from nerve.transports.amqp.parked import ParkedQueue
from nerve.transports.amqp.waits import MIN_DELAY, WaitQueues
from nerve.transports.amqp.wire import (
    DEFAULT_PREFIX,
    DELAY_NAME,
    EVENTS_NAME,
    PARKED_NAME,
    amqp_options,
    amqp_where,
    attempt_of,
    checked_prefix,
    message_of,
    queue_name,
    quorum_queue,
)
from nerve.transports.base import Delivery, Parked, Transport, each_then_raise
from nerve.urls import integer_option

__all__ = ["DEFAULT_DELIVERY_LIMIT", "PUBLISH_CHUNK", "AMQPTransport"]

log = logging.getLogger("nerve")

DEFAULT_DELIVERY_LIMIT: Final = 20
#: Events published at once by publish_many (each awaits its confirm).
PUBLISH_CHUNK: Final = 1000


class AMQPTransport(Transport):
    """RabbitMQ: a topic exchange, a quorum queue per subscription, publisher confirms.

    See the package docstring for the layout, retries, and what survives what.

    Args:
        url: ``amqp://user:password@host:5672/vhost?prefix=nerve``.
        prefix: prefix of every exchange and queue name (default from the URL, else
            ``nerve``).
        prefetch: deliveries one process holds per subscription (default: the worker's
            batch, at least 128).
        delivery_limit: returns to the queue (crashed or closed consumers) after which the
            broker parks a message instead of delivering it again; 0 for no limit.
        store: the store URL the bus uses by default.

    Example:
        ```python
        bus = EventBus("amqp://guest:guest@localhost:5672/?prefix=myapp")
        ```
    """

    durable = True
    parks = True  # x-delivery-limit: a message every consumer died holding
    state_on_host = True  # no lookups by event id: nerve's state goes to a file
    name = "AMQP"
    #: wait_idle polls this often, and wants this many idle looks in a row: a message between
    #: two places (dead-lettered from a wait queue, or pushed to a consumer but not yet read)
    #: is counted by neither for a moment.
    idle_poll = 0.02
    idle_looks = 3  # the queue counts lag behind the acks

    def __init__(
        self,
        url: str = "amqp://guest:guest@localhost:5672/",
        *,
        prefix: str | None = None,
        prefetch: int | None = None,
        delivery_limit: int | None = None,
        store: str | None = None,
    ) -> None:
        self.url = url
        self._client_url, options = amqp_options(url)
        self._where = amqp_where(url)
        self.prefix = checked_prefix(prefix or options.get("prefix") or DEFAULT_PREFIX)
        self.prefetch = (
            prefetch
            if prefetch is not None
            else integer_option("amqp", options, "prefetch", 0, minimum=0)
        ) or None
        self.delivery_limit = (
            delivery_limit
            if delivery_limit is not None
            else integer_option(
                "amqp", options, "delivery_limit", DEFAULT_DELIVERY_LIMIT, minimum=0
            )
        )
        self.store_url = store or options.get("store")
        self.events_name = EVENTS_NAME.format(prefix=self.prefix)
        self.delay_name = DELAY_NAME.format(prefix=self.prefix)
        self.parked_name = PARKED_NAME.format(prefix=self.prefix)
        self._connection: AbstractRobustConnection | None = None
        self._control: AbstractRobustChannel | None = None  # declarations
        self._stats: AbstractRobustChannel | None = None  # idle checks (declares nothing)
        self._publisher: AbstractRobustChannel | None = None  # confirms; returns raise
        self._parking: AbstractRobustChannel | None = None  # takes from the parked queue
        self._events: AbstractExchange | None = None
        self._subs: dict[str, SubscriptionQueue] = {}
        self._waits = WaitQueues(self.prefix, self._client_url, self._where)
        self._parked = ParkedQueue(self.parked_name, self.prefix, self.delivery_limit)
        self._in_flight: dict[AMQPDelivery, None] = {}  # consumed here, not settled
        self._closed = False

    @classmethod
    def from_url(cls, url: str, settings: Settings) -> Self:
        transport = cls(url)
        transport.settings = settings
        return transport

    # lifecycle

    async def connect(self) -> None:
        if self._connection is not None:
            return
        try:
            connection = await aio_pika.connect_robust(
                self._client_url,
                timeout=10,
                client_properties={"connection_name": f"nerve {self.prefix}"},
            )
        except (TimeoutError, *CLIENT_ERRORS) as exc:
            raise TransportError(f"cannot reach RabbitMQ at {self._where}: {exc}") from exc
        self._connection = connection
        self._closed = False
        with translate(self._where, "declaring the exchanges"):
            self._control = await connection.channel(publisher_confirms=False)
            self._stats = await connection.channel(publisher_confirms=False)
            self._publisher = await connection.channel(on_return_raises=True)
            self._parking = await connection.channel(publisher_confirms=False)
            await self._control.declare_exchange(self.events_name, ExchangeType.TOPIC, durable=True)
            # Published through the confirming channel: an exchange object publishes on
            # the channel that made it, and the control channel does not confirm.
            self._events = await self._publisher.get_exchange(self.events_name, ensure=False)
            await self._control.declare_exchange(
                self.delay_name, ExchangeType.HEADERS, durable=True
            )
            await self._control.declare_queue(
                self.parked_name, durable=True, arguments={"x-queue-type": "quorum"}
            )

    async def close(self) -> list[Delivery]:
        self._closed = True
        for sub in self._subs.values():
            sub.stop()  # receivers return at once
        self._in_flight.clear()
        # Held originals stay unacknowledged: closing the connection returns them.
        await self._waits.close()
        connection, self._connection = self._connection, None
        self._control = self._stats = self._publisher = self._parking = self._events = None
        if connection is not None:
            # Unsettled deliveries go back to their queues as the connection closes.
            with suppress(*CLIENT_ERRORS):
                await connection.close()
        return []

    async def declare(self, subscription: str, pattern: str, *, start_from: StartFrom) -> None:
        # start_from: a queue holds what is routed to it from its declaration on; an
        # existing queue keeps its backlog. Either value means that (package docstring).
        arguments = quorum_queue({"x-dead-letter-routing-key": self.parked_name})
        if self.delivery_limit:
            arguments["x-delivery-limit"] = self.delivery_limit
        sub = SubscriptionQueue(
            name=subscription,
            queue=queue_name(self.prefix, subscription),
            exchange=self.events_name,
            pattern=compile_pattern(pattern),
            arguments=arguments,
        )
        control = self._channel(self._control)
        with translate(self._where, f"declaring {subscription!r}"):
            try:
                queue = await control.declare_queue(sub.queue, durable=True, arguments=arguments)
            except ChannelPreconditionFailed as exc:
                raise ConfigurationError(
                    f"RabbitMQ at {self._where}: queue {sub.queue!r} exists with other "
                    f"arguments than {arguments} ({exc}); delete it or keep its settings"
                ) from exc
            await queue.bind(self.events_name, validate_pattern(pattern))
        self._subs[subscription] = sub

    # publishing

    async def publish(
        self,
        event: Event[Any],
        *,
        subscription: str | None = None,
        timeout: float | None = None,
        bounded: bool = True,
    ) -> None:
        self._check_open()
        doing = f"publishing {event.event_type} {event.event_id}"
        async with confirm_within(timeout, doing, where=self._where, connected=self._connected):
            if subscription is None:
                with translate(self._where, doing):
                    await self._exchange().publish(
                        message_of(event), routing_key=event.event_type, mandatory=False
                    )
                return
            try:
                with translate(self._where, doing):
                    await self._publish_to(queue_name(self.prefix, subscription), message_of(event))
            except TransportError as exc:
                if isinstance(exc.__cause__, PublishError):  # returned: no such queue
                    raise SubscriptionError(
                        f"no subscription named {subscription!r} in {self._where}"
                    ) from exc.__cause__
                raise

    async def publish_many(
        self, events: Sequence[Event[Any]], *, timeout: float | None = None, bounded: bool = True
    ) -> None:
        self._check_open()
        exchange = self._exchange()
        doing = f"publishing {len(events)} events"
        async with confirm_within(timeout, doing, where=self._where, connected=self._connected):
            for start in range(0, len(events), PUBLISH_CHUNK):
                with translate(self._where, doing):
                    # Confirms are pipelined: one round trip per chunk, not one per event.
                    await asyncio.gather(
                        *(
                            exchange.publish(
                                message_of(e), routing_key=e.event_type, mandatory=False
                            )
                            for e in events[start : start + PUBLISH_CHUNK]
                        )
                    )

    async def _publish_to(self, queue: str, sent: aio_pika.Message) -> None:
        """Publish to one queue only (a replay, or a retry due now): through the default
        exchange, mandatory, so a missing queue raises :class:`aiormq.PublishError`."""
        publisher = self._channel(self._publisher)
        await publisher.default_exchange.publish(sent, routing_key=queue, mandatory=True)

    # receiving

    async def receive(self, subscription: str, max_items: int) -> Sequence[Delivery]:
        sub = self._subs[subscription]
        if sub.channel is None and not self._closed:
            await self._consume(sub, self.prefetch or max_items)
        while not self._closed:
            batch: list[Delivery] = []
            while sub.buffer and len(batch) < max_items:
                delivery = sub.buffer.popleft()
                if delivery.returned:  # read before a reconnect: it comes back counted
                    self._in_flight.pop(delivery, None)
                else:
                    batch.append(delivery)
            if batch:
                return batch
            sub.arrived.clear()
            await sub.arrived.wait()
        return ()

    async def _consume(self, sub: SubscriptionQueue, prefetch: int) -> None:
        connection = self._connection
        if connection is None:
            raise self._unavailable()

        async def take(consumed: AbstractIncomingMessage) -> None:
            """Turn a consumed message into a delivery in the subscription's buffer."""
            if self._closed:
                return  # left unacknowledged: closing the connection returns it
            event = await sub.event_of(consumed)
            if event is not None:
                delivery = AMQPDelivery(
                    self, event, sub.name, attempt_of(consumed.headers or {}), consumed
                )
                self._in_flight[delivery] = None
                sub.put(delivery)

        with translate(self._where, f"consuming {sub.queue!r}"):
            await sub.consume(connection, prefetch, take)

    async def take_parked(self, max_items: int) -> Sequence[Parked]:
        """Events parked in ``{prefix}.parked`` (see :mod:`nerve.transports.amqp.parked`)."""
        self._check_open()
        known = {sub.queue: sub.name for sub in self._subs.values()}
        with translate(self._where, f"taking from {self.parked_name!r}"):
            return await self._parked.take(self._channel(self._parking), max_items, known)

    # settling

    async def settle_claimed(self, delivery: AMQPDelivery) -> None:
        """Acknowledge ``delivery``, claimed already (its ack or reject)."""
        await self._ack_on(channel_of(delivery.message), [delivery])

    async def ack_many(self, deliveries: Sequence[Delivery]) -> None:
        """Acknowledge a batch: one guarded write (:func:`client.unless_lost`) per channel."""
        by_channel: dict[AbstractChannel | None, list[AMQPDelivery]] = {}
        for delivery in cast(Sequence[AMQPDelivery], deliveries):
            if delivery.claim():
                by_channel.setdefault(channel_of(delivery.message), []).append(delivery)
        await each_then_raise(by_channel.items(), lambda pair: self._ack_on(*pair))

    async def _ack_on(
        self, channel: AbstractChannel | None, deliveries: list[AMQPDelivery]
    ) -> None:
        """Acknowledge deliveries received on ``channel`` (None: a closed one)."""
        for delivery in deliveries:
            self._in_flight.pop(delivery, None)
        if channel is None:
            return  # the broker put them back already; they come again, and are deduplicated

        async def ack(delivery: AMQPDelivery) -> None:
            with suppress(ChannelInvalidStateError):  # a channel closed just now: as above
                await delivery.message.ack()

        async def ack_all() -> None:
            await each_then_raise(deliveries, ack)

        with translate(self._where, f"acknowledging {len(deliveries)} events"):
            await unless_lost(channel, ack_all())

    async def requeue_claimed(
        self, delivery: AMQPDelivery, delay: float, *, next_attempt: bool
    ) -> None:
        """Deliver ``delivery``, claimed already, again after ``delay`` seconds (its nack
        or release): re-published, then the original acknowledged."""
        if delivery.returned:
            # The broker has returned it: its redelivery (counted) is the retry.
            self._in_flight.pop(delivery, None)
            return
        sub = self._subs[delivery.subscription]
        retry = message_of(delivery.event, attempt=delivery.attempt + next_attempt)
        step: int | None = None
        try:
            with translate(self._where, f"requeueing {delivery.event.event_id}"):
                if delay < MIN_DELAY:
                    await self._publish_to(sub.queue, retry)
                else:
                    step = await self._waits.publish(
                        retry,
                        sub.queue,
                        delay,
                        publisher=self._channel(self._publisher),
                        control=self._channel(self._control),
                    )
        except Exception:
            # Not re-published: hand it back now (at once, not after the delay), or, with
            # its connection lost, the broker already has. Either way it is not ours any more.
            self._in_flight.pop(delivery, None)
            original = delivery.message
            await settle_quietly(original, functools.partial(original.nack, requeue=True))
            raise
        if step is None:
            await self.settle_claimed(delivery)
        else:
            await self._waits.settle_when_registered(step, delivery, self.settle_claimed)

    # idleness

    async def is_idle(self) -> bool:
        if self._in_flight:
            return False
        queues = [sub.queue for sub in self._subs.values()]
        waits = {self._waits.name(step): step for step in self._waits.steps}
        try:
            # Passive declarations on a channel that declares nothing: a missing queue
            # closes it, and it reopens without re-declaring anything.
            channel = await self._channel(self._stats).get_underlay_channel()
            for name in [*queues, *waits]:
                ready = await ready_count(channel, name)
                if ready is None and name in waits:  # expired: nothing waits there any more
                    self._waits.forget(waits[name])
                if ready != 0:
                    return False  # missing: look again on the reopened channel
        except CLIENT_ERRORS:
            log.debug("could not count pending messages; trying again", exc_info=True)
            return False
        return not self._in_flight

    async def lag(self, subscription: str) -> int | None:
        """The queue's ready messages (every process's) plus the deliveries this process
        holds unsettled. AMQP tells no one of other processes' unacknowledged messages
        (the management API does), nor which subscription a retry waiting in a shared
        wait queue is for: those are not counted."""
        with translate(self._where, f"reading the lag of {subscription!r}"):
            channel = await self._channel(self._stats).get_underlay_channel()
            ready = await ready_count(channel, queue_name(self.prefix, subscription))
        if ready is None:
            return None  # the channel closed with it; it reopens on the next use
        held = sum(1 for d in self._in_flight if d.subscription == subscription)
        return ready + held

    async def ping(self) -> None:
        connection = self._connection
        if connection is None or connection.is_closed:
            raise self._unavailable()
        with translate(self._where, "checking the events exchange"):
            await self._channel(self._publisher).get_exchange(self.events_name, ensure=True)

    # helpers

    def _channel(self, channel: AbstractRobustChannel | None) -> AbstractRobustChannel:
        if channel is None:
            raise self._unavailable()
        return channel

    def _exchange(self) -> AbstractExchange:
        if self._events is None:
            raise self._unavailable()
        return self._events

    def _unavailable(self) -> BusClosed | TransportError:
        if self._closed:
            return BusClosed("the AMQP transport is closed")
        return TransportError(f"the AMQP transport for {self._where} is not connected")

    def _connected(self) -> bool:
        """Whether the connection is up now (a confirm that is late: a blocked broker)."""
        connection = self._connection
        return connection is not None and connection.connected.is_set()
