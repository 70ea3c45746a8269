"""The NATS JetStream transport: its options, connecting, declaring, publishing, and
coming back from a broker restart. Receiving is :mod:`.consuming`'s, settling
:mod:`.delivery`'s.

Dedupe: publishes carry ``Nats-Msg-Id: <event_id>``, so the stream drops a re-published
event within its duplicate window (``dedupe_window``, 2 minutes by default; the idempotency
store covers the rest). Replays carry none: replaying the same dead letter twice must work.

``publish`` never waits for room: the broker holds the pending work, so ``timeout`` and
``bounded`` are accepted and ignored. It returns once the stream acknowledged the event
(within ``publish_timeout``).
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
from collections.abc import Coroutine, Iterator, Sequence
from contextlib import contextmanager, suppress
from typing import Any, Final, Self

import nats.errors
import nats.js.errors
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import ConsumerInfo

from nerve.connections.nats import (
    DEFAULT_CONNECT_TIMEOUT,
    DEFAULT_PUBLISH_TIMEOUT,
    nats_connect,
    nats_options,
    nats_prefix,
    nats_where,
)
from nerve.events import Event
from nerve.exceptions import SubscriptionError, TransportError
from nerve.routing import compile_pattern
from nerve.settings import Settings
from nerve.subscription import StartFrom
from nerve.transports.base import Delivery, Transport, raise_if_cancelled
from nerve.transports.nats.consuming import Consumers, ConsumerState
from nerve.transports.nats.declaring import (
    consumer_config,
    ensure_consumer,
    ensure_stream,
    stream_config,
)
from nerve.transports.nats.delivery import InFlight, NATSDelivery
from nerve.transports.nats.names import (
    MAX_DELIVERIES_SUBJECT,
    MSG_ID_HEADER,
    consumer_name,
    event_subject,
    stream_name,
)
from nerve.transports.nats.options import (
    DEFAULT_ACK_WAIT,
    DEFAULT_DEDUPE_WINDOW,
    DEFAULT_MAX_ACK_PENDING,
    DEFAULT_RETENTION,
)
from nerve.urls import integer_option, number_option

log = logging.getLogger("nerve")

#: Seconds for JetStream API calls (stream and consumer info, creation).
API_TIMEOUT: Final = 5.0
#: Seconds close() gives the acknowledgements and releases to reach the server.
CLOSE_FLUSH_TIMEOUT: Final = 5.0


class NATSTransport(Transport):
    """NATS JetStream: one stream of events, a durable pull consumer per subscription.

    The layout is in :mod:`.names`, the retry limit in :mod:`.declaring`, delivery in
    :mod:`.consuming` and :mod:`.delivery`; docs/transport-nats.md says what survives what.

    Args:
        url: ``nats://user:password@host:4222?prefix=myapp&ack_wait=30``.

    Example:
        ```python
        bus = EventBus("nats://localhost:4222?prefix=myapp")  # its store: NATS too
        ```
    """

    durable = True
    name = "NATS"

    def __init__(self, url: str = "nats://localhost:4222") -> None:
        self.url = url
        self._server_url, options = nats_options(url)
        self._where = nats_where(url)
        self.prefix = nats_prefix(options)
        number = functools.partial(number_option, "nats", options)
        integer = functools.partial(integer_option, "nats", options)
        self.ack_wait = number("ack_wait", DEFAULT_ACK_WAIT)
        self.retention = number("retention", DEFAULT_RETENTION, minimum=0.0)
        self.dedupe_window = number("dedupe_window", DEFAULT_DEDUPE_WINDOW, minimum=0.0)
        if self.retention:
            self.dedupe_window = min(self.dedupe_window, self.retention)  # the server's rule
        self.max_deliver = integer("max_deliver", -1, minimum=-1)
        if self.max_deliver == 0:
            self.max_deliver = -1  # unlimited, as JetStream reads 0
        self.max_ack_pending = integer("max_ack_pending", DEFAULT_MAX_ACK_PENDING, minimum=1)
        self.replicas = integer("replicas", 1, minimum=1)
        self.publish_timeout = number("publish_timeout", DEFAULT_PUBLISH_TIMEOUT)
        self.connect_timeout = number("connect_timeout", DEFAULT_CONNECT_TIMEOUT)
        self.store_url = options.get("store")
        self.stream = stream_name(self.prefix)
        self._nc: Client | None = None
        self._js: JetStreamContext | None = None
        self._known: set[str] = set()  # subscriptions seen to exist (replay targets)
        self._in_flight = InFlight(self._translate)  # arrived, not settled
        self._consumers = Consumers(
            prefix=self.prefix,
            stream=self.stream,
            where=self._where,
            in_flight=self._in_flight,
            client=self._client,
            translate=self._translate,
            closed=lambda: self._closed,
        )
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed = False

    @classmethod
    def from_url(cls, url: str, settings: Settings) -> Self:
        return cls(url)

    def own_store_url(self) -> str:
        """The NATS store on the same server and prefix (:mod:`nerve.stores.nats`)."""
        return self.url

    # lifecycle

    async def connect(self) -> None:
        if self._nc is not None:
            return

        async def on_disconnected() -> None:
            if not self._closed:
                log.warning("disconnected from NATS at %s; reconnecting", self._where)

        async def on_reconnected() -> None:
            log.info("reconnected to NATS at %s", self._where)
            self._spawn(self._after_reconnect(), "nerve-nats-reconnected")

        client = await nats_connect(
            self._server_url,
            where=self._where,
            connect_timeout=self.connect_timeout,
            error=TransportError,
            disconnected=on_disconnected,
            reconnected=on_reconnected,
        )
        self._nc = client
        self._js = client.jetstream(timeout=API_TIMEOUT)
        self._closed = False
        try:
            await self._ensure_stream()
            if self.max_deliver > 0:
                await client.subscribe(
                    MAX_DELIVERIES_SUBJECT.format(stream=self.stream), cb=self._on_max_deliveries
                )
        except BaseException:
            self._nc = self._js = None
            await client.close()
            raise
        self._spawn(self._in_flight.keep_alive(self.ack_wait / 3), "nerve-nats-refresh")

    async def close(self) -> list[Delivery]:
        self._closed = True
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        client, self._nc, self._js = self._nc, None, None
        self._consumers.wake()  # receivers return nothing now
        if client is None:
            return []
        unsettled = self._in_flight.forget()
        self._consumers.forget()
        try:
            async with asyncio.timeout(CLOSE_FLUSH_TIMEOUT):
                await self._consumers.unsubscribe()  # no more deliveries to this process
                # Left to the broker for redelivery (durable), released at once instead of
                # after ack_wait. A release counts as a delivery (attempt + 1).
                for delivery in unsettled:
                    if delivery.claim():
                        await delivery.msg.nak()
                await client.flush()
        except (TimeoutError, nats.errors.Error):
            log.warning(
                "could not release %d in-flight deliveries; they return after ack_wait",
                len(unsettled),
                exc_info=True,
            )
        finally:
            with suppress(Exception):
                await client.close()
        return []

    async def declare(self, subscription: str, pattern: str, *, start_from: StartFrom) -> None:
        config = consumer_config(
            subscription,
            pattern,
            prefix=self.prefix,
            start_from=start_from,
            ack_wait=self.ack_wait,
            max_deliver=self.max_deliver,
            max_ack_pending=self.max_ack_pending,
        )
        sub = self._consumers.states.get(subscription)
        if sub is None:
            sub = ConsumerState(
                name=subscription,
                consumer=consumer_name(subscription),
                pattern=compile_pattern(pattern),
                config=config,
                inbox=self._client().new_inbox(),
            )
        else:
            sub.pattern, sub.config = compile_pattern(pattern), config
        await self._ensure_consumer(sub)
        await self._consumers.subscribe(sub)
        self._known.add(subscription)

    # publishing

    async def publish(
        self,
        event: Event[Any],
        *,
        subscription: str | None = None,
        timeout: float | None = None,
        bounded: bool = True,
    ) -> None:
        js = self._jetstream()
        if subscription is None:
            subject = event_subject(self.prefix, event.event_type)
            headers: dict[str, str] | None = {MSG_ID_HEADER: event.event_id}
        else:
            await self._check_exists(subscription)
            subject = event_subject(self.prefix, event.event_type, consumer_name(subscription))
            headers = None  # a replay is a new message: never deduplicated
        with self._translate(f"publishing {event.event_type} {event.event_id}"):
            await js.publish(
                subject,
                event.model_dump_json().encode(),
                timeout=self.publish_timeout,
                stream=self.stream,
                headers=headers,
            )
        raise_if_cancelled()

    async def publish_many(
        self, events: Sequence[Event[Any]], *, timeout: float | None = None, bounded: bool = True
    ) -> None:
        js = self._jetstream()
        # Sent in order on one connection (the stream stores them in that order), and
        # acknowledged together: one round trip's latency for the batch, not one per event.
        with self._translate(f"publishing {len(events)} events"):
            async with asyncio.timeout(self.publish_timeout):
                acks = [
                    await js.publish_async(
                        event_subject(self.prefix, event.event_type),
                        event.model_dump_json().encode(),
                        stream=self.stream,
                        headers={MSG_ID_HEADER: event.event_id},
                    )
                    for event in events
                ]
                await asyncio.gather(*acks)
        raise_if_cancelled()

    async def _check_exists(self, subscription: str) -> None:
        if subscription in self._known:
            return
        if await self._consumer_info(subscription, f"looking up {subscription!r}") is None:
            raise SubscriptionError(
                f"no subscription named {subscription!r} in stream {self.stream} at {self._where}"
            )
        self._known.add(subscription)

    # receiving and settling

    async def receive(self, subscription: str, max_items: int) -> Sequence[Delivery]:
        return await self._consumers.receive(subscription, max_items)

    async def ack_many(self, deliveries: Sequence[Delivery]) -> None:
        batch = [d for d in deliveries if isinstance(d, NATSDelivery) and d.claim()]
        if batch:
            await self._in_flight.settle(batch, "ack")

    # background work

    async def _after_reconnect(self) -> None:
        """Re-declare (a broker that lost its store) and pull again at once."""
        try:
            await self._ensure_stream()
            for sub in list(self._consumers.states.values()):
                await self._ensure_consumer(sub)
        except TransportError:
            log.warning("could not re-declare the stream and consumers", exc_info=True)
        self._consumers.pull_again()  # pull requests do not survive a broker restart

    async def _on_max_deliveries(self, msg: Msg) -> None:
        """Log the broker's MAX_DELIVERIES advisory (see "Retry limit" in :mod:`.declaring`)."""
        try:
            advisory = json.loads(msg.data)
        except ValueError:
            advisory = {}
        log.error(
            "NATS at %s stopped delivering stream %s sequence %s to consumer %s after "
            "max_deliver=%d deliveries; it was NOT dead-lettered",
            self._where,
            advisory.get("stream", self.stream),
            advisory.get("stream_seq", "?"),
            advisory.get("consumer", "?"),
            self.max_deliver,
        )

    def _spawn(self, coro: Coroutine[Any, Any, None], name: str) -> None:
        task: asyncio.Task[None] = asyncio.get_running_loop().create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # idleness

    async def is_idle(self) -> bool:
        js = self._jetstream()
        subs = list(self._consumers.states.values())
        with self._translate("checking for pending work"):
            infos = await asyncio.gather(
                *(js.consumer_info(self.stream, sub.consumer) for sub in subs)
            )
        # num_ack_pending counts delivered-unsettled and naked-with-a-delay messages.
        return all(info.num_pending == 0 and info.num_ack_pending == 0 for info in infos)

    async def lag(self, subscription: str) -> int | None:
        """The consumer's ``num_pending`` (not delivered yet) plus ``num_ack_pending``
        (delivered and unsettled, or waiting out a retry's delay), as the server counts
        them for every process. A pattern with ``#`` before its last segment filters in
        the client: the events its NATS filter lets through count, an upper bound."""
        info = await self._consumer_info(subscription, f"reading the lag of {subscription!r}")
        if info is None:
            return None
        return int(info.num_pending or 0) + int(info.num_ack_pending or 0)

    # helpers

    async def _ensure_stream(self) -> None:
        config = stream_config(
            self.prefix,
            replicas=self.replicas,
            retention=self.retention,
            dedupe_window=self.dedupe_window,
        )
        js = self._jetstream()
        with self._translate(f"declaring the stream {self.stream}"):
            await ensure_stream(js, self.stream, config, where=self._where)

    async def _ensure_consumer(self, sub: ConsumerState) -> None:
        js = self._jetstream()
        with self._translate(f"declaring the consumer of {sub.name!r}"):
            await ensure_consumer(
                js, self.stream, sub.consumer, sub.config, subscription=sub.name, where=self._where
            )

    async def _consumer_info(self, subscription: str, doing: str) -> ConsumerInfo | None:
        """What the server says of ``subscription``'s consumer; None if it has none."""
        js = self._jetstream()
        with self._translate(doing):
            try:
                info: ConsumerInfo = await js.consumer_info(
                    self.stream, consumer_name(subscription)
                )
            except nats.js.errors.NotFoundError:
                return None
        return info

    async def ping(self) -> None:
        with self._translate("pinging"):
            await self._client().flush(timeout=max(1, round(API_TIMEOUT)))

    def _client(self) -> Client:
        if self._nc is None:
            self._check_open()
            raise TransportError(f"the NATS transport for {self._where} is not connected")
        return self._nc

    def _jetstream(self) -> JetStreamContext:
        self._client()
        if self._js is None:  # pragma: no cover  # set together with the client
            raise TransportError(f"the NATS transport for {self._where} is not connected")
        return self._js

    @contextmanager
    def _translate(self, doing: str) -> Iterator[None]:
        try:
            yield
        except nats.errors.ConnectionClosedError as exc:
            self._check_open()
            raise TransportError(f"NATS at {self._where}: {doing} failed: {exc}") from exc
        except (nats.errors.Error, TimeoutError) as exc:
            detail = str(exc) or type(exc).__name__
            raise TransportError(f"NATS at {self._where}: {doing} failed: {detail}") from exc
