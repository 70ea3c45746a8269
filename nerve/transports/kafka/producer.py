"""The transport's one producer: every record nerve writes (events, retries, claims), and
the end offset of what this process wrote to each partition.

Those end offsets count towards idleness and lag: on Kafka the broker's end offsets are
exact (other processes' events included); a stand-in that reports them too low (Tansu)
leaves what this process knows.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from aiokafka import TopicPartition  # type: ignore[import-untyped]  # aiokafka ships no type hints

from nerve.events import Event
from nerve.exceptions import TransportError
from nerve.transports.kafka.cluster import Cluster
from nerve.transports.kafka.wire import Headers, event_headers, placement, value


class Producer:
    """Writes records for a transport once :meth:`start` has connected it.

    Args:
        cluster: where to.
        check_open: raises :class:`nerve.BusClosed` once the transport is closing; every
            write asks it first.
    """

    def __init__(self, cluster: Cluster, check_open: Callable[[], None]) -> None:
        self._cluster = cluster
        self._check_open = check_open
        self._client: Any = None  # AIOKafkaProducer, while connected
        self._published: dict[Any, int] = {}  # partition -> end offset of what we published

    @property
    def connected(self) -> bool:
        return self._client is not None

    def require(self) -> Any:
        """The connected aiokafka producer; BusClosed once closing, TransportError before
        :meth:`start`."""
        self._check_open()
        if self._client is None:
            raise TransportError(f"the Kafka transport for {self._cluster.where} is not connected")
        return self._client

    async def start(self) -> None:
        client = self._cluster.producer(acks="all")  # accepted means on every in-sync replica
        await self._cluster.start(client, "connecting")
        self._client = client

    async def stop(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await self._cluster.stop(client)

    async def track(self, *topics: str) -> None:
        """Have the producer keep metadata for ``topics``.

        aiokafka's producer starts by fetching every topic's metadata but tracks only the
        topics it was asked to look up; once it tracks one, its refreshes ask for those
        alone, and a topic it found at start (never looked up) drops out of its metadata:
        sends to it then fail with NotLeaderForPartitionError. Tracking each topic nerve
        writes to keeps them all.
        """
        with self._cluster.translate(f"loading metadata of {', '.join(topics)}"):
            await asyncio.gather(*(self._client.client.add_topic(t) for t in topics))

    async def ping(self) -> None:
        with self._cluster.translate("fetching metadata"):
            await self.require().client.fetch_all_metadata()

    # writing

    async def write(self, topic: str, event: Event[Any], headers: Headers, doing: str) -> None:
        """Write one event to ``topic``; return once every in-sync replica has it."""
        client = self.require()
        with self._cluster.translate(doing):
            sent = await client.send_and_wait(
                topic, value(event), headers=headers, **placement(event)
            )
        self._note(sent)

    async def write_events(self, topic: str, events: Sequence[Event[Any]]) -> None:
        """Write events to the events topic in one go, in order."""
        client = self.require()
        with self._cluster.translate(f"publishing {len(events)} events"):
            # send() queues into the producer's batches; the futures resolve once written.
            futures = [
                await client.send(
                    topic, value(event), **placement(event), headers=event_headers(event)
                )
                for event in events
            ]
            for sent in await asyncio.gather(*futures):
                self._note(sent)

    async def write_keyed(self, topic: str, records: Iterable[tuple[bytes, bytes]]) -> None:
        """Write ``(key, value)`` records to ``topic`` (a claims topic), all at once."""
        client = self.require()
        futures = [await client.send(topic, data, key=key) for key, data in records]
        await asyncio.gather(*futures)

    def _note(self, sent: Any) -> None:
        tp = TopicPartition(sent.topic, sent.partition)
        self._published[tp] = max(self._published.get(tp, 0), sent.offset + 1)

    # where the topics end

    async def partitions(self, *topics: str) -> list[Any]:
        """Every partition of ``topics``."""
        client = self.require()
        return [
            TopicPartition(topic, p) for topic in topics for p in await client.partitions_for(topic)
        ]

    def ends(self, tps: Iterable[Any], reported: dict[Any, int]) -> dict[Any, int]:
        """The end offset of each of ``tps``: the broker's (``reported``), or what this
        process wrote there when that is higher."""
        return {tp: max(reported.get(tp, 0), self._published.get(tp, 0)) for tp in tps}
