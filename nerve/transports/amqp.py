"""``amqp://user:password@host:port/vhost``: RabbitMQ (3.10 or later), through aio-pika.

Layout (every name under ``prefix``, default ``nerve``; the ``*_NAME`` constants below)::

    {prefix}.events        topic exchange: every published event, routing key = event type
    {prefix}.sub.{name}    a durable quorum queue per subscription, bound with its pattern
    {prefix}.delay         headers exchange: retries waiting for their delay...
    {prefix}.wait.{ms}     ...in a quorum queue per delay step (x-message-ttl = ms)
    {prefix}.parked        a quorum queue for what the broker gives up on (see below)

Routing is the broker's: AMQP topic patterns are nerve's (``*`` one segment, ``#`` zero or
more), so each subscription queue is bound to the events exchange with its own pattern and
gets every matching event (fan-out); the workers of a subscription consume its queue
(competing consumers, manual acknowledgement). The consumer prefetch (``basic.qos``) is the
bound on what one process holds: the worker's batch size unless ``prefetch`` is given.
An event that matches no queue is dropped by the exchange: in nerve's contract an event
with no subscriber is accepted (``publish`` succeeds), so events publish unmandatory.

RabbitMQ keeps an event only for queues that exist when it is published: a subscription
starts with its queue's declaration (``start_from`` cannot reach further back), so an app
should declare its subscriptions (start its bus, or run ``nerve worker`` once) before
anything publishes to them. Both ``start_from`` values mean "from the declaration on".

``publish`` returns once the broker confirmed the event (publisher confirms): it is then
persistent in every matching quorum queue, on disk and replicated. A retry or a replay
is for one subscription only: it is published to the default exchange with the queue's
name as routing key (mandatory: a replay to a subscription that does not exist fails).

Retries: RabbitMQ 3.10 has no delayed delivery, so :meth:`AMQPDelivery.nack` re-publishes
the event with its next attempt number to the delay exchange, which routes it (by a header)
to the wait queue of the nearest delay step; when its TTL expires the queue dead-letters it
(at-least-once) back through the default exchange to the subscription's queue, its
original routing key. Only then is the original delivery acknowledged (at least once: a
crash in between delivers the event twice, which the idempotency store absorbs). One TTL
per wait queue keeps the queue first-in first-out in expiry order (per-message TTL only
expires at the head). The steps are 1, 1.5, 2, 3, 5 and 7 times powers of ten
milliseconds, from 10 ms up to a day; a delay is rounded to the nearest (within about 20%)
and one under 5 ms skips the wait queue. Wait queues delete themselves (``x-expires``)
once unused for their TTL plus 5 minutes. RabbitMQ 3.10 writes a new quorum queue's Raft
registration to disk up to half a second late, and a queue declared just before a crash
comes back without a leader, holding what it had and confirming nothing: so a retry's
original is held until its wait queue is :data:`WAIT_REGISTERED` seconds old (here), a
re-publish not confirmed within :data:`REQUEUE_CONFIRM` seconds has its wait queue
checked: one that does not answer is deleted (declared anew by the next retry) and the
delivery handed back; a sound one (a memory alarm) is waited for, spending no attempt.

The attempt number is the ``nerve-attempt`` header of a re-published retry (1 if absent)
plus the quorum queue's ``x-delivery-count``: a delivery returned to the queue (its
process died, its channel closed) comes back counted. A broker-side ``x-delivery-limit``
(``delivery_limit``, default 20 returns) stops a message that kills every worker that
takes it: the queue then dead-letters it to ``{prefix}.parked``, where an operator sees it
(``rabbitmqctl list_queues``) and can move it back; nerve never handles or drops it
silently. Malformed messages (not a nerve event) are parked too. Dead letters decided by
the core are in nerve's store; their deliveries are simply acknowledged.

Connections: aio-pika's robust connection reconnects after a broker restart or a network
cut (``reconnect_interval``, default 5 s) and re-declares the exchanges, queues, bindings,
prefetch and consumers. Deliveries received on the lost connection are returned to their
queue by the broker and come back counted; settling one of them afterwards does nothing,
and one under way when the connection drops is given up at once (aiormq alone can leave it
waiting for ever; see :func:`_unless_lost`).
While the connection is down, ``publish`` raises :class:`nerve.TransportError` at once
(it may also wait for a channel being restored, up to its ``timeout``); a publish caught
by the cut raises too and may or may not have been accepted: publishing the same event
again is safe (same id: not handled again once handled). RabbitMQ's consumer timeout
(``consumer_timeout``, 30 minutes by default) closes the channel of a delivery left
unacknowledged longer: set it above your longest handler.

``wait_idle`` polls: the subscriptions' queues and the wait queues this process used have
no ready message, and nothing delivered here is unsettled. AMQP does not report another
process's unacknowledged deliveries, so a bus's ``join`` does not wait for them.

RabbitMQ holds no store: the bus's store is ``store`` (a store URL, URL-encoded if it has
its own query) or ``NERVE_STORE_URL``; without either, each process keeps its idempotency
marks and dead letters in memory, which is only good for one process.

URL options (query string): ``prefix``, ``store``, ``prefetch`` (deliveries a process
holds per subscription), ``delivery_limit`` (returns before parking; 0: no limit). Other
options go to aio-pika (``reconnect_interval``, ``heartbeat``, ``name``, ...).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import math
import re
from collections import deque
from collections.abc import AsyncIterator, Coroutine, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager, suppress
from dataclasses import dataclass, field
from typing import Any, Final, Self, cast
from urllib.parse import unquote, urlsplit

import aio_pika
from aio_pika.abc import (
    AbstractExchange,
    AbstractIncomingMessage,
    AbstractRobustChannel,
    AbstractRobustConnection,
    AbstractRobustQueue,
    DeliveryMode,
    ExchangeType,
)
from aiormq.abc import AbstractChannel
from aiormq.exceptions import (
    AMQPError,
    ChannelInvalidStateError,
    ChannelNotFoundEntity,
    ChannelPreconditionFailed,
    PublishError,
)
from pamqp.exceptions import PAMQPException

from nerve.events import Event
from nerve.exceptions import (
    BusClosed,
    BusFull,
    ConfigurationError,
    SubscriptionError,
    TransportError,
)
from nerve.routing import compile_pattern, validate_pattern
from nerve.settings import Settings
from nerve.subscription import StartFrom
from nerve.transports.base import Delivery, Transport, each_then_raise
from nerve.urls import integer_option, split_options

log = logging.getLogger("nerve")

# Wire names, in one place.
DEFAULT_PREFIX: Final = "nerve"
EVENTS_NAME: Final = "{prefix}.events"
QUEUE_NAME: Final = "{prefix}.sub.{name}"
DELAY_NAME: Final = "{prefix}.delay"
WAIT_NAME: Final = "{prefix}.wait.{ms}"
PARKED_NAME: Final = "{prefix}.parked"
ATTEMPT_HEADER: Final = "nerve-attempt"
DELAY_HEADER: Final = "nerve-delay"
DELIVERY_COUNT_HEADER: Final = "x-delivery-count"  # set by quorum queues on redeliveries

DEFAULT_DELIVERY_LIMIT: Final = 20
#: Delay steps in milliseconds: 1, 1.5, 2, 3, 5, 7 x 10^k from 10 ms, and one day.
DELAY_STEPS_MS: Final = (
    *(int(m * 10**k) for k in range(1, 8) for m in (1, 1.5, 2, 3, 5, 7)),
    86_400_000,
)
#: Retries due sooner than this go straight back to the subscription's queue.
MIN_DELAY: Final = 0.005
#: A wait queue deletes itself once unused for its TTL plus this long...
WAIT_EXPIRES_MARGIN_MS: Final = 300_000
#: ...so it is re-declared (which counts as use) when this process last did so this long ago.
WAIT_REDECLARE: Final = 60.0
#: Events published at once by publish_many (each awaits its confirm).
PUBLISH_CHUNK: Final = 1000
#: RabbitMQ 3.10 (its Raft library, ra 2.2) writes a new quorum queue's registration to
#: disk up to 500 ms after the declaration (``names.dets``, ``auto_save`` 500): a queue
#: declared just before the node crashes comes back without a leader, holding what it had
#: and never confirming a publish (measured: lost at 0.3 and 0.5 s, kept at 1.5 s; see
#: rabbitmq-server #10070). A retry parked in a wait queue this process declared less
#: than this long ago keeps its original delivery unacknowledged until then (in the
#: background: the worker goes on).
WAIT_REGISTERED: Final = 2.0
#: A retry's publish to a wait queue not confirmed within this long has the queue checked
#: (:meth:`AMQPTransport._check_wait`): one without a leader is deleted and the delivery
#: handed back; a sound one (a memory alarm blocks publishers) is waited for, and checked
#: again after as long.
REQUEUE_CONFIRM: Final = 5.0
#: How long the check waits for a wait queue's answer before it takes the queue for one
#: without a leader: long, since deleting a sound one would lose the retries it holds.
CHECK_ANSWER: Final = 30.0
#: The longest a wait queue's check takes (connecting, asking, deleting).
CHECK_TIMEOUT: Final = 60.0
#: wait_idle polls this often, and wants this many idle looks in a row: a message between
#: two places (dead-lettered from a wait queue, or pushed to a consumer but not yet read)
#: is counted by neither for a moment.

#: What aio-pika and aiormq raise when the broker or the connection fails: AMQP errors,
#: socket errors, and RuntimeError for a channel or connection found closed
#: (ChannelInvalidStateError, "connection closed").
CLIENT_ERRORS: Final = (AMQPError, PAMQPException, OSError, RuntimeError)

_NAME_SAFE = re.compile(r"[a-zA-Z0-9\-_.:@#,/ ]")
_PREFIX_SAFE = re.compile(r"[a-zA-Z0-9\-_.]{1,100}")
_NAME_MAX = 255
_OPTIONS = ("prefix", "store", "prefetch", "delivery_limit")


def amqp_options(url: str) -> tuple[str, dict[str, str]]:
    """Split an ``amqp://`` URL into the URL for aio-pika and nerve's own options."""
    return split_options(url, _OPTIONS)


def amqp_where(url: str) -> str:
    """``host:port/vhost`` of an AMQP URL, for messages (never the password)."""
    parts = urlsplit(url)
    default_port = 5671 if parts.scheme == "amqps" else 5672
    vhost = unquote(parts.path[1:]) if len(parts.path) > 1 else "/"
    return f"{parts.hostname or 'localhost'}:{parts.port or default_port}/{vhost.lstrip('/')}"


def queue_name(prefix: str, subscription: str) -> str:
    """The queue of a subscription: ``{prefix}.sub.{name}``, made safe for AMQP.

    Queue names allow ``[a-zA-Z0-9-_.:@#,/+ ]`` (and 255 bytes): any other character of the
    name (``<locals>``) is written ``+`` and its UTF-8 bytes in hex, ``+`` itself included;
    a name still too long is cut and ends in a hash of the whole.
    """
    safe = "".join(
        ch if _NAME_SAFE.fullmatch(ch) else "".join(f"+{b:02x}" for b in ch.encode())
        for ch in subscription
    )
    name = QUEUE_NAME.format(prefix=prefix, name=safe)
    if len(name) > _NAME_MAX:
        digest = hashlib.sha256(name.encode()).hexdigest()[:16]
        name = f"{name[: _NAME_MAX - 17]}.{digest}"
    return name


def delay_step_ms(delay: float) -> int:
    """The wait queue step (ms) nearest to ``delay`` seconds, on a log scale."""
    ms = max(delay * 1000, DELAY_STEPS_MS[0])
    return min(DELAY_STEPS_MS, key=lambda step: abs(math.log(step / ms)))


class AMQPDelivery(Delivery):
    """A message consumed from a subscription's queue, settled on the channel it came on."""

    __slots__ = ("_transport", "message")

    def __init__(
        self,
        transport: AMQPTransport,
        event: Event[Any],
        subscription: str,
        attempt: int,
        message: AbstractIncomingMessage,
    ) -> None:
        super().__init__(event, subscription, attempt)
        self._transport = transport
        self.message = message

    @property
    def returned(self) -> bool:
        """Its channel is gone: the broker has put it back in the queue already."""
        return _channel_of(self.message) is None

    async def _ack(self) -> None:
        await self._transport._settle(self)

    async def _reject(self) -> None:
        await self._transport._settle(self)  # the core has dead-lettered it in its store

    async def _nack(self, delay: float) -> None:
        await self._transport._requeue(self, delay, next_attempt=True)

    async def _release(self) -> None:
        # Not started: back to its queue with the same attempt, so a shutdown spends
        # neither a retry nor a return of the delivery limit (a basic.nack would do both).
        await self._transport._requeue(self, 0.0, next_attempt=False)


@dataclass(slots=True)
class _Subscription:
    name: str
    queue: str
    pattern: re.Pattern[str]  # what the queue's binding should match
    arguments: dict[str, Any]
    buffer: deque[AMQPDelivery] = field(default_factory=deque)  # consumed, not yet returned
    arrived: asyncio.Event = field(default_factory=asyncio.Event)
    channel: AbstractRobustChannel | None = None  # the consumer's, opened at first receive
    stale_types: set[str] = field(default_factory=set)


class AMQPTransport(Transport):
    """RabbitMQ: a topic exchange, a quorum queue per subscription, publisher confirms.

    See the module docstring for the layout, retries, and what survives what.

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
    name = "AMQP"
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
        self.prefix = prefix or options.get("prefix") or DEFAULT_PREFIX
        if not _PREFIX_SAFE.fullmatch(self.prefix) or self.prefix.startswith("amq."):
            raise ConfigurationError(
                f"amqp prefix {self.prefix!r}: use letters, digits, '-', '_' and '.' "
                "(not starting with 'amq.', which RabbitMQ reserves)"
            )
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
        self._events: AbstractExchange | None = None
        self._subs: dict[str, _Subscription] = {}
        self._waits: dict[int, float] = {}  # wait queue step (ms) -> when declared here
        self._waits_made: dict[int, float] = {}  # ... -> when it may have been created
        self._checks: dict[int, asyncio.Task[bool]] = {}  # wait queues being checked
        self._holding: set[asyncio.Task[None]] = set()  # retries' originals held (_requeue)
        self._in_flight: dict[AMQPDelivery, None] = {}  # consumed here, not settled
        self._closed = False

    @classmethod
    def from_url(cls, url: str, settings: Settings) -> Self:
        return cls(url)

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
        with self._translate("declaring the exchanges"):
            self._control = await connection.channel(publisher_confirms=False)
            self._stats = await connection.channel(publisher_confirms=False)
            self._publisher = await connection.channel(on_return_raises=True)
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
            sub.arrived.set()  # receivers return at once
            sub.buffer.clear()
            sub.channel = None
        self._in_flight.clear()
        self._waits.clear()
        self._waits_made.clear()
        # Held originals stay unacknowledged: closing the connection returns them.
        background: list[asyncio.Task[Any]] = [*self._checks.values(), *self._holding]
        for task in background:
            task.cancel()
        await asyncio.gather(*background, return_exceptions=True)
        self._checks.clear()
        connection, self._connection = self._connection, None
        self._control = self._stats = self._publisher = self._events = None
        if connection is not None:
            # Unsettled deliveries go back to their queues as the connection closes.
            with suppress(*CLIENT_ERRORS):
                await connection.close()
        return []

    async def declare(self, subscription: str, pattern: str, *, start_from: StartFrom) -> None:
        # start_from: a queue holds what is routed to it from its declaration on; an
        # existing queue keeps its backlog. Either value means that (module docstring).
        arguments: dict[str, Any] = {
            "x-queue-type": "quorum",
            "x-dead-letter-exchange": "",
            "x-dead-letter-routing-key": self.parked_name,
            "x-dead-letter-strategy": "at-least-once",
            "x-overflow": "reject-publish",  # at-least-once dead-lettering requires it
        }
        if self.delivery_limit:
            arguments["x-delivery-limit"] = self.delivery_limit
        sub = _Subscription(
            name=subscription,
            queue=queue_name(self.prefix, subscription),
            pattern=compile_pattern(pattern),
            arguments=arguments,
        )
        control = self._channel(self._control)
        with self._translate(f"declaring {subscription!r}"):
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
        async with self._confirm_within(timeout, doing):
            if subscription is None:
                with self._translate(doing):
                    await self._exchange().publish(
                        _message(event), routing_key=event.event_type, mandatory=False
                    )
                return
            queue = queue_name(self.prefix, subscription)
            try:
                with self._translate(doing):
                    await self._channel(self._publisher).default_exchange.publish(
                        _message(event), routing_key=queue, mandatory=True
                    )
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
        async with self._confirm_within(timeout, doing):
            for start in range(0, len(events), PUBLISH_CHUNK):
                with self._translate(doing):
                    # Confirms are pipelined: one round trip per chunk, not one per event.
                    await asyncio.gather(
                        *(
                            exchange.publish(_message(e), routing_key=e.event_type, mandatory=False)
                            for e in events[start : start + PUBLISH_CHUNK]
                        )
                    )

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

    async def _consume(self, sub: _Subscription, prefetch: int) -> None:
        connection = self._connection
        if connection is None:
            raise self._unavailable()
        with self._translate(f"consuming {sub.queue!r}"):
            channel = await connection.channel(publisher_confirms=False)
            await channel.set_qos(prefetch_count=prefetch)
            queue: AbstractRobustQueue = await channel.declare_queue(
                sub.queue, durable=True, arguments=sub.arguments
            )

            async def on_message(message: AbstractIncomingMessage) -> None:
                await self._take(sub, message)

            await queue.consume(on_message)
        sub.channel = channel

    async def _take(self, sub: _Subscription, message: AbstractIncomingMessage) -> None:
        """Turn a consumed message into a delivery in the subscription's buffer."""
        if self._closed:
            return  # left unacknowledged: closing the connection returns it
        routing_key = message.routing_key or ""
        if message.exchange == self.events_name and not sub.pattern.fullmatch("." + routing_key):
            # A binding left by an earlier pattern of this subscription: not ours to handle.
            if routing_key not in sub.stale_types:
                sub.stale_types.add(routing_key)
                log.warning(
                    "%s: queue %s gets %r events its pattern does not match: remove the "
                    "binding left by an earlier pattern",
                    sub.name,
                    sub.queue,
                    routing_key,
                )
            with suppress(*CLIENT_ERRORS):
                await _unless_lost(message.channel, message.ack())
            return
        try:
            event = Event.model_validate_json(message.body)
        except ValueError:
            log.exception("%s: parking malformed message from %s", sub.name, sub.queue)
            with suppress(*CLIENT_ERRORS):  # dead-lettered to the parked queue
                await _unless_lost(message.channel, message.reject(requeue=False))
            return
        headers = message.headers or {}
        attempt = _as_int(headers.get(ATTEMPT_HEADER), 1) + _as_int(
            headers.get(DELIVERY_COUNT_HEADER), 0
        )
        delivery = AMQPDelivery(self, event, sub.name, attempt, message)
        self._in_flight[delivery] = None
        sub.buffer.append(delivery)
        sub.arrived.set()

    # settling

    async def _settle(self, delivery: AMQPDelivery) -> None:
        await self._ack_on(_channel_of(delivery.message), [delivery])

    async def ack_many(self, deliveries: Sequence[Delivery]) -> None:
        """Acknowledge a batch: one guarded write (:func:`_unless_lost`) per channel."""
        by_channel: dict[AbstractChannel | None, list[AMQPDelivery]] = {}
        for delivery in cast(Sequence[AMQPDelivery], deliveries):
            if delivery.claim():
                by_channel.setdefault(_channel_of(delivery.message), []).append(delivery)
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

        with self._translate(f"acknowledging {len(deliveries)} events"):
            await _unless_lost(channel, ack_all())

    async def _requeue(self, delivery: AMQPDelivery, delay: float, *, next_attempt: bool) -> None:
        if delivery.returned:
            # The broker has returned it: its redelivery (counted) is the retry.
            self._in_flight.pop(delivery, None)
            return
        sub = self._subs[delivery.subscription]
        message = _message(delivery.event, attempt=delivery.attempt + next_attempt)
        step: int | None = None
        try:
            with self._translate(f"requeueing {delivery.event.event_id}"):
                if delay < MIN_DELAY:
                    await self._channel(self._publisher).default_exchange.publish(
                        message, routing_key=sub.queue, mandatory=True
                    )
                else:
                    step = await self._publish_delayed(message, sub.queue, delay)
        except Exception:
            # Not re-published: hand it back now (at once, not after the delay), or, with
            # its connection lost, the broker already has. Either way it is not ours any more.
            self._in_flight.pop(delivery, None)
            channel = _channel_of(delivery.message)
            if channel is not None:
                with suppress(*CLIENT_ERRORS):
                    await _unless_lost(channel, delivery.message.nack(requeue=True))
            raise
        if step is not None:
            made = self._waits_made.get(step, -math.inf)
            hold = made + WAIT_REGISTERED - asyncio.get_running_loop().time()
            if hold > 0:  # its copy is in a queue a crash could still take with it
                task = asyncio.create_task(self._settle_after(delivery, hold))
                self._holding.add(task)
                task.add_done_callback(self._holding.discard)
                return
        await self._settle(delivery)

    async def _settle_after(self, delivery: AMQPDelivery, delay: float) -> None:
        """Acknowledge a retry's original once its wait queue is registered."""
        await asyncio.sleep(delay)
        try:
            await self._settle(delivery)
        except TransportError as exc:  # its connection is lost: the broker has it back
            log.debug("could not acknowledge %s: %s", delivery.event.event_id, exc)

    async def _publish_delayed(self, message: aio_pika.Message, queue: str, delay: float) -> int:
        """Publish a retry to the wait queue of the step nearest ``delay``; return the step."""
        step = delay_step_ms(delay)
        if delay * 1000 > DELAY_STEPS_MS[-1]:
            log.warning("a retry delay of %.0fs is cut to a day", delay)
        message.headers[DELAY_HEADER] = str(step)
        exchange = await self._channel(self._publisher).get_exchange(self.delay_name, ensure=False)

        async def publish() -> None:
            sending = asyncio.ensure_future(
                exchange.publish(message, routing_key=queue, mandatory=True)
            )
            try:
                # Slow to confirm: a broker under a memory alarm (wait, spending no
                # attempt), or a wait queue without a leader (never: hand the event back).
                while not (await asyncio.wait({sending}, timeout=REQUEUE_CONFIRM))[0]:
                    if await asyncio.shield(self._check(step)):
                        raise TransportError(
                            f"RabbitMQ at {self._where}: wait queue {step} ms had no leader"
                        )
                sending.result()
            finally:
                sending.cancel()  # if it is still on its way; its outcome is read either way
                await asyncio.gather(sending, return_exceptions=True)

        await self._declare_wait(step, force=False)
        try:
            await publish()
        except PublishError:  # unroutable: the wait queue expired behind our back
            await self._declare_wait(step, force=True)
            await publish()
        return step

    def _check(self, step: int) -> asyncio.Task[bool]:
        """The check of the wait queue of ``step``: one at a time, shared by its callers."""
        check = self._checks.get(step)
        if check is None:
            check = asyncio.create_task(self._check_wait(step), name=f"nerve-amqp-check:{step}")
            self._checks[step] = check
            check.add_done_callback(lambda _: self._checks.pop(step, None))
        return check

    async def _check_wait(self, step: int) -> bool:
        """A wait queue left a retry unconfirmed: delete it (and return True) if it has no
        leader.

        Asked on a connection of its own (one that never published, so a memory alarm
        that blocks publishers does not block it), a queue that answers a ``basic.get``
        is sound (the broker was only slow) and stays. One that does not answer is a
        quorum queue that came back from a crash without its Raft registration
        (:data:`WAIT_REGISTERED`): nothing it holds can come out, and nothing in it was
        acknowledged on the strength of it, since a retry's original is held until its
        wait queue is registered. It is deleted, and the next retry declares it anew.
        """
        name = WAIT_NAME.format(prefix=self.prefix, ms=step)
        try:
            async with asyncio.timeout(CHECK_TIMEOUT):
                return await self._check_wait_within(step, name)
        except (TimeoutError, *CLIENT_ERRORS):
            log.warning("could not check wait queue %s at %s", name, self._where, exc_info=True)
            return False

    async def _check_wait_within(self, step: int, name: str) -> bool:
        connection = await aio_pika.connect(self._client_url, timeout=10)
        try:
            channel = await connection.channel(publisher_confirms=False)
            try:
                async with asyncio.timeout(CHECK_ANSWER):
                    queue = await channel.get_queue(name, ensure=False)
                    message = await queue.get(fail=False)
            except TimeoutError:
                pass  # no leader: below
            except ChannelNotFoundEntity:  # deleted by an earlier check: nothing will confirm
                self._waits.pop(step, None)
                self._waits_made.pop(step, None)
                return True
            else:
                if message is not None:
                    await message.nack(requeue=True)
                return False  # it answers: sound
            log.error(
                "RabbitMQ at %s: wait queue %s does not answer: a quorum queue declared just "
                "before the broker crashed comes back without a leader (RabbitMQ 3.10, "
                "rabbitmq-server #10070); deleting it, the next retry declares it again",
                self._where,
                name,
            )
            channel = await connection.channel(publisher_confirms=False)
            await channel.queue_delete(name)
            self._waits.pop(step, None)
            self._waits_made.pop(step, None)
            return True
        finally:
            with suppress(*CLIENT_ERRORS):
                await connection.close()

    async def _declare_wait(self, step: int, *, force: bool) -> None:
        loop = asyncio.get_running_loop()
        if not force and loop.time() - self._waits.get(step, -math.inf) < WAIT_REDECLARE:
            return
        # This declaration may create the queue (not registered on disk yet): the first
        # here, a forced one, or one after a pause long enough for it to have expired.
        expiry = (step + WAIT_EXPIRES_MARGIN_MS) / 1000
        new = force or loop.time() - self._waits.get(step, -math.inf) > expiry
        control = self._channel(self._control)
        queue = await control.declare_queue(
            WAIT_NAME.format(prefix=self.prefix, ms=step),
            durable=True,
            arguments={
                "x-queue-type": "quorum",
                "x-message-ttl": step,
                "x-expires": step + WAIT_EXPIRES_MARGIN_MS,
                "x-dead-letter-exchange": "",  # back by its routing key: the subscription
                "x-dead-letter-strategy": "at-least-once",
                "x-overflow": "reject-publish",
            },
            robust=False,  # re-declared on use; after its expiry it need not come back
        )
        await queue.bind(self.delay_name, "", arguments={"x-match": "all", DELAY_HEADER: str(step)})
        self._waits[step] = loop.time()
        if new:
            self._waits_made[step] = loop.time()

    # idleness

    async def is_idle(self) -> bool:
        if self._in_flight:
            return False
        queues = [sub.queue for sub in self._subs.values()]
        waits = {WAIT_NAME.format(prefix=self.prefix, ms=step): step for step in self._waits}
        try:
            # Passive declarations on a channel that declares nothing: a missing queue
            # closes it, and it reopens without re-declaring anything.
            channel = await self._channel(self._stats).get_underlay_channel()
            for name in [*queues, *waits]:
                try:
                    declared = await channel.queue_declare(name, passive=True)
                except ChannelNotFoundEntity:
                    if name in waits:  # expired: nothing waits there any more
                        self._waits.pop(waits[name], None)
                    return False  # look again on the reopened channel
                if declared.message_count:
                    return False
        except CLIENT_ERRORS:
            log.debug("could not count pending messages; trying again", exc_info=True)
            return False
        return not self._in_flight

    async def lag(self, subscription: str) -> int | None:
        """The queue's ready messages (every process's) plus the deliveries this process
        holds unsettled. AMQP tells no one of other processes' unacknowledged messages
        (the management API does), nor which subscription a retry waiting in a shared
        wait queue is for: those are not counted."""
        name = queue_name(self.prefix, subscription)
        with self._translate(f"reading the lag of {subscription!r}"):
            channel = await self._channel(self._stats).get_underlay_channel()
            try:
                declared = await channel.queue_declare(name, passive=True)
            except ChannelNotFoundEntity:
                return None  # the channel closed with it; it reopens on the next use
        held = sum(1 for d in self._in_flight if d.subscription == subscription)
        return int(declared.message_count or 0) + held

    async def ping(self) -> None:
        connection = self._connection
        if connection is None or connection.is_closed:
            raise self._unavailable()
        with self._translate("checking the events exchange"):
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

    @asynccontextmanager
    async def _confirm_within(self, timeout: float | None, doing: str) -> AsyncIterator[None]:
        """Bound the wait for the broker's confirm by ``timeout`` (None: no bound)."""
        try:
            async with asyncio.timeout(timeout) as scope:
                yield
        except TimeoutError:
            if not scope.expired():
                raise
            connection = self._connection
            if connection is not None and connection.connected.is_set():
                raise BusFull(
                    f"RabbitMQ at {self._where} did not confirm {doing} within {timeout}s "
                    "(a memory or disk alarm blocks publishers)"
                ) from None
            raise TransportError(
                f"RabbitMQ at {self._where} is unreachable: {doing} timed out after "
                f"{timeout}s while reconnecting"
            ) from None

    @contextmanager
    def _translate(self, doing: str) -> Iterator[None]:
        try:
            yield
        except CLIENT_ERRORS as exc:
            raise TransportError(f"RabbitMQ at {self._where}: {doing} failed: {exc!r}") from exc


def _channel_of(message: AbstractIncomingMessage) -> AbstractChannel | None:
    """The channel ``message`` came on, or None once it is closed (the broker has the
    message back)."""
    try:
        channel = message.channel
    except ChannelInvalidStateError:
        return None
    return None if channel.is_closed else channel


async def _unless_lost(channel: AbstractChannel, operation: Coroutine[Any, Any, None]) -> None:
    """Await ``operation``, which writes on ``channel``, unless its connection is lost first.

    aiormq hands frames to a connection's writer through a queue of ten. When the
    connection dies while that queue is full, an acknowledgement waiting for room in it
    waits for ever: nothing reads the queue again, and nothing wakes the wait (measured:
    190 of 200 acknowledgements stuck after a broker kill). What was to be settled on a
    lost connection is back in its queue at the broker already, so giving up is right.
    """
    task = asyncio.ensure_future(operation)
    lost = channel.connection.closing
    try:
        await asyncio.wait((task, lost), return_when=asyncio.FIRST_COMPLETED)
    finally:
        lost.cancel()  # an observer of the closing only
        if not task.done():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
    if not task.cancelled():
        task.result()


def _message(event: Event[Any], *, attempt: int | None = None) -> aio_pika.Message:
    return aio_pika.Message(
        event.model_dump_json().encode(),
        content_type="application/json",
        delivery_mode=DeliveryMode.PERSISTENT,
        message_id=event.event_id,
        type=event.event_type,
        headers={ATTEMPT_HEADER: attempt} if attempt is not None else {},
    )


def _as_int(value: object, default: int) -> int:
    if isinstance(value, int | str):
        with suppress(ValueError):
            return int(value)
    return default
