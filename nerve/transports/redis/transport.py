"""The Redis transport itself: its options, connecting and closing, declaring, publishing,
and the tasks that run while it is connected (moving due retries, trimming the events
stream, keeping in-flight entries claimed). How it reads is :mod:`.receiving`'s, how it
settles :mod:`.delivery`'s; the package's docstring gives the layout and the reasons.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any, Final, Self

from redis.exceptions import RedisError, ResponseError

from nerve import clock
from nerve.connections.redis import DEFAULT_PREFIX, redis_client, redis_options
from nerve.events import Event
from nerve.exceptions import SubscriptionError, TransportError
from nerve.settings import Settings
from nerve.subscription import StartFrom
from nerve.transports.base import Delivery, Transport, raise_if_cancelled
from nerve.transports.redis.delivery import InFlight
from nerve.transports.redis.keys import FIELD_ATTEMPT, FIELD_EVENT, FIELD_TYPE
from nerve.transports.redis.link import Link
from nerve.transports.redis.receiving import Reader
from nerve.urls import number_option

log = logging.getLogger("nerve")

DEFAULT_BLOCK_MS: Final = 1000
DEFAULT_LEASE: Final = 30.0
#: Default retention of settled events in the events stream: a week, as on SQLite.
DEFAULT_RETENTION: Final = 7 * 24 * 3600.0

#: How often the delayed sets are checked for retries another process left behind.
PROMOTE_POLL: Final = 0.5
#: Retries moved to a direct stream per script call.
PROMOTE_BATCH: Final = 500
#: How often the events stream is trimmed.
TRIM_INTERVAL: Final = 60.0
#: Events sent per pipeline by publish_many.
PUBLISH_CHUNK: Final = 1000
#: Unread entries of the events stream :meth:`RedisTransport.lag` reads, by type, per call.
LAG_SCAN: Final = 10_000


class RedisTransport(Transport):
    """Redis Streams: one stream of events, a consumer group per subscription.

    See the package docstring for the layout and what a lease does and does not promise.

    Args:
        url: ``redis://host:port/db?prefix=nerve&lease=30``.
        prefix: prefix of every key (default from the URL, else ``nerve``).
        block_ms: longest wait of one XREADGROUP, in milliseconds.
        lease: seconds an entry may sit unacknowledged with a dead consumer before
            another consumer takes it over.
        claim_interval: seconds between takeover passes (default ``lease / 2``).

    Example:
        ```python
        bus = EventBus("redis://localhost:6379/0?prefix=myapp")
        ```
    """

    durable = True
    name = "Redis"

    def __init__(
        self,
        url: str = "redis://localhost:6379/0",
        *,
        prefix: str | None = None,
        block_ms: int | None = None,
        lease: float | None = None,
        claim_interval: float | None = None,
        retention: float | None = None,
    ) -> None:
        self.url = url
        self._client_url, options = redis_options(url)
        self.prefix = prefix or options.get("prefix") or DEFAULT_PREFIX
        self.block_ms = block_ms or int(
            number_option("redis", options, "block_ms", DEFAULT_BLOCK_MS)
        )
        self.lease = lease or number_option("redis", options, "lease", DEFAULT_LEASE)
        self.claim_interval = claim_interval or number_option(
            "redis", options, "claim_interval", self.lease / 2
        )
        self.retention = (
            retention
            if retention is not None
            else number_option("redis", options, "retention", DEFAULT_RETENTION, minimum=0.0)
        )
        self._link = Link(url, self.prefix, self._check_open)
        self.events_key = self._link.events_key
        self.consumer = self._link.consumer
        self._wake = asyncio.Event()  # a local nack: the promoter recomputes its sleep
        self._in_flight = InFlight(self._link, self._wake.set)  # read, not settled
        self._readers: dict[str, Reader] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._closed = False

    @classmethod
    def from_url(cls, url: str, settings: Settings) -> Self:
        return cls(url)

    def own_store_url(self) -> str:
        return self.url

    # lifecycle

    async def connect(self) -> None:
        if self._link.connected:
            return
        client = redis_client(
            self._client_url,
            # A blocked XREADGROUP must not look like a dead socket.
            socket_timeout=max(10.0, 2 * self.block_ms / 1000),
        )
        try:
            await client.ping()
        except RedisError as exc:
            await client.aclose()
            raise TransportError(f"cannot reach Redis at {self._link.where}: {exc}") from exc
        self._link.attach(client)
        self._closed = False
        self._tasks = [
            asyncio.create_task(self._promote_loop(), name="nerve-redis-promote"),
            asyncio.create_task(self._refresh_loop(), name="nerve-redis-refresh"),
        ]

    async def close(self) -> list[Delivery]:
        self._closed = True
        self._wake.set()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        client = self._link.detach()
        if client is None:
            return []
        unsettled = self._in_flight.let_go()  # the readers' backlogs too: held once read
        for reader in self._readers.values():
            reader.backlog.clear()
        try:
            # Left pending for redelivery (durable), but made claimable at once instead
            # of after the lease; then this consumer's name goes if it holds nothing.
            await self._in_flight.release(client, unsettled)
            for reader in self._readers.values():
                await reader.reap(client, 0, only=self.consumer)
        except RedisError:
            log.warning(
                "could not release %d in-flight deliveries; they return after the lease",
                len(unsettled),
                exc_info=True,
            )
        finally:
            await client.aclose()
        return []

    async def declare(self, subscription: str, pattern: str, *, start_from: StartFrom) -> None:
        reader = Reader(
            self._link,
            self._in_flight,
            subscription,
            pattern,
            lease=self.lease,
            claim_interval=self.claim_interval,
            block_ms=self.block_ms,
        )
        client = self._link.client()
        with self._link.translate(f"declaring {subscription!r}"):
            for key, start in (
                (self.events_key, "0" if start_from == "earliest" else "$"),
                (reader.direct, "0"),
            ):
                try:
                    await client.xgroup_create(key, subscription, id=start, mkstream=True)
                except ResponseError as exc:
                    if "BUSYGROUP" not in str(exc):
                        raise  # the group exists already: attach to it, keep its position
        self._readers[subscription] = reader

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
        client = self._link.client()
        body = event.model_dump_json()
        with self._link.translate(f"publishing {event.event_type} {event.event_id}"):
            if subscription is None:
                await client.xadd(
                    self.events_key, {FIELD_TYPE: event.event_type, FIELD_EVENT: body}
                )
            else:
                direct = self._link.direct_key(subscription)
                if subscription not in self._readers and not await client.exists(direct):
                    raise SubscriptionError(
                        f"no subscription named {subscription!r} in {self._link.where}"
                    )
                await client.xadd(direct, {FIELD_ATTEMPT: "1", FIELD_EVENT: body})
        raise_if_cancelled()

    async def publish_many(
        self, events: Sequence[Event[Any]], *, timeout: float | None = None, bounded: bool = True
    ) -> None:
        self._check_open()
        client = self._link.client()
        with self._link.translate(f"publishing {len(events)} events"):
            for start in range(0, len(events), PUBLISH_CHUNK):
                args: list[str] = []
                for event in events[start : start + PUBLISH_CHUNK]:
                    args.append(event.event_type)
                    args.append(event.model_dump_json())
                await self._link.scripts.publish(keys=[self.events_key], args=args, client=client)
                raise_if_cancelled()

    # receiving and settling

    async def receive(self, subscription: str, max_items: int) -> Sequence[Delivery]:
        reader = self._readers[subscription]
        while not self._closed:
            raise_if_cancelled()  # or stop() waits for ever
            if reader.backlog:
                return reader.pop(max_items)
            try:
                await reader.read(max_items)
            except RedisError as exc:
                if self._closed:
                    break
                raise self._link.failure("receive", exc) from exc
        return ()

    async def ack_many(self, deliveries: Sequence[Delivery]) -> None:
        await self._in_flight.ack_many(deliveries)

    # background tasks

    async def trim(self) -> int:
        """Delete settled events older than ``retention`` from the events stream.

        Never deletes an entry a consumer group still needs: one pending (delivered, not
        acknowledged) or not yet read. Runs every minute while connected; returns how
        many entries went.
        """
        with self._link.translate("trimming the events stream"):
            client = self._link.client()
            deleted: Any = await self._link.scripts.trim(
                keys=[self.events_key], args=[int(self.retention * 1000)], client=client
            )
        return int(deleted)

    async def _promote_loop(self) -> None:
        """Move due retries into the direct streams, sleeping until the next is due."""
        next_trim = clock.monotonic() + TRIM_INTERVAL
        # Not `while True`: redis-py may swallow the cancellation close() sends (see
        # receive), so the loop also ends on the flag close() sets first.
        while not self._closed:
            if clock.monotonic() >= next_trim:
                next_trim = clock.monotonic() + TRIM_INTERVAL
                try:
                    await self.trim()
                except TransportError:
                    log.warning("could not trim the events stream", exc_info=True)
            self._wake.clear()  # before reading the sets: a nack from now on wakes us
            sleep = PROMOTE_POLL
            try:
                async with self._link.client().pipeline(transaction=False) as pipe:
                    for reader in list(self._readers.values()):
                        await self._link.scripts.promote(
                            keys=[reader.delayed, reader.direct], args=[PROMOTE_BATCH], client=pipe
                        )
                    waits = await pipe.execute()
                due = [int(ms) for ms in waits if int(ms) >= 0]
                if due:
                    sleep = min(sleep, min(due) / 1000)
            except (RedisError, TransportError):
                log.warning("could not move due retries; trying again", exc_info=True)
            if sleep > 0:
                await self._sleep_unless_woken(sleep)

    async def _sleep_unless_woken(self, seconds: float) -> None:
        """Wait ``seconds``, or less if a nack (or close) sets the wake flag."""
        timer = clock.call_later(seconds, self._wake.set)
        try:
            await self._wake.wait()
        finally:
            timer.cancel()

    async def _refresh_loop(self) -> None:
        """Reset the idle time of in-flight entries, so no one takes them over."""
        while not self._closed:
            await clock.sleep(self.lease / 3)
            try:
                await self._in_flight.refresh()
            except (RedisError, TransportError):
                log.warning("could not refresh the claims of in-flight deliveries", exc_info=True)

    # idleness

    async def is_idle(self) -> bool:
        readers = list(self._readers.values())
        if not readers:
            return True
        with self._link.translate("checking for pending work"):
            # One MULTI: a consistent snapshot, so a nack (atomic) never looks idle.
            async with self._link.client().pipeline(transaction=True) as pipe:
                pipe.xinfo_stream(self.events_key)
                pipe.xinfo_groups(self.events_key)
                for reader in readers:
                    pipe.xlen(reader.direct)
                    pipe.zcard(reader.delayed)
                replies = await pipe.execute()
        last = _entry_order(replies[0]["last-generated-id"])
        groups = {g["name"]: g for g in replies[1]}
        for index, reader in enumerate(readers):
            group = groups.get(reader.name)
            if group is None:
                continue  # deleted behind our back: nothing for us to wait for
            if group["pending"] or _entry_order(group["last-delivered-id"]) < last:
                return False
            if replies[2 + 2 * index] or replies[3 + 2 * index]:  # direct stream, delayed set
                return False
        return True

    async def lag(self, subscription: str) -> int | None:
        """What the group has not read of the events stream and its pattern matches, plus
        its pending entries, its direct stream and its delayed retries: every process's.

        The unread part of the events stream is read by type up to :data:`LAG_SCAN`
        entries; past that, the rest counts whole (whatever its types): an upper bound.
        None for a subscription not declared by this transport (its pattern is not
        stored in Redis).
        """
        reader = self._readers.get(subscription)
        if reader is None:
            return None
        with self._link.translate(f"reading the lag of {subscription!r}"):
            client = self._link.client()
            reply: Any = await self._link.scripts.lag(
                keys=[self.events_key, reader.direct, reader.delayed],
                args=[subscription, LAG_SCAN],
                client=client,
            )
        if not reply:
            return None
        pending, direct, delayed, rest = (int(x) for x in reply[:4])
        unread = sum(
            int(n) for t, n in zip(reply[4::2], reply[5::2], strict=True) if reader.matches(t)
        )
        return pending + direct + delayed + unread + max(rest, 0)

    async def ping(self) -> None:
        with self._link.translate("pinging"):
            await self._link.client().ping()


def _entry_order(entry_id: str) -> tuple[int, int]:
    """A stream entry id (``ms-seq``) as numbers, to compare two ids."""
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)
