"""``kafka://host:9092``: Apache Kafka (aiokafka), a consumer group per subscription.

Layout (every name under ``prefix``, default ``nerve``)::

    {prefix}.events              one topic holding every published event
    {prefix}.retry.{name}        a topic per subscription: its retries and DLQ replays
    {prefix}.{name}              the subscription's consumer group (reads both topics)

Why one topic for every event: a pattern (``github.#``) must match event types first
published after its workers started, and a new subscription must see events published
before it existed. Each subscription's group reads the whole topic and skips the events
its pattern does not match (by the ``nerve-type`` header, without parsing them). The price
is that every group reads every event: fine for tens of subscriptions, not thousands.

Commits: offsets are committed only after handling. Deliveries of one partition finish out
of order, so each assigned partition keeps the offsets in flight (handed out, not
settled); the committed offset is the lowest of them, or the next offset to read when none
is in flight. A crash therefore redelivers what was in flight (and anything settled above
it); the core's idempotency store recognises what was already handled.

Retries never block a partition: :meth:`KafkaDelivery.nack` publishes the event to the
subscription's retry topic with its next attempt number and due time (``nerve-attempt``,
``nerve-due`` headers, wall-clock milliseconds), then settles the original offset. The
group reads the retry topic next to the events topic and keeps records that are not due
yet in memory (their offsets stay uncommitted) until they are. DLQ replays
(``publish(event, subscription=name)``) go to the same topic as attempt 1.

Taken over: Kafka does not count deliveries. Before a batch of a partition is handed out,
its offset range is recorded in the subscription's claims topic (``{prefix}.claims.{name}``,
keyed by partition, compacted on real Kafka). A member newly assigned a partition reads the
claims of that partition, and a record another member had delivered without committing
comes back as attempt ``n + 1``: a handler that kills its process ends in the dead letter
queue instead of looping.

Ordering: an event with ``partitionkey`` metadata (the CloudEvents partitioning
extension) is keyed by it, and Kafka hashes the key to a partition; an event without one
goes to partition 0. A partition is read by one member at a time, in order: events without
a key keep their publication order (as on every other transport), and events with the same
key keep theirs. Keys are what spreads a subscription's work over several workers (one
active member per partition); set ``partitionkey`` to the ordering key (a ticket, an
account) of subscriptions with ``ordered_by``.

URL options: ``prefix``, ``partitions`` (of topics nerve creates, default 12),
``replication`` (default 1; use 3 on a real cluster), ``session_timeout_ms`` (default 10000),
``security_protocol``, ``sasl_mechanism`` (credentials from the URL's user and password),
``store`` (the default store URL, see :meth:`KafkaTransport.own_store_url`).
See docs/transport-kafka.md.
"""

from __future__ import annotations

import asyncio
import hashlib
import heapq
import json
import logging
import os
import re
import socket
import ssl
import time
from collections import deque
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from typing import Any, Final, Self
from urllib.parse import parse_qsl, unquote, urlsplit

from aiokafka import (  # type: ignore[import-untyped]  # aiokafka ships no type hints
    AIOKafkaConsumer,
    AIOKafkaProducer,
    ConsumerRebalanceListener,
    TopicPartition,
)
from aiokafka.admin import (  # type: ignore[import-untyped]  # aiokafka ships no type hints
    AIOKafkaAdminClient,
    NewTopic,
)
from aiokafka.errors import (  # type: ignore[import-untyped]  # aiokafka ships no type hints
    CommitFailedError,
    IllegalStateError,
    KafkaError,
)

from nerve.events import Event
from nerve.exceptions import ConfigurationError, SubscriptionError, TransportError
from nerve.routing import compile_pattern
from nerve.settings import Settings
from nerve.subscription import StartFrom
from nerve.transports.base import Delivery, Transport
from nerve.urls import integer_option

log = logging.getLogger("nerve")

# Wire names, in one place.
DEFAULT_PREFIX: Final = "nerve"
EVENTS_TOPIC: Final = "{prefix}.events"
RETRY_TOPIC: Final = "{prefix}.retry.{name}"
CLAIMS_TOPIC: Final = "{prefix}.claims.{name}"
GROUP_ID: Final = "{prefix}.{name}"
HEADER_TYPE: Final = "nerve-type"
HEADER_ATTEMPT: Final = "nerve-attempt"
HEADER_DUE: Final = "nerve-due"
#: Event metadata naming the record key (CloudEvents' partitioning extension).
KEY_METADATA: Final = "partitionkey"

DEFAULT_PARTITIONS: Final = 12
DEFAULT_SESSION_TIMEOUT_MS: Final = 10_000
#: Longest wait of the broker for records to answer a fetch with.
FETCH_MAX_WAIT_MS: Final = 100
#: Longest wait of one fetch; also how soon a full buffer notices room.
POLL_MS: Final = 200
#: Records held per subscription (ready, waiting for their due time) before fetching pauses.
BUFFER: Final = 1_000
#: Longest read of a claims topic at an assignment.
CLAIMS_READ_TIMEOUT: Final = 10.0
#: Longest wait of each step of close() (a broker that does not answer does not hang it).
CLOSE_TIMEOUT: Final = 5.0
#: wait_idle polls this often.
#: Topic name characters Kafka accepts; others in a subscription name are replaced.
_TOPIC_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")
_TOPIC_EXISTS: Final = 36  # CreateTopics error code TOPIC_ALREADY_EXISTS
_OPTIONS = (
    "prefix",
    "partitions",
    "replication",
    "session_timeout_ms",
    "security_protocol",
    "sasl_mechanism",
    "store",
)


def kafka_where(url: str) -> str:
    """The bootstrap servers of a ``kafka://`` URL, for messages (never the password)."""
    return urlsplit(url).netloc.rpartition("@")[2] or "localhost:9092"


def topic_safe(name: str) -> str:
    """``name`` usable in a topic name: unsafe characters replaced, made unique by a hash."""
    safe = _TOPIC_UNSAFE.sub("_", name)
    if safe != name or len(safe) > 180:
        safe = f"{safe[:160]}-{hashlib.sha256(name.encode()).hexdigest()[:10]}"
    return safe


class KafkaDelivery(Delivery):
    """A record of a subscription's events or retry topic, handed to its handler."""

    __slots__ = ("_transport", "offset", "partition")

    def __init__(
        self,
        transport: KafkaTransport,
        event: Event[Any],
        subscription: str,
        attempt: int,
        partition: _Partition,
        offset: int,
    ) -> None:
        super().__init__(event, subscription, attempt)
        self._transport = transport
        self.partition = partition
        self.offset = offset

    async def _ack(self) -> None:
        await self._transport._settle([self])

    async def _reject(self) -> None:
        await self._transport._settle([self])

    async def _nack(self, delay: float) -> None:
        await self._transport._retry(self, delay, self.attempt + 1)

    async def _release(self) -> None:
        await self._transport._retry(self, 0.0, self.attempt)  # never started: no attempt


@dataclass(eq=False, slots=True)
class _Partition:
    """What this member knows of one assigned partition of a subscription."""

    tp: Any  # aiokafka's TopicPartition
    next: int | None  # the offset after the last record read (None: nothing read yet)
    in_flight: set[int] = field(default_factory=set)  # read, not settled
    committed: int | None = None  # what this member last committed
    claimed: int = -1  # the highest offset recorded in the claims topic
    #: Offsets other members delivered without committing: (last offset, deliveries) ranges.
    claims: list[tuple[int, int]] = field(default_factory=list)
    revoked: bool = False  # during a rebalance: may come back to this member
    gone: bool = False  # went to another member: its deliveries are not handed out

    def commit_point(self) -> int | None:
        if self.in_flight:
            return min(self.in_flight)
        return self.next

    def delivered_before(self, offset: int) -> int:
        """How many times other members delivered ``offset`` (from the claims read)."""
        for last, count in self.claims:
            if offset <= last:
                return count
        return 0


@dataclass(eq=False, slots=True)
class _Subscription:
    name: str
    pattern: re.Pattern[str]
    group: str
    retry_topic: str
    claims_topic: str
    start_from: StartFrom
    consumer: Any = None  # AIOKafkaConsumer
    parts: dict[Any, _Partition] = field(default_factory=dict)
    revoked: dict[Any, _Partition] = field(default_factory=dict)  # may come back at once
    ready: deque[KafkaDelivery] = field(default_factory=deque)  # due, not yet received
    waiting: list[tuple[float, int, KafkaDelivery]] = field(default_factory=list)  # a heap
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    assigned: asyncio.Event = field(default_factory=asyncio.Event)  # a first assignment came
    commit_lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    assigning: bool = False  # partitions are paused while their state is loaded
    poller: asyncio.Task[None] | None = None


class _Rebalance(ConsumerRebalanceListener):  # type: ignore[misc]  # untyped base class
    """Passes a subscription's rebalance callbacks to the transport (never raising)."""

    def __init__(self, transport: KafkaTransport, sub: _Subscription) -> None:
        self._transport = transport
        self._sub = sub

    async def on_partitions_revoked(self, revoked: Any) -> None:
        try:
            await self._transport._revoked(self._sub, list(revoked))
        except Exception:  # aiokafka would log and go on; say what it was
            log.exception("%s: handling revoked partitions failed", self._sub.name)

    async def on_partitions_assigned(self, assigned: Any) -> None:
        try:
            await self._transport._assigned(self._sub, list(assigned))
        except Exception:
            log.exception("%s: handling assigned partitions failed", self._sub.name)
        self._sub.assigned.set()


class KafkaTransport(Transport):
    """Kafka: one events topic, a consumer group and a retry topic per subscription.

    See the module docstring for the layout, commits, retries and takeovers, and
    docs/transport-kafka.md for running it against a real cluster.

    Args:
        url: ``kafka://host1:9092,host2:9092?prefix=myapp&replication=3``.

    Example:
        ```python
        bus = EventBus("kafka://kafka-1:9092,kafka-2:9092?prefix=myapp&replication=3",
                       store="postgresql://app@db/app")
        ```
    """

    durable = True
    name = "Kafka"
    idle_poll = 0.05

    def __init__(self, url: str = "kafka://localhost:9092") -> None:
        parts = urlsplit(url)
        options = dict(parse_qsl(parts.query, keep_blank_values=True))
        unknown = sorted(set(options) - set(_OPTIONS))
        if unknown:
            raise ConfigurationError(
                f"unknown kafka URL option(s) {', '.join(unknown)} (known: {', '.join(_OPTIONS)})"
            )
        self.url = url
        self._where = kafka_where(url)
        self.bootstrap = self._where.split(",")
        self.prefix = options.get("prefix") or DEFAULT_PREFIX
        self.partitions = integer_option("kafka", options, "partitions", DEFAULT_PARTITIONS)
        self.replication = integer_option("kafka", options, "replication", 1)
        self.session_timeout_ms = integer_option(
            "kafka", options, "session_timeout_ms", DEFAULT_SESSION_TIMEOUT_MS
        )
        self.store_url = options.get("store")
        self.events_topic = EVENTS_TOPIC.format(prefix=self.prefix)
        self._security: dict[str, Any] = {}
        protocol = options.get("security_protocol", "PLAINTEXT").upper()
        if protocol not in ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"):
            raise ConfigurationError(f"kafka URL option security_protocol={protocol!r} is unknown")
        if protocol != "PLAINTEXT":
            self._security["security_protocol"] = protocol
        if protocol.endswith("SSL"):
            self._security["ssl_context"] = ssl.create_default_context()
        if parts.username is not None:
            self._security["sasl_plain_username"] = unquote(parts.username)
            self._security["sasl_plain_password"] = unquote(parts.password or "")
            self._security["sasl_mechanism"] = options.get("sasl_mechanism", "PLAIN").upper()
        # Group members are ordered by id (client id first) when partitions are assigned:
        # starting with the start time keeps partitions with the oldest members while
        # younger ones come and go, so a restart elsewhere does not move them.
        self.client_id = f"nerve-{time.time_ns() // 1_000_000}-{socket.gethostname()}-{os.getpid()}"
        self._producer: Any = None
        self._subs: dict[str, _Subscription] = {}
        self._published: dict[Any, int] = {}  # partition -> end offset of what we published
        self._seq = 0  # ties in the waiting heaps
        self._closed = False

    @classmethod
    def from_url(cls, url: str, settings: Settings) -> Self:
        return cls(url)

    def own_store_url(self) -> str:
        """A SQLite file named for the prefix.

        Kafka cannot hold the store (it needs lookups by event id), so a bus on Kafka with
        no ``store=`` argument and no ``NERVE_STORE_URL`` keeps its done marks and dead
        letters in ``./nerve-{prefix}.db``: durable and shared by the processes of one
        host. Workers on several hosts need a shared store: PostgreSQL or Redis.
        """
        return f"sqlite:///nerve-{self.prefix}.db"

    # lifecycle

    async def connect(self) -> None:
        if self._producer is not None:
            return
        self._closed = False
        await self._create_topics([self.events_topic])
        producer = AIOKafkaProducer(
            bootstrap_servers=self.bootstrap,
            client_id=self.client_id,
            acks="all",  # accepted means on every in-sync replica
            **self._security,
        )
        with self._translate("connecting"):
            try:
                await producer.start()
            except BaseException:
                await producer.stop()
                raise
        self._producer = producer
        await self._track(self.events_topic)

    async def _track(self, *topics: str) -> None:
        """Have the producer keep metadata for ``topics``.

        aiokafka's producer starts by fetching every topic's metadata but tracks only the
        topics it was asked to look up; once it tracks one, its refreshes ask for those
        alone, and a topic it found at start (never looked up) drops out of its metadata:
        sends to it then fail with NotLeaderForPartitionError. Tracking each topic nerve
        writes to keeps them all.
        """
        with self._translate(f"loading metadata of {', '.join(topics)}"):
            await asyncio.gather(*(self._producer.client.add_topic(t) for t in topics))

    async def close(self) -> list[Delivery]:
        self._closed = True
        for sub in self._subs.values():
            sub.wake.set()  # receive() returns ()
            if sub.poller is not None:
                sub.poller.cancel()
        pollers = [s.poller for s in self._subs.values() if s.poller is not None]
        await asyncio.gather(*pollers, return_exceptions=True)
        for sub in self._subs.values():
            sub.poller = None
            sub.ready.clear()
            sub.waiting.clear()
            if sub.consumer is None:
                continue
            try:
                # What is settled is committed; what is in flight stays uncommitted and
                # goes to the next member (leaving the group starts that rebalance now).
                async with asyncio.timeout(CLOSE_TIMEOUT):
                    await self._commit(sub)
            except TimeoutError:
                log.warning("%s: last commit timed out; the next owner redelivers", sub.name)
            finally:
                with suppress(KafkaError, TimeoutError):
                    async with asyncio.timeout(CLOSE_TIMEOUT):
                        await sub.consumer.stop()
                sub.consumer = None
        producer, self._producer = self._producer, None
        if producer is not None:
            with suppress(KafkaError, TimeoutError):
                async with asyncio.timeout(CLOSE_TIMEOUT):
                    await producer.stop()
        return []

    async def declare(self, subscription: str, pattern: str, *, start_from: StartFrom) -> None:
        self._require_open()
        name = topic_safe(subscription)
        sub = _Subscription(
            name=subscription,
            pattern=compile_pattern(pattern),
            group=GROUP_ID.format(prefix=self.prefix, name=subscription),
            retry_topic=RETRY_TOPIC.format(prefix=self.prefix, name=name),
            claims_topic=CLAIMS_TOPIC.format(prefix=self.prefix, name=name),
            start_from=start_from,
        )
        await self._create_topics([sub.retry_topic, sub.claims_topic], compact=sub.claims_topic)
        await self._track(sub.retry_topic, sub.claims_topic)
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap,
            client_id=self.client_id,
            group_id=sub.group,
            enable_auto_commit=False,  # committed only after handling, below
            auto_offset_reset="earliest",  # "latest" is applied per partition on assignment
            session_timeout_ms=self.session_timeout_ms,
            heartbeat_interval_ms=max(100, self.session_timeout_ms // 4),
            # A broker that does not answer a waiting fetch as soon as records arrive (Tansu)
            # adds up to this much latency to every hop of a chain.
            fetch_max_wait_ms=FETCH_MAX_WAIT_MS,
            **self._security,
        )
        sub.consumer = consumer
        with self._translate(f"declaring {subscription!r}"):
            try:
                await consumer.start()  # not subscribed yet: reads offsets, joins no group
            except BaseException:
                await consumer.stop()
                raise
        self._subs[subscription] = sub
        if start_from == "latest":
            # "From now on" is fixed when the group first owns its partitions: join now and
            # wait for that, so events published after declare() returns are not skipped.
            self._join(sub)
            with suppress(TimeoutError):
                await asyncio.wait_for(sub.assigned.wait(), 3 * self.session_timeout_ms / 1000)

    def _join(self, sub: _Subscription) -> None:
        """Join the subscription's group and start fetching (at the first receive).

        A bus that declares its subscriptions without running them (a publisher) joins no
        group, so it never holds partitions its workers need.
        """
        if sub.poller is not None:
            return
        sub.consumer.subscribe([self.events_topic, sub.retry_topic], listener=_Rebalance(self, sub))
        sub.poller = asyncio.create_task(self._poll(sub), name=f"nerve-kafka:{sub.name}")

    # publishing

    async def publish(
        self,
        event: Event[Any],
        *,
        subscription: str | None = None,
        timeout: float | None = None,
        bounded: bool = True,
    ) -> None:
        producer = self._require_open()
        if subscription is None:
            topic = self.events_topic
            headers = [(HEADER_TYPE, event.event_type.encode())]
        else:
            topic = await self._retry_topic_of(subscription)
            headers = [(HEADER_ATTEMPT, b"1"), (HEADER_DUE, b"0")]
        with self._translate(f"publishing {event.event_type} {event.event_id}"):
            sent = await producer.send_and_wait(
                topic, event.model_dump_json().encode(), headers=headers, **_placement(event)
            )
        self._note_published(sent)

    async def publish_many(
        self, events: Sequence[Event[Any]], *, timeout: float | None = None, bounded: bool = True
    ) -> None:
        producer = self._require_open()
        with self._translate(f"publishing {len(events)} events"):
            # send() queues into the producer's batches; the futures resolve once written.
            futures = [
                await producer.send(
                    self.events_topic,
                    event.model_dump_json().encode(),
                    **_placement(event),
                    headers=[(HEADER_TYPE, event.event_type.encode())],
                )
                for event in events
            ]
            for sent in await asyncio.gather(*futures):
                self._note_published(sent)

    def _note_published(self, sent: Any) -> None:
        tp = TopicPartition(sent.topic, sent.partition)
        self._published[tp] = max(self._published.get(tp, 0), sent.offset + 1)

    async def _retry_topic_of(self, subscription: str) -> str:
        sub = self._subs.get(subscription)
        if sub is not None:
            return sub.retry_topic
        topic = RETRY_TOPIC.format(prefix=self.prefix, name=topic_safe(subscription))
        if topic not in await self._list_topics():
            raise SubscriptionError(f"no subscription named {subscription!r} in {self._where}")
        return topic

    # receiving

    async def receive(self, subscription: str, max_items: int) -> Sequence[Delivery]:
        sub = self._subs[subscription]
        if not self._closed:
            self._join(sub)
        while not self._closed:
            while sub.ready:
                batch: list[Delivery] = []
                while sub.ready and len(batch) < max_items:
                    delivery = sub.ready.popleft()
                    if not delivery.partition.gone:
                        batch.append(delivery)
                if batch:
                    return batch
            sub.wake.clear()
            await sub.wake.wait()
        return ()

    async def _poll(self, sub: _Subscription) -> None:
        """Fetch records into ``sub.ready``, keeping retries until due; commit as it goes."""
        consumer = sub.consumer
        failures = 0
        while True:
            try:
                room = BUFFER - len(sub.ready) - len(sub.waiting)
                assigned = consumer.assignment()
                if room <= 0:
                    consumer.pause(*assigned)  # keep polling: it keeps us in the group
                elif consumer.paused() and not sub.assigning:
                    consumer.resume(*consumer.paused())
                wait_ms = POLL_MS
                if sub.waiting:
                    wait_ms = max(0, min(wait_ms, int((sub.waiting[0][0] - time.time()) * 1000)))
                batch = await consumer.getmany(timeout_ms=wait_ms, max_records=max(1, room))
                fresh = await self._take(sub, batch)
                self._promote(sub)
                if fresh or sub.ready:
                    sub.wake.set()
                await self._commit(sub)
                failures = 0
            except asyncio.CancelledError:
                raise
            except Exception:
                failures += 1
                delay = min(5.0, 0.1 * 2**failures)
                log.warning(
                    "%s: fetching from Kafka at %s failed; retrying in %.1fs",
                    sub.name,
                    self._where,
                    delay,
                    exc_info=True,
                )
                await asyncio.sleep(delay)

    async def _take(self, sub: _Subscription, batch: dict[Any, list[Any]]) -> bool:
        """Turn fetched records into deliveries; True if any is ready now."""
        now = time.time()
        taken: list[tuple[float, KafkaDelivery]] = []
        claims: dict[Any, tuple[_Partition, int]] = {}
        for tp, records in batch.items():
            part = sub.parts.get(tp)
            if part is None:
                if tp in sub.consumer.assignment():  # assigned, its state not loaded yet
                    sub.consumer.seek(tp, records[0].offset)
                continue
            retry = tp.topic == sub.retry_topic
            for record in records:
                offset = record.offset
                part.next = offset + 1
                if offset in part.in_flight:
                    continue  # read again after a rewind, and still in flight here
                headers = {k: v.decode() for k, v in record.headers}
                if retry:
                    attempt = int(headers.get(HEADER_ATTEMPT, "1"))
                    due = int(headers.get(HEADER_DUE, "0")) / 1000
                elif sub.pattern.fullmatch("." + headers.get(HEADER_TYPE, "")):
                    attempt, due = 1, 0.0
                else:
                    continue  # not for this subscription: settled by reading past it
                try:
                    event = Event.model_validate_json(record.value)
                except ValueError:
                    log.exception("%s: dropping malformed record %s@%d", sub.name, tp, offset)
                    continue
                attempt += part.delivered_before(offset)
                part.in_flight.add(offset)
                taken.append((due, KafkaDelivery(self, event, sub.name, attempt, part, offset)))
                if offset > part.claimed:
                    claims[tp] = (part, offset)
        if claims:
            await self._claim(sub, claims)  # before any handler can start
        fresh = False
        for due, delivery in taken:
            if delivery.partition.gone:
                continue  # went to another member while claiming
            if due > now:
                self._seq += 1
                heapq.heappush(sub.waiting, (due, self._seq, delivery))
            else:
                sub.ready.append(delivery)
                fresh = True
        return fresh

    def _promote(self, sub: _Subscription) -> None:
        now = time.time()
        while sub.waiting and sub.waiting[0][0] <= now:
            sub.ready.append(heapq.heappop(sub.waiting)[2])

    # takeovers: claims

    async def _claim(self, sub: _Subscription, claims: dict[Any, tuple[_Partition, int]]) -> None:
        """Record, before handing them out, which offsets this member delivers."""
        producer = self._require_open()
        futures = []
        for tp, (part, last) in claims.items():
            # Cumulative: offsets others delivered count once more, ours up to last once.
            ranges: list[tuple[int, int]] = []
            for end, count in part.claims:
                if end <= last:
                    ranges.append((end, count + 1))
                    continue
                if not ranges or ranges[-1][0] < last:
                    ranges.append((last, count + 1))  # this range, split at last
                ranges.append((end, count))
            if not ranges or ranges[-1][0] < last:
                ranges.append((last, 1))
            value = json.dumps({"from": part.commit_point(), "ranges": ranges}).encode()
            key = f"{tp.topic}:{tp.partition}".encode()
            futures.append(await producer.send(sub.claims_topic, value, key=key))
            part.claimed = last
        await asyncio.gather(*futures)

    async def _read_claims(self, sub: _Subscription, tps: list[Any]) -> dict[Any, Any]:
        """The latest claim of each partition in ``tps`` (claims topic read to its end)."""
        wanted = {f"{tp.topic}:{tp.partition}": tp for tp in tps}
        reader = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap,
            client_id=self.client_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            fetch_max_wait_ms=50,  # an empty fetch ends the read: make it a short one
            **self._security,
        )
        found: dict[Any, Any] = {}
        await reader.start()
        try:
            claims_tp = TopicPartition(sub.claims_topic, 0)
            reader.assign([claims_tp])
            deadline = time.monotonic() + CLAIMS_READ_TIMEOUT
            while time.monotonic() < deadline:
                batch = await reader.getmany(claims_tp, timeout_ms=POLL_MS)
                records = batch.get(claims_tp, ())
                for record in records:
                    tp = wanted.get(record.key.decode())
                    if tp is not None:
                        found[tp] = json.loads(record.value)
                # The end: a fetch that found nothing at or past the high watermark (not
                # the watermark alone, which a stand-in broker may report early).
                end = reader.highwater(claims_tp)
                if not records and end is not None and await reader.position(claims_tp) >= end:
                    return found
            log.warning("%s: could not read its claims topic to the end", sub.name)
            return found
        finally:
            await reader.stop()

    # rebalances

    async def _revoked(self, sub: _Subscription, revoked: list[Any]) -> None:
        """Commit what is settled; keep the state in case the partitions come straight back."""
        gone = {tp for tp in revoked if tp in sub.parts}
        if not gone:
            return
        await self._commit(sub)
        for tp in gone:
            part = sub.parts.pop(tp)
            part.revoked = True
            sub.revoked[tp] = part
        # Deliveries not handed out yet stay: the partition usually comes straight back
        # (the assignment favours the oldest members), and handlers keep working meanwhile.

    async def _assigned(self, sub: _Subscription, assigned: list[Any]) -> None:
        consumer = sub.consumer
        previous, sub.revoked = sub.revoked, {}
        # Nothing is fetched until every partition's state (claims included) is known.
        sub.assigning = True
        consumer.pause(*assigned)
        try:
            parts: dict[Any, _Partition] = {}
            fresh: list[Any] = []
            commits = await asyncio.gather(*(consumer.committed(tp) for tp in assigned))
            for tp, committed in zip(assigned, commits, strict=True):
                old = previous.pop(tp, None)
                if old is not None and committed == old.committed:
                    # Ours again, and nobody committed in between: carry on where we were,
                    # with the deliveries still in flight in the handlers.
                    old.revoked = False
                    parts[tp] = old
                    if old.next is not None:
                        consumer.seek(tp, old.next)
                    continue
                part = parts[tp] = _Partition(tp=tp, next=committed, committed=committed)
                fresh.append(tp)
                latest = sub.start_from == "latest" and tp.topic == self.events_topic
                if committed is None and latest:
                    await consumer.seek_to_end(tp)
                    part.next = await consumer.position(tp)
            for part in previous.values():  # gone to another member: it redelivers them
                part.gone = True
                part.in_flight.clear()
            if previous:
                sub.ready = deque(d for d in sub.ready if not d.partition.gone)
                sub.waiting = [w for w in sub.waiting if not w[2].partition.gone]
                heapq.heapify(sub.waiting)
            if fresh:
                # Records other members delivered without committing come back as later
                # attempts.
                for tp, claim in (await self._read_claims(sub, fresh)).items():
                    part = parts[tp]
                    start = part.committed or 0
                    part.claims = [(end, n) for end, n in claim["ranges"] if end >= start]
                    log.info(
                        "%s: took over %s from offset %d; delivered before: %s",
                        sub.name,
                        tp,
                        start,
                        part.claims,
                    )
            sub.parts.update(parts)
        finally:
            sub.assigning = False
            consumer.resume(*assigned)
        await self._commit(sub)  # "latest" positions become the group's

    # settling

    async def ack_many(self, deliveries: Sequence[Delivery]) -> None:
        batch = [d for d in deliveries if isinstance(d, KafkaDelivery) and d.claim()]
        if batch:
            await self._settle(batch)

    async def _settle(self, deliveries: Sequence[KafkaDelivery]) -> None:
        # Recorded even on a revoked partition: it may come straight back to this member
        # (then its state must be right); if it went to another, that one redelivers.
        for delivery in deliveries:
            delivery.partition.in_flight.discard(delivery.offset)
        for name in {d.subscription for d in deliveries}:
            await self._commit(self._subs[name])

    async def _retry(self, delivery: KafkaDelivery, delay: float, attempt: int) -> None:
        # Published even from a revoked partition (it may come back here; if another member
        # has it, the event is delivered twice, which the idempotency store absorbs).
        sub = self._subs[delivery.subscription]
        event = delivery.event
        due = int((time.time() + delay) * 1000) if delay > 0 else 0
        headers = [
            (HEADER_ATTEMPT, str(attempt).encode()),
            (HEADER_DUE, str(due).encode()),
        ]
        with self._translate(f"requeueing {event.event_id}"):
            sent = await self._require_open().send_and_wait(
                sub.retry_topic,
                event.model_dump_json().encode(),
                headers=headers,
                **_placement(event),
            )
        self._note_published(sent)
        await self._settle([delivery])

    async def _commit(self, sub: _Subscription) -> None:
        """Commit, per assigned partition, the offset below which everything is settled."""
        async with sub.commit_lock:
            offsets = {}
            for tp, part in sub.parts.items():
                point = part.commit_point()
                if point is not None and point != part.committed:
                    offsets[tp] = point
            if not offsets or sub.consumer is None:
                return
            try:
                await sub.consumer.commit(offsets)
            except (CommitFailedError, IllegalStateError) as exc:
                # A rebalance is under way: the next owner starts from the last commit.
                log.info("%s: commit skipped during a rebalance: %s", sub.name, exc)
                return
            except KafkaError as exc:
                log.warning("%s: commit to Kafka at %s failed: %s", sub.name, self._where, exc)
                return
            for tp, point in offsets.items():
                owned = sub.parts.get(tp)
                if owned is not None:
                    owned.committed = point

    # idleness

    async def is_idle(self) -> bool:
        for sub in list(self._subs.values()):
            if sub.ready or sub.waiting:
                return False
            if any(part.in_flight for part in sub.parts.values()):
                return False
            consumer = sub.consumer
            if consumer is None:
                continue
            producer = self._require_open()
            tps = [
                TopicPartition(topic, p)
                for topic in (self.events_topic, sub.retry_topic)
                for p in await producer.partitions_for(topic)
            ]
            ends = {tp: self._published.get(tp, 0) for tp in tps}
            with self._translate("checking for pending work"):
                # On Kafka the end offsets are exact (other processes' events included); a
                # stand-in that reports them too low (Tansu) leaves what this process knows.
                for tp, end in (await consumer.end_offsets(tps)).items():
                    ends[tp] = max(ends[tp], end)
                for tp, end in ends.items():
                    if tp in sub.parts:
                        highwater = consumer.highwater(tp)
                        end = max(end, highwater or 0)
                        done = sub.parts[tp].committed
                    else:
                        done = await consumer.committed(tp)
                    if end > (done or 0):
                        return False
        return True

    async def lag(self, subscription: str) -> int | None:
        """Per partition of the events and retry topics: the end offset minus the group's
        committed offset (every process's work). Records of other event types count until
        the group reads past them, and committed offsets trail handling a little (the
        lowest offset in flight), so the figure is an upper bound. None for a subscription
        not declared here."""
        sub = self._subs.get(subscription)
        if sub is None or sub.consumer is None:
            return None
        producer = self._require_open()
        consumer = sub.consumer
        with self._translate(f"reading the lag of {subscription!r}"):
            tps = [
                TopicPartition(topic, p)
                for topic in (self.events_topic, sub.retry_topic)
                for p in await producer.partitions_for(topic)
            ]
            ends = await consumer.end_offsets(tps)
            starts = await consumer.beginning_offsets(tps)
            commits = await asyncio.gather(*(consumer.committed(tp) for tp in tps))
        total = 0
        for tp, done in zip(tps, commits, strict=True):
            end = max(ends.get(tp, 0), self._published.get(tp, 0))  # see _idle
            if done is None:  # never committed: the group starts where start_from says
                latest = sub.start_from == "latest" and tp.topic == self.events_topic
                done = end if latest else starts.get(tp, 0)
            total += max(0, end - done)
        return total

    # helpers

    async def _list_topics(self) -> set[str]:
        admin = self._admin()
        with self._translate("listing topics"):
            await admin.start()
            try:
                return set(await admin.list_topics())
            finally:
                await admin.close()

    def _admin(self) -> Any:
        return AIOKafkaAdminClient(
            bootstrap_servers=self.bootstrap, client_id=self.client_id, **self._security
        )

    async def _create_topics(self, topics: list[str], *, compact: str | None = None) -> None:
        """Create missing topics (an existing one is fine; so is having no right to create)."""
        admin = self._admin()
        new = [
            NewTopic(
                topic,
                1 if topic == compact else self.partitions,
                self.replication,
                topic_configs={"cleanup.policy": "compact"} if topic == compact else {},
            )
            for topic in topics
        ]
        with self._translate(f"creating topics {', '.join(topics)}"):
            await admin.start()
            try:
                reply = await admin.create_topics(new)
                failed = {t: (code, msg) for t, code, msg in reply.topic_errors if code}
                failed = {t: e for t, e in failed.items() if e[0] != _TOPIC_EXISTS}
                if failed:
                    existing = set(await admin.list_topics())
                    missing = {t: e for t, e in failed.items() if t not in existing}
                    if missing:
                        detail = "; ".join(f"{t}: {m} (error {c})" for t, (c, m) in missing.items())
                        raise TransportError(
                            f"Kafka at {self._where}: cannot create topics: {detail}"
                        )
            finally:
                await admin.close()

    async def ping(self) -> None:
        with self._translate("fetching metadata"):
            await self._require_open().client.fetch_all_metadata()

    def _require_open(self) -> Any:
        self._check_open()
        if self._producer is None:
            raise TransportError(f"the Kafka transport for {self._where} is not connected")
        return self._producer

    @contextmanager
    def _translate(self, doing: str) -> Iterator[None]:
        try:
            yield
        except KafkaError as exc:
            raise TransportError(f"Kafka at {self._where}: {doing} failed: {exc}") from exc


def _placement(event: Event[Any]) -> dict[str, Any]:
    """Where a record goes: hashed by its ``partitionkey``, else partition 0 (one order)."""
    key = event.metadata.get(KEY_METADATA)
    return {"key": key.encode()} if key else {"partition": 0}
