"""A subscription's consumer side: its member of the consumer group, the partitions it owns,
the deliveries it holds (ready now, or waiting for their due time) and its commits.

The group reads the events topic and the subscription's retry topic. A fetch loop (started
at the first receive) turns records into deliveries: events of other types are skipped by
their ``nerve-type`` header, retries not due yet wait in a heap. Before a batch is handed
out, its offsets are claimed (:mod:`nerve.transports.kafka.claims`); once settled, they are
committed (:mod:`nerve.transports.kafka.partition`).

Rebalances (:class:`Rebalance`): what a subscription's member does when its group takes
partitions from it or gives it some.

Revoked, it commits what is settled and keeps each partition's state: Kafka's eager
rebalances revoke every partition from every member, and a partition usually comes
straight back. Assigned one it had, with nobody's commit in between, it carries on where
it was; assigned a new one, it starts from the group's commit and reads the partition's
claims (:mod:`nerve.transports.kafka.claims`), so that what another member delivered
comes back as a later attempt.
"""

from __future__ import annotations

import asyncio
import heapq
import logging
from collections import deque
from collections.abc import Sequence
from typing import Any, Final

from aiokafka import ConsumerRebalanceListener  # type: ignore[import-untyped]  # no type hints
from aiokafka.errors import (  # type: ignore[import-untyped]  # aiokafka ships no type hints
    CommitFailedError,
    IllegalStateError,
    KafkaError,
)

from nerve import clock
from nerve.events import Event
from nerve.routing import compile_pattern
from nerve.subscription import StartFrom
from nerve.transports.base import Delivery
from nerve.transports.kafka.claims import read_claims, write_claims
from nerve.transports.kafka.cluster import CLOSE_TIMEOUT, FETCH_MAX_WAIT_MS, POLL_MS, Cluster
from nerve.transports.kafka.delivery import KafkaDelivery
from nerve.transports.kafka.partition import Partition
from nerve.transports.kafka.producer import Producer
from nerve.transports.kafka.wire import (
    HEADER_ATTEMPT,
    HEADER_DUE,
    HEADER_TYPE,
    claims_topic,
    group_id,
    retry_topic,
)

log = logging.getLogger("nerve")

#: Records held per subscription (ready, waiting for their due time) before fetching pauses.
BUFFER: Final = 1_000


class GroupMember:
    """One subscription declared on a transport, and this process's member of its group."""

    def __init__(
        self,
        name: str,
        pattern: str,
        start_from: StartFrom,
        *,
        prefix: str,
        events_topic: str,
        cluster: Cluster,
        producer: Producer,
    ) -> None:
        self.name = name
        self.pattern = compile_pattern(pattern)
        self.group = group_id(prefix, name)
        self.retry_topic = retry_topic(prefix, name)
        self.claims_topic = claims_topic(prefix, name)
        self.events_topic = events_topic
        self.start_from = start_from
        self.cluster = cluster
        self.producer = producer
        self.consumer: Any = None  # AIOKafkaConsumer
        self.parts: dict[Any, Partition] = {}
        self.revoked: dict[Any, Partition] = {}  # may come back at once
        self.ready: deque[KafkaDelivery] = deque()  # due, not yet received
        self.waiting: list[tuple[float, int, KafkaDelivery]] = []  # a heap
        self.wake = asyncio.Event()
        self.assigned = asyncio.Event()  # a first assignment came
        self.commit_lock = asyncio.Lock()
        self.assigning = False  # partitions are paused while their state is loaded
        self.poller: asyncio.Task[None] | None = None
        self.closed = False  # halted: receive() returns ()
        self._seq = 0  # ties in the waiting heap

    # lifecycle

    async def start(self, session_timeout_ms: int) -> None:
        """Start the consumer: not subscribed yet, it reads offsets and joins no group."""
        consumer = self.cluster.consumer(
            group_id=self.group,
            enable_auto_commit=False,  # committed only after handling, below
            auto_offset_reset="earliest",  # "latest" is applied per partition on assignment
            session_timeout_ms=session_timeout_ms,
            heartbeat_interval_ms=max(100, session_timeout_ms // 4),
            # A broker that does not answer a waiting fetch as soon as records arrive (Tansu)
            # adds up to this much latency to every hop of a chain.
            fetch_max_wait_ms=FETCH_MAX_WAIT_MS,
        )
        self.consumer = consumer
        await self.cluster.start(consumer, f"declaring {self.name!r}")

    def join(self) -> None:
        """Join the subscription's group and start fetching (at the first receive).

        A bus that declares its subscriptions without running them (a publisher) joins no
        group, so it never holds partitions its workers need.
        """
        if self.poller is not None:
            return
        self.consumer.subscribe([self.events_topic, self.retry_topic], listener=Rebalance(self))
        self.poller = asyncio.create_task(self._poll(), name=f"nerve-kafka:{self.name}")

    def halt(self) -> asyncio.Task[None] | None:
        """Stop handing out deliveries (receive() returns ()) and fetching; return the
        fetch loop, cancelled, to be awaited before :meth:`stop`."""
        self.closed = True
        self.wake.set()
        if self.poller is not None:
            self.poller.cancel()
        return self.poller

    async def stop(self) -> None:
        """Commit what is settled and leave the group."""
        self.poller = None
        self.ready.clear()
        self.waiting.clear()
        if self.consumer is None:
            return
        try:
            # What is settled is committed; what is in flight stays uncommitted and
            # goes to the next member (leaving the group starts that rebalance now).
            async with asyncio.timeout(CLOSE_TIMEOUT):
                await self.commit()
        except TimeoutError:
            log.warning("%s: last commit timed out; the next owner redelivers", self.name)
        finally:
            await self.cluster.stop(self.consumer)
            self.consumer = None

    # receiving

    async def receive(self, max_items: int) -> Sequence[Delivery]:
        if not self.closed:
            self.join()
        while not self.closed:
            while self.ready:
                batch: list[Delivery] = []
                while self.ready and len(batch) < max_items:
                    delivery = self.ready.popleft()
                    if not delivery.partition.gone:
                        batch.append(delivery)
                if batch:
                    return batch
            self.wake.clear()
            await self.wake.wait()
        return ()

    async def _poll(self) -> None:
        """Fetch records into ``ready``, keeping retries until due; commit as it goes."""
        consumer = self.consumer
        failures = 0
        while True:
            try:
                room = BUFFER - len(self.ready) - len(self.waiting)
                assigned = consumer.assignment()
                if room <= 0:
                    consumer.pause(*assigned)  # keep polling: it keeps us in the group
                elif consumer.paused() and not self.assigning:
                    consumer.resume(*consumer.paused())
                wait_ms = POLL_MS
                if self.waiting:
                    until_due = self.waiting[0][0] - clock.time()
                    wait_ms = max(0, min(wait_ms, int(until_due * 1000)))
                batch = await consumer.getmany(timeout_ms=wait_ms, max_records=max(1, room))
                fresh = await self._take(batch)
                self._promote()
                if fresh or self.ready:
                    self.wake.set()
                await self.commit()
                failures = 0
            except asyncio.CancelledError:
                raise
            except Exception:
                failures += 1
                delay = min(5.0, 0.1 * 2**failures)
                log.warning(
                    "%s: fetching from Kafka at %s failed; retrying in %.1fs",
                    self.name,
                    self.cluster.where,
                    delay,
                    exc_info=True,
                )
                await clock.sleep(delay)

    async def _take(self, batch: dict[Any, list[Any]]) -> bool:
        """Turn fetched records into deliveries; True if any is ready now."""
        now = clock.time()
        taken: list[tuple[float, KafkaDelivery]] = []
        claims: dict[Any, tuple[Partition, int]] = {}
        for tp, records in batch.items():
            part = self.parts.get(tp)
            if part is None:
                if tp in self.consumer.assignment():  # assigned, its state not loaded yet
                    self.consumer.seek(tp, records[0].offset)
                continue
            retry = tp.topic == self.retry_topic
            for record in records:
                offset = record.offset
                part.next = offset + 1
                if offset in part.in_flight:
                    continue  # read again after a rewind, and still in flight here
                headers = {k: v.decode() for k, v in record.headers}
                if retry:
                    attempt = int(headers.get(HEADER_ATTEMPT, "1"))
                    due = int(headers.get(HEADER_DUE, "0")) / 1000
                elif self.pattern.fullmatch("." + headers.get(HEADER_TYPE, "")):
                    attempt, due = 1, 0.0
                else:
                    continue  # not for this subscription: settled by reading past it
                try:
                    event = Event.model_validate_json(record.value)
                except ValueError:
                    log.exception("%s: dropping malformed record %s@%d", self.name, tp, offset)
                    continue
                attempt += part.delivered_before(offset)
                part.in_flight.add(offset)
                taken.append((due, KafkaDelivery(self, event, attempt, part, offset)))
                if offset > part.claimed:
                    claims[tp] = (part, offset)
        if claims:
            await write_claims(self.producer, self.claims_topic, claims)  # before any handler
        fresh = False
        for due, delivery in taken:
            if delivery.partition.gone:
                continue  # went to another member while claiming
            if due > now:
                self._seq += 1
                heapq.heappush(self.waiting, (due, self._seq, delivery))
            else:
                self.ready.append(delivery)
                fresh = True
        return fresh

    def _promote(self) -> None:
        now = clock.time()
        while self.waiting and self.waiting[0][0] <= now:
            self.ready.append(heapq.heappop(self.waiting)[2])

    # committing

    async def commit(self) -> None:
        """Commit, per assigned partition, the offset below which everything is settled."""
        async with self.commit_lock:
            offsets = {}
            for tp, part in self.parts.items():
                point = part.commit_point()
                if point is not None and point != part.committed:
                    offsets[tp] = point
            if not offsets or self.consumer is None:
                return
            try:
                await self.consumer.commit(offsets)
            except (CommitFailedError, IllegalStateError) as exc:
                # A rebalance is under way: the next owner starts from the last commit.
                log.info("%s: commit skipped during a rebalance: %s", self.name, exc)
                return
            except KafkaError as exc:
                log.warning(
                    "%s: commit to Kafka at %s failed: %s", self.name, self.cluster.where, exc
                )
                return
            for tp, point in offsets.items():
                owned = self.parts.get(tp)
                if owned is not None:
                    owned.committed = point

    def starts_at_end(self, tp: Any) -> bool:
        """Whether the group starts ``tp`` at its end when it has no commit there."""
        return self.start_from == "latest" and tp.topic == self.events_topic

    # what is left to do

    async def is_idle(self) -> bool:
        """Nothing held here, and the group has committed up to the end of every partition."""
        if self.ready or self.waiting:
            return False
        if any(part.in_flight for part in self.parts.values()):
            return False
        consumer = self.consumer
        if consumer is None:
            return True
        tps = await self.producer.partitions(self.events_topic, self.retry_topic)
        with self.cluster.translate("checking for pending work"):
            ends = self.producer.ends(tps, await consumer.end_offsets(tps))
            for tp, end in ends.items():
                if tp in self.parts:
                    highwater = consumer.highwater(tp)
                    end = max(end, highwater or 0)
                    done = self.parts[tp].committed
                else:
                    done = await consumer.committed(tp)
                if end > (done or 0):
                    return False
        return True

    async def lag(self) -> int | None:
        """The end offsets minus the group's committed ones (see ``KafkaTransport.lag``)."""
        consumer = self.consumer
        if consumer is None:
            return None
        with self.cluster.translate(f"reading the lag of {self.name!r}"):
            tps = await self.producer.partitions(self.events_topic, self.retry_topic)
            ends = self.producer.ends(tps, await consumer.end_offsets(tps))
            starts = await consumer.beginning_offsets(tps)
            commits = await asyncio.gather(*(consumer.committed(tp) for tp in tps))
        total = 0
        for tp, done in zip(tps, commits, strict=True):
            end = ends[tp]
            if done is None:  # never committed: the group starts where start_from says
                done = end if self.starts_at_end(tp) else starts.get(tp, 0)
            total += max(0, end - done)
        return total


class Rebalance(ConsumerRebalanceListener):  # type: ignore[misc]  # untyped base class
    """Handles a subscription's rebalance callbacks (never raising)."""

    def __init__(self, sub: GroupMember) -> None:
        self._sub = sub

    async def on_partitions_revoked(self, revoked: Any) -> None:
        try:
            await self._revoked(list(revoked))
        except Exception:  # aiokafka would log and go on; say what it was
            log.exception("%s: handling revoked partitions failed", self._sub.name)

    async def on_partitions_assigned(self, assigned: Any) -> None:
        try:
            await self._assigned(list(assigned))
        except Exception:
            log.exception("%s: handling assigned partitions failed", self._sub.name)
        self._sub.assigned.set()

    async def _revoked(self, revoked: list[Any]) -> None:
        """Commit what is settled; keep the state in case the partitions come straight back."""
        sub = self._sub
        gone = {tp for tp in revoked if tp in sub.parts}
        if not gone:
            return
        await sub.commit()
        for tp in gone:
            part = sub.parts.pop(tp)
            part.revoked = True
            sub.revoked[tp] = part
        # Deliveries not handed out yet stay: the partition usually comes straight back
        # (the assignment favours the oldest members), and handlers keep working meanwhile.

    async def _assigned(self, assigned: list[Any]) -> None:
        sub = self._sub
        consumer = sub.consumer
        previous, sub.revoked = sub.revoked, {}
        # Nothing is fetched until every partition's state (claims included) is known.
        sub.assigning = True
        consumer.pause(*assigned)
        try:
            parts: dict[Any, Partition] = {}
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
                part = parts[tp] = Partition(tp=tp, next=committed, committed=committed)
                fresh.append(tp)
                if committed is None and sub.starts_at_end(tp):
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
                found = await read_claims(sub.cluster, sub.claims_topic, fresh, sub.name)
                for tp, claim in found.items():
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
        await sub.commit()  # "latest" positions become the group's
