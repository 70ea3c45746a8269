"""``nats://host:port``: NATS JetStream, one stream, a durable pull consumer per subscription.

Layout (every name under ``prefix``, default ``nerve``; the names are the constants below)::

    stream    {prefix}-events                       every subject {prefix}.ev.>
    subject   {prefix}.ev.<event_type>.<target>     target: "_" (every subscription) or
                                                    one subscription's consumer name
    consumer  <subscription name, made NATS-safe>   durable, pull, explicit ack

Why a trailing ``<target>`` token: nerve's ``#`` matches *zero* or more segments, NATS's
``>`` one or more, and server 2.9 has a single filter subject per consumer (no
``FilterSubjects`` before 2.10). With one token always after the event type, a pattern
ending in ``#`` maps exactly: ``github.#`` filters on ``{prefix}.ev.github.>``, which
matches ``github`` itself (``{prefix}.ev.github._``) as well as ``github.push``. A pattern
without ``#`` maps one to one, its target token as ``*``. A ``#`` anywhere else
(``#.created``, ``a.#.b``) cannot be said in one NATS filter: the filter stops at the
first ``#`` (``{prefix}.ev.>``, ``{prefix}.ev.a.>``) and the client checks the event type
against the pattern, acknowledging what does not match on the spot, as the Redis
transport does for everything. The same token carries a DLQ replay to one subscription
(:meth:`NATSTransport.publish` with ``subscription=``): its consumer's filter matches the
replay, and any other consumer whose filter also does skips it (the last token is not
``_`` nor its own name). Two consumers per subscription would avoid that skipping, but
then one receive would have to wait on two pull requests; replays are rare.

Delivery: each subscription keeps one pull request (``$JS.API.CONSUMER.MSG.NEXT``) of up to
``max_items`` messages open on its inbox; JetStream pushes matching messages to it as they
arrive, so a quiet subscription costs one request every :data:`PULL_EXPIRES` seconds and a
busy one gets batches. (nats-py's ``fetch`` waits for a whole batch or its timeout once it
has one message, which would delay a lone event by the timeout.) A request lost with a
broker restart simply expires here, and a reconnect re-declares the stream and consumers
and pulls again at once. The delivery count in the message's metadata is the attempt: a
retry (:meth:`NATSDelivery.nack` -> ``-NAK {"delay": ...}``), a takeover after
``ack_wait`` (a dead worker) and a release at shutdown all count, so a crash counts as an
attempt. Acks are ``+ACK``; a dead-lettered delivery is terminated (``+TERM``). While a
delivery is held here (handled, or waiting in a buffer), ``+WPI`` (``in_progress``) is
sent every ``ack_wait / 3``, so a long LLM call is not redelivered to another worker while
it runs. A frozen process (stopped, not dead) loses its deliveries after ``ack_wait`` and
may still acknowledge them later: handled twice, caught by the idempotency store.

Retry limit: the core dead-letters from ``attempt`` and the subscription's ``retries``, so
the consumers' ``max_deliver`` is unlimited by default. A finite ``max_deliver`` makes the
broker stop delivering a message after that many deliveries *without* the core having
dead-lettered it; it is a last-resort stop for a handler that kills its process every
time, and the transport then logs the broker's MAX_DELIVERIES advisory as an error (with
the stream sequence, to find the event with ``nats stream get``).

Dedupe: publishes carry ``Nats-Msg-Id: <event_id>``, so the stream drops a re-published
event within its duplicate window (``dedupe_window``, 2 minutes by default; the idempotency
store covers the rest). Replays carry none: replaying the same dead letter twice must work.

Retention: the stream keeps events for ``retention`` (a week by default) whether or not
every subscription has handled them (JetStream's ``max_age`` cannot ask the consumers);
``retention=0`` keeps them forever. A new subscription starts at the oldest event kept
(``start_from="earliest"``) or at the next one (``"latest"``).

``publish`` never waits for room: the broker holds the pending work, so ``timeout`` and
``bounded`` are accepted and ignored. It returns once the stream acknowledged the event
(within ``publish_timeout``). nats-server 2.9.10 reports a delivery count of 1 for a
redelivery that first met the pull request of a worker that has just gone: ``attempt`` is
then low once (more retries than asked, nothing lost).

URL options (query string): ``prefix``, ``ack_wait`` (seconds, default 30), ``retention``
(seconds, default a week, 0: forever), ``dedupe_window`` (seconds, default 120),
``max_deliver`` (default unlimited), ``max_ack_pending`` (per subscription, default 1000),
``replicas`` (default 1), ``publish_timeout`` (seconds, default 10), ``connect_timeout``
(seconds, default 5), ``store`` (the store URL a bus uses by default; without it,
``memory://``). A user and password in the URL go to the server. docs/transport-nats.md
says what survives what and how to run it in production.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import re
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from typing import Any, Final, Literal, Self
from urllib.parse import parse_qsl, urlsplit, urlunsplit

import nats.errors
import nats.js.errors
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.js import JetStreamContext
from nats.js.api import (
    AckPolicy,
    ConsumerConfig,
    DeliverPolicy,
    StorageType,
    StreamConfig,
)

from nerve.events import Event
from nerve.exceptions import ConfigurationError, SubscriptionError, TransportError
from nerve.routing import compile_pattern, validate_pattern
from nerve.settings import Settings
from nerve.subscription import StartFrom
from nerve.transports.base import Delivery, Transport, raise_if_cancelled
from nerve.urls import integer_option, number_option

log = logging.getLogger("nerve")

# Wire names, in one place.
DEFAULT_PREFIX: Final = "nerve"
STREAM: Final = "{prefix}-events"
SUBJECTS: Final = "{prefix}.ev.>"
SUBJECT: Final = "{prefix}.ev.{event_type}.{target}"
#: The target token of an event for every matching subscription.
BROADCAST: Final = "_"
PULL_SUBJECT: Final = "$JS.API.CONSUMER.MSG.NEXT.{stream}.{consumer}"
MAX_DELIVERIES_SUBJECT: Final = "$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.{stream}.*"
MSG_ID_HEADER: Final = "Nats-Msg-Id"
STATUS_HEADER: Final = "Status"
DESCRIPTION_HEADER: Final = "Description"

DEFAULT_ACK_WAIT: Final = 30.0
DEFAULT_RETENTION: Final = 7 * 24 * 3600.0
DEFAULT_DEDUPE_WINDOW: Final = 120.0
DEFAULT_MAX_ACK_PENDING: Final = 1000
DEFAULT_PUBLISH_TIMEOUT: Final = 10.0
#: Seconds a pull request stays open on the server; a lost one is replaced after this
#: plus :data:`PULL_GRACE`.
PULL_EXPIRES: Final = 5.0
PULL_GRACE: Final = 1.0
#: Seconds to reach the server at connect (once connected, nats-py reconnects forever).
DEFAULT_CONNECT_TIMEOUT: Final = 5.0
RECONNECT_WAIT: Final = 0.5
#: Seconds for JetStream API calls (stream and consumer info, creation).
API_TIMEOUT: Final = 5.0
#: Seconds close() gives the acknowledgements and releases to reach the server.
CLOSE_FLUSH_TIMEOUT: Final = 5.0
#: wait_idle polls this often.

_OPTIONS: Final = (
    "prefix",
    "ack_wait",
    "retention",
    "dedupe_window",
    "max_deliver",
    "max_ack_pending",
    "replicas",
    "publish_timeout",
    "connect_timeout",
    "store",
)
_Settle = Literal["ack", "nak", "term"]
_SAFE_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_PREFIX = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


def nats_options(url: str) -> tuple[str, dict[str, str]]:
    """Split a ``nats://`` URL into the server URL for nats-py and nerve's own options.

    Raises:
        ConfigurationError: an option nerve does not know.
    """
    parts = urlsplit(url)
    options = dict(parse_qsl(parts.query, keep_blank_values=True))
    unknown = sorted(set(options) - set(_OPTIONS))
    if unknown:
        raise ConfigurationError(
            f"unknown nats URL option(s) {', '.join(unknown)} (known: {', '.join(_OPTIONS)})"
        )
    return urlunsplit(parts._replace(path="", query="", fragment="")), options


def nats_where(url: str) -> str:
    """``host:port`` of a NATS URL, for messages (never the user or password)."""
    parts = urlsplit(url)
    return f"{parts.hostname or 'localhost'}:{parts.port or 4222}"


def stream_name(prefix: str) -> str:
    """The stream holding every event published under ``prefix``."""
    return STREAM.format(prefix=prefix)


def consumer_name(subscription: str) -> str:
    """The durable consumer (and target token) of a subscription: its name if NATS allows
    it as is, else a readable form with a hash of the name (so distinct names stay distinct).
    """
    if _SAFE_NAME.match(subscription) and subscription != BROADCAST:
        return subscription
    readable = re.sub(r"[^A-Za-z0-9_-]+", "_", subscription).strip("_")[:40]
    digest = hashlib.sha256(subscription.encode()).hexdigest()[:12]
    return f"{readable}_{digest}" if readable else digest


def filter_subject(prefix: str, pattern: str) -> str:
    """The NATS filter subject of a nerve pattern (exact unless ``#`` is not last)."""
    tokens: list[str] = []
    for segment in validate_pattern(pattern).split("."):
        if segment == "#":
            tokens.append(">")  # covers the rest and the target token
            break
        tokens.append(segment)
    else:
        tokens.append("*")  # the target token
    return f"{prefix}.ev.{'.'.join(tokens)}"


class NATSDelivery(Delivery):
    """A delivery of one JetStream message to one subscription's consumer."""

    __slots__ = ("_transport", "msg")

    def __init__(
        self, transport: NATSTransport, event: Event[Any], subscription: str, msg: Msg
    ) -> None:
        super().__init__(event, subscription, msg.metadata.num_delivered)
        self._transport = transport
        self.msg = msg

    async def _ack(self) -> None:
        await self._transport._settle([self], "ack")

    async def _nack(self, delay: float) -> None:
        await self._transport._settle([self], "nak", delay)

    async def _reject(self) -> None:
        await self._transport._settle([self], "term")


@dataclass(slots=True)
class _Subscription:
    name: str
    consumer: str
    pattern: re.Pattern[str]
    config: ConsumerConfig
    inbox: str
    sub: Subscription | None = None
    backlog: deque[NATSDelivery] = field(default_factory=deque)  # arrived, not yet returned
    arrived: asyncio.Event = field(default_factory=asyncio.Event)
    credit: int = 0  # messages the open pull request may still bring
    expires_at: float = 0.0  # when to stop waiting for it (loop time)
    problem: str | None = None  # a 409 from the server, reported by the next receive


class NATSTransport(Transport):
    """NATS JetStream: one stream of events, a durable pull consumer per subscription.

    See the module docstring for the layout, the retry limit and what survives what.

    Args:
        url: ``nats://user:password@host:4222?prefix=myapp&ack_wait=30``.

    Example:
        ```python
        bus = EventBus("nats://localhost:4222?prefix=myapp", store="postgresql://...")
        ```
    """

    durable = True
    name = "NATS"

    def __init__(self, url: str = "nats://localhost:4222") -> None:
        self.url = url
        self._server_url, options = nats_options(url)
        self._where = nats_where(url)
        self.prefix = options.get("prefix") or DEFAULT_PREFIX
        if not _PREFIX.match(self.prefix):
            raise ConfigurationError(
                f"nats URL option prefix={self.prefix!r}: use 1-64 of [A-Za-z0-9_-] "
                "(it names the stream and the first subject token)"
            )
        self.ack_wait = number_option("nats", options, "ack_wait", DEFAULT_ACK_WAIT)
        self.retention = number_option("nats", options, "retention", DEFAULT_RETENTION, minimum=0.0)
        self.dedupe_window = number_option(
            "nats", options, "dedupe_window", DEFAULT_DEDUPE_WINDOW, minimum=0.0
        )
        if self.retention:
            self.dedupe_window = min(self.dedupe_window, self.retention)  # the server's rule
        self.max_deliver = integer_option("nats", options, "max_deliver", -1, minimum=-1)
        if self.max_deliver == 0:
            self.max_deliver = -1  # unlimited, as JetStream reads 0
        self.max_ack_pending = integer_option(
            "nats", options, "max_ack_pending", DEFAULT_MAX_ACK_PENDING, minimum=1
        )
        self.replicas = integer_option("nats", options, "replicas", 1, minimum=1)
        self.publish_timeout = number_option(
            "nats", options, "publish_timeout", DEFAULT_PUBLISH_TIMEOUT
        )
        self.connect_timeout = number_option(
            "nats", options, "connect_timeout", DEFAULT_CONNECT_TIMEOUT
        )
        self.store_url = options.get("store")
        self.stream = stream_name(self.prefix)
        self._nc: Client | None = None
        self._js: JetStreamContext | None = None
        self._subs: dict[str, _Subscription] = {}
        self._known: set[str] = set()  # subscriptions seen to exist (replay targets)
        self._in_flight: dict[NATSDelivery, None] = {}  # arrived, not settled
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed = False

    @classmethod
    def from_url(cls, url: str, settings: Settings) -> Self:
        return cls(url)

    # lifecycle

    async def connect(self) -> None:
        if self._nc is not None:
            return
        errors: list[Exception] = []

        async def on_error(exc: Exception) -> None:
            if self._nc is None:
                errors.append(exc)  # while connecting: reported in the TransportError
            else:
                log.warning("NATS at %s: %s", self._where, exc)

        async def on_disconnected() -> None:
            if not self._closed:
                log.warning("disconnected from NATS at %s; reconnecting", self._where)

        async def on_reconnected() -> None:
            log.info("reconnected to NATS at %s", self._where)
            self._spawn(self._after_reconnect(), "nerve-nats-reconnected")

        client = Client()
        try:
            async with asyncio.timeout(self.connect_timeout):
                await client.connect(
                    self._server_url,
                    name="nerve",
                    error_cb=on_error,
                    disconnected_cb=on_disconnected,
                    reconnected_cb=on_reconnected,
                    connect_timeout=max(1, int(self.connect_timeout)),
                    reconnect_time_wait=RECONNECT_WAIT,  # type: ignore[arg-type]  # seconds, a float works
                    max_reconnect_attempts=-1,  # a broker restart must never end the worker
                )
        except (TimeoutError, nats.errors.Error, OSError) as exc:
            with suppress(Exception):
                await client.close()
            cause = errors[-1] if errors else exc
            raise TransportError(f"cannot reach NATS at {self._where}: {cause}") from cause
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
        self._spawn(self._refresh_loop(), "nerve-nats-refresh")

    async def close(self) -> list[Delivery]:
        self._closed = True
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        client, self._nc, self._js = self._nc, None, None
        for sub in self._subs.values():
            sub.arrived.set()  # wake receivers: they return nothing now
        if client is None:
            return []
        unsettled = [d for d in self._in_flight if not d.settled]
        self._in_flight.clear()
        for sub in self._subs.values():
            sub.backlog.clear()
        try:
            async with asyncio.timeout(CLOSE_FLUSH_TIMEOUT):
                for sub in self._subs.values():
                    if sub.sub is not None:
                        await sub.sub.unsubscribe()  # no more deliveries to this process
                        sub.sub = None
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
        consumer = consumer_name(subscription)
        config = ConsumerConfig(
            durable_name=consumer,
            description=f"nerve subscription {subscription} ({pattern})",
            deliver_policy=DeliverPolicy.ALL if start_from == "earliest" else DeliverPolicy.NEW,
            ack_policy=AckPolicy.EXPLICIT,
            ack_wait=self.ack_wait,
            max_deliver=self.max_deliver,
            max_ack_pending=self.max_ack_pending,
            filter_subject=filter_subject(self.prefix, pattern),
        )
        sub = self._subs.get(subscription)
        if sub is None:
            sub = _Subscription(
                name=subscription,
                consumer=consumer,
                pattern=compile_pattern(pattern),
                config=config,
                inbox=self._client().new_inbox(),
            )
        else:
            sub.pattern, sub.config = compile_pattern(pattern), config
        await self._ensure_consumer(sub)
        if sub.sub is None:
            with self._translate(f"subscribing {subscription!r}"):
                sub.sub = await self._client().subscribe(sub.inbox, cb=self._arrival_handler(sub))
        self._subs[subscription] = sub
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
        body = event.model_dump_json().encode()
        if subscription is None:
            subject = SUBJECT.format(
                prefix=self.prefix, event_type=event.event_type, target=BROADCAST
            )
            headers: dict[str, str] | None = {MSG_ID_HEADER: event.event_id}
        else:
            await self._check_exists(subscription)
            subject = SUBJECT.format(
                prefix=self.prefix,
                event_type=event.event_type,
                target=consumer_name(subscription),
            )
            headers = None  # a replay is a new message: never deduplicated
        with self._translate(f"publishing {event.event_type} {event.event_id}"):
            await js.publish(
                subject, body, timeout=self.publish_timeout, stream=self.stream, headers=headers
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
                        SUBJECT.format(
                            prefix=self.prefix, event_type=event.event_type, target=BROADCAST
                        ),
                        event.model_dump_json().encode(),
                        stream=self.stream,
                        headers={MSG_ID_HEADER: event.event_id},
                    )
                    for event in events
                ]
                await asyncio.gather(*acks)
        raise_if_cancelled()

    # receiving

    async def receive(self, subscription: str, max_items: int) -> Sequence[Delivery]:
        sub = self._subs[subscription]
        loop = asyncio.get_running_loop()
        while not self._closed:
            raise_if_cancelled()  # never swallowed, whatever the client does
            sub.arrived.clear()  # before looking: an arrival from now on wakes us
            if sub.backlog:
                n = min(max_items, len(sub.backlog))
                return [sub.backlog.popleft() for _ in range(n)]
            if sub.problem is not None:
                problem, sub.problem = sub.problem, None
                raise TransportError(f"NATS at {self._where}: pulling {sub.name!r}: {problem}")
            if sub.credit <= 0 or loop.time() >= sub.expires_at:
                await self._pull(sub, max_items)
            with suppress(TimeoutError):
                async with asyncio.timeout(max(0.0, sub.expires_at - loop.time())):
                    await sub.arrived.wait()
        return ()

    async def _pull(self, sub: _Subscription, batch: int) -> None:
        """Open a pull request: up to ``batch`` messages, pushed to the inbox as they come."""
        request = {"batch": batch, "expires": int(PULL_EXPIRES * 1e9)}
        with self._translate(f"pulling for {sub.name!r}"):
            await self._client().publish(
                PULL_SUBJECT.format(stream=self.stream, consumer=sub.consumer),
                json.dumps(request).encode(),
                reply=sub.inbox,
            )
        sub.credit = batch
        sub.expires_at = asyncio.get_running_loop().time() + PULL_EXPIRES + PULL_GRACE

    def _arrival_handler(self, sub: _Subscription) -> Callable[[Msg], Awaitable[None]]:
        async def arrived(msg: Msg) -> None:
            try:
                await self._arrived(sub, msg)
            except Exception:  # a callback's error would only reach nats-py's error_cb
                log.exception("%s: could not take a message from NATS", sub.name)

        return arrived

    async def _arrived(self, sub: _Subscription, msg: Msg) -> None:
        status = msg.headers.get(STATUS_HEADER) if msg.headers else None
        if status is not None:
            if status in ("404", "408"):  # no messages / the request expired
                sub.credit = 0
            elif status == "409":  # e.g. "Exceeded MaxWaiting", "Consumer Deleted"
                sub.credit = 0
                description = (msg.headers or {}).get(DESCRIPTION_HEADER, "")
                sub.problem = f"409 {description}".strip()
            # "100": an idle heartbeat or flow control; nothing to do.
            sub.arrived.set()
            return
        sub.credit -= 1
        if not msg.reply:
            return  # not a JetStream delivery (someone published to our inbox)
        # {prefix}.ev.<event_type>.<target>
        event_type, _, target = msg.subject[len(self.prefix) + 4 :].rpartition(".")
        if (target != BROADCAST and target != sub.consumer) or not sub.pattern.fullmatch(
            "." + event_type
        ):
            await msg.ack()  # another subscription's replay, or a '#' the filter let by
            return
        try:
            event = Event.model_validate_json(msg.data)
        except ValueError:
            log.exception("%s: terminating malformed message %s", sub.name, msg.subject)
            await msg.term()
            return
        delivery = NATSDelivery(self, event, sub.name, msg)
        if self._closed:
            delivery.claim()  # never handed out: settled here
            await msg.nak()
            return
        self._in_flight[delivery] = None
        sub.backlog.append(delivery)
        sub.arrived.set()

    # settling

    async def ack_many(self, deliveries: Sequence[Delivery]) -> None:
        batch = [d for d in deliveries if isinstance(d, NATSDelivery) and d.claim()]
        if batch:
            await self._settle(batch, "ack")

    async def _settle(
        self, deliveries: Sequence[NATSDelivery], how: _Settle, delay: float = 0.0
    ) -> None:
        for delivery in deliveries:  # all of them, before a failure can stop the loop below
            self._in_flight.pop(delivery, None)
        with self._translate(f"settling {len(deliveries)} deliveries ({how})"):
            for delivery in deliveries:
                if how == "ack":
                    await delivery.msg.ack()
                elif how == "nak":
                    await delivery.msg.nak(delay=delay if delay > 0 else None)
                else:
                    await delivery.msg.term()

    # background work

    async def _refresh_loop(self) -> None:
        """Tell the server every in-flight delivery is still being worked on."""
        while True:
            await asyncio.sleep(self.ack_wait / 3)
            try:
                for delivery in list(self._in_flight):
                    if not delivery.settled:
                        await delivery.msg.in_progress()
            except nats.errors.Error:
                log.warning("could not extend the ack wait of in-flight deliveries", exc_info=True)

    async def _after_reconnect(self) -> None:
        """Re-declare (a broker that lost its store) and pull again at once."""
        try:
            await self._ensure_stream()
            for sub in list(self._subs.values()):
                await self._ensure_consumer(sub)
        except TransportError:
            log.warning("could not re-declare the stream and consumers", exc_info=True)
        for sub in self._subs.values():
            sub.credit = 0  # pull requests do not survive a broker restart
            sub.arrived.set()

    async def _on_max_deliveries(self, msg: Msg) -> None:
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
        subs = list(self._subs.values())
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
        with self._translate(f"reading the lag of {subscription!r}"):
            try:
                info = await self._jetstream().consumer_info(
                    self.stream, consumer_name(subscription)
                )
            except nats.js.errors.NotFoundError:
                return None
        return int(info.num_pending or 0) + int(info.num_ack_pending or 0)

    # helpers

    async def _ensure_stream(self) -> None:
        js = self._jetstream()
        config = StreamConfig(
            name=self.stream,
            description=f"nerve events under {self.prefix}",
            subjects=[SUBJECTS.format(prefix=self.prefix)],
            storage=StorageType.FILE,
            num_replicas=self.replicas,
            max_age=self.retention,
            duplicate_window=self.dedupe_window,
        )
        with self._translate(f"declaring the stream {self.stream}"):
            try:
                info = await js.stream_info(self.stream)
            except nats.errors.NoRespondersError as exc:
                raise TransportError(
                    f"NATS at {self._where} has no JetStream: start nats-server with -js"
                ) from exc
            except nats.js.errors.NotFoundError:
                try:
                    await js.add_stream(config)
                    return
                except nats.js.errors.BadRequestError:
                    info = await js.stream_info(self.stream)  # another process made it
            current = info.config
            if (current.max_age or 0.0, current.duplicate_window or 0.0) != (
                config.max_age,
                config.duplicate_window,
            ) or current.subjects != config.subjects:
                await js.update_stream(config)  # the app's URL is the configuration of record

    async def _ensure_consumer(self, sub: _Subscription) -> None:
        js = self._jetstream()
        with self._translate(f"declaring the consumer of {sub.name!r}"):
            for _ in range(2):
                try:
                    info = await js.consumer_info(self.stream, sub.consumer)
                except nats.js.errors.NotFoundError:
                    try:
                        await js.add_consumer(self.stream, sub.config)
                        return
                    except nats.js.errors.BadRequestError:
                        continue  # another process made it meanwhile: look again
                current, wanted = info.config, sub.config
                if (
                    current.filter_subject,
                    current.ack_wait,
                    current.max_deliver,
                    current.max_ack_pending,
                ) == (
                    wanted.filter_subject,
                    wanted.ack_wait,
                    wanted.max_deliver,
                    wanted.max_ack_pending,
                ):
                    return
                # Attach, keeping the consumer's position: its start is what it was.
                wanted.deliver_policy = current.deliver_policy
                wanted.opt_start_seq = current.opt_start_seq
                wanted.opt_start_time = current.opt_start_time
                await js.add_consumer(self.stream, wanted)  # an update of the same durable
                return
        raise TransportError(f"NATS at {self._where}: could not declare {sub.name!r}")

    async def _check_exists(self, subscription: str) -> None:
        if subscription in self._known:
            return
        try:
            await self._jetstream().consumer_info(self.stream, consumer_name(subscription))
        except nats.js.errors.NotFoundError:
            raise SubscriptionError(
                f"no subscription named {subscription!r} in stream {self.stream} at {self._where}"
            ) from None
        except nats.errors.Error as exc:
            raise TransportError(
                f"NATS at {self._where}: looking up {subscription!r} failed: {exc}"
            ) from exc
        self._known.add(subscription)

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
