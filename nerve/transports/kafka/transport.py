"""The Kafka transport itself: its URL, its lifecycle, declaring subscriptions, publishing,
and what is left to do (idleness, lag).

Its parts: :mod:`~nerve.transports.kafka.cluster` reaches the brokers,
:mod:`~nerve.transports.kafka.producer` writes every record,
:mod:`~nerve.transports.kafka.member` is each subscription's consumer side, and
:mod:`~nerve.transports.kafka.delivery` settles what it hands out.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from contextlib import suppress
from typing import Any, Final, Self
from urllib.parse import parse_qsl, urlsplit

from nerve.events import Event
from nerve.exceptions import ConfigurationError, SubscriptionError
from nerve.settings import Settings
from nerve.subscription import StartFrom
from nerve.transports.base import Delivery, Transport
from nerve.transports.kafka.cluster import Cluster
from nerve.transports.kafka.delivery import KafkaDelivery, settle
from nerve.transports.kafka.member import GroupMember
from nerve.transports.kafka.producer import Producer
from nerve.transports.kafka.wire import (
    DEFAULT_PREFIX,
    EVENTS_TOPIC,
    event_headers,
    retry_headers,
    retry_topic,
)
from nerve.urls import integer_option

DEFAULT_PARTITIONS: Final = 12
DEFAULT_SESSION_TIMEOUT_MS: Final = 10_000
_OPTIONS = (
    "prefix",
    "partitions",
    "replication",
    "session_timeout_ms",
    "security_protocol",
    "sasl_mechanism",
    "store",
)


class KafkaTransport(Transport):
    """Kafka: one events topic, a consumer group and a retry topic per subscription.

    See the package docstring (:mod:`nerve.transports.kafka`) for the layout, commits,
    retries and takeovers, and docs/transport-kafka.md for running it against a real
    cluster.

    Args:
        url: ``kafka://host1:9092,host2:9092?prefix=myapp&replication=3``.

    Example:
        ```python
        bus = EventBus("kafka://kafka-1:9092,kafka-2:9092?prefix=myapp&replication=3",
                       store="postgresql://app@db/app")
        ```
    """

    durable = True
    state_on_host = True  # no lookups by event id: nerve's state goes to a file
    name = "Kafka"
    idle_poll = 0.05

    def __init__(self, url: str = "kafka://localhost:9092") -> None:
        options = dict(parse_qsl(urlsplit(url).query, keep_blank_values=True))
        unknown = sorted(set(options) - set(_OPTIONS))
        if unknown:
            raise ConfigurationError(
                f"unknown kafka URL option(s) {', '.join(unknown)} (known: {', '.join(_OPTIONS)})"
            )
        self.url = url
        self.prefix = options.get("prefix") or DEFAULT_PREFIX
        self.partitions = integer_option("kafka", options, "partitions", DEFAULT_PARTITIONS)
        self.replication = integer_option("kafka", options, "replication", 1)
        self.session_timeout_ms = integer_option(
            "kafka", options, "session_timeout_ms", DEFAULT_SESSION_TIMEOUT_MS
        )
        self.store_url = options.get("store")
        self.events_topic = EVENTS_TOPIC.format(prefix=self.prefix)
        self.cluster = Cluster(url, options)
        self._producer = Producer(self.cluster, self._check_open)
        self._subs: dict[str, GroupMember] = {}
        self._closed = False

    @classmethod
    def from_url(cls, url: str, settings: Settings) -> Self:
        transport = cls(url)
        transport.settings = settings
        return transport

    # lifecycle

    async def connect(self) -> None:
        if self._producer.connected:
            return
        self._closed = False
        await self._create_topics([self.events_topic])
        await self._producer.start()
        await self._producer.track(self.events_topic)

    async def close(self) -> list[Delivery]:
        self._closed = True
        subs = list(self._subs.values())
        pollers = [poller for sub in subs if (poller := sub.halt()) is not None]
        await asyncio.gather(*pollers, return_exceptions=True)
        for sub in subs:
            await sub.stop()
        await self._producer.stop()
        return []

    async def ping(self) -> None:
        await self._producer.ping()

    async def declare(self, subscription: str, pattern: str, *, start_from: StartFrom) -> None:
        self._producer.require()
        sub = GroupMember(
            subscription,
            pattern,
            start_from,
            prefix=self.prefix,
            events_topic=self.events_topic,
            cluster=self.cluster,
            producer=self._producer,
        )
        await self._create_topics([sub.retry_topic, sub.claims_topic], compact=sub.claims_topic)
        await self._producer.track(sub.retry_topic, sub.claims_topic)
        await sub.start(self.session_timeout_ms)
        self._subs[subscription] = sub
        if start_from == "latest":
            # "From now on" is fixed when the group first owns its partitions: join now and
            # wait for that, so events published after declare() returns are not skipped.
            sub.join()
            with suppress(TimeoutError):
                await asyncio.wait_for(sub.assigned.wait(), 3 * self.session_timeout_ms / 1000)

    async def _create_topics(self, topics: list[str], *, compact: str | None = None) -> None:
        await self.cluster.create_topics(
            topics, partitions=self.partitions, replication=self.replication, compact=compact
        )

    # publishing

    async def publish(
        self,
        event: Event[Any],
        *,
        subscription: str | None = None,
        timeout: float | None = None,
        bounded: bool = True,
    ) -> None:
        self._producer.require()
        if subscription is None:
            topic = self.events_topic
            headers = event_headers(event)
        else:
            topic = await self._retry_topic_of(subscription)
            headers = retry_headers(1, 0)  # a DLQ replay: attempt 1, due at once
        await self._producer.write(
            topic, event, headers, f"publishing {event.event_type} {event.event_id}"
        )

    async def publish_many(
        self, events: Sequence[Event[Any]], *, timeout: float | None = None, bounded: bool = True
    ) -> None:
        await self._producer.write_events(self.events_topic, events)

    async def _retry_topic_of(self, subscription: str) -> str:
        sub = self._subs.get(subscription)
        if sub is not None:
            return sub.retry_topic
        topic = retry_topic(self.prefix, subscription)
        if topic not in await self.cluster.list_topics():
            raise SubscriptionError(
                f"no subscription named {subscription!r} in {self.cluster.where}"
            )
        return topic

    # receiving and settling

    async def receive(self, subscription: str, max_items: int) -> Sequence[Delivery]:
        return await self._subs[subscription].receive(max_items)

    async def ack_many(self, deliveries: Sequence[Delivery]) -> None:
        batch = [d for d in deliveries if isinstance(d, KafkaDelivery) and d.claim()]
        if batch:
            await settle(batch)

    # what is left to do

    async def is_idle(self) -> bool:
        for sub in list(self._subs.values()):
            if not await sub.is_idle():
                return False
        return True

    async def lag(self, subscription: str) -> int | None:
        """Per partition of the events and retry topics: the end offset minus the group's
        committed offset (every process's work). Records of other event types count until
        the group reads past them, and committed offsets trail handling a little (the
        lowest offset in flight), so the figure is an upper bound. None for a subscription
        not declared here."""
        sub = self._subs.get(subscription)
        if sub is None:
            return None
        return await sub.lag()
