"""Reading one subscription: the new entries of its two streams, and the entries it takes
over from consumers that died holding them.

The subscription's consumer group reads the events stream and the subscription's direct
stream in one XREADGROUP (so an XADD to either wakes a blocked reader). Entries of the
events stream whose type the pattern does not match are acknowledged in bulk on the spot
and never handed out.

Dead consumers: Redis redelivers nothing on its own, so every ``claim_interval`` seconds
a reader runs XAUTOCLAIM, taking over entries idle for ``lease`` seconds. An entry taken
over is attempt ``delivery count`` (a takeover spends a retry). The consumers such a
pass finds idle for an hour and holding nothing (crashed processes') are deleted.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Iterable
from typing import Any, Final

from redis.asyncio import Redis

from nerve import clock
from nerve.events import Event
from nerve.routing import compile_pattern
from nerve.transports.redis.delivery import InFlight, RedisDelivery
from nerve.transports.redis.keys import FIELD_ATTEMPT, FIELD_EVENT, FIELD_TYPE
from nerve.transports.redis.link import Link

log = logging.getLogger("nerve")

#: Consumers with nothing pending and idle this long are deleted (crashed processes').
REAP_IDLE_MS: Final = 3_600_000


class Reader:
    """One subscription as this consumer reads it.

    Attributes:
        name: the subscription: its consumer group on both streams.
        direct: its direct stream (retries and replays).
        delayed: its delayed set (retries waiting for their delay).
        backlog: deliveries read and not handed out yet (held already).
    """

    def __init__(
        self,
        link: Link,
        held: InFlight,
        name: str,
        pattern: str,
        *,
        lease: float,
        claim_interval: float,
        block_ms: int,
    ) -> None:
        self.name = name
        self.direct = link.direct_key(name)
        self.delayed = link.delayed_key(name)
        self.backlog: deque[RedisDelivery] = deque()
        self._pattern = compile_pattern(pattern)
        self._link = link
        self._held = held
        self._lease = lease
        self._claim_interval = claim_interval
        self._block_ms = block_ms
        self._next_claim = 0.0
        self._cursors: dict[str, str] = {}  # XAUTOCLAIM cursor per stream

    def matches(self, event_type: str) -> bool:
        """Whether the subscription's pattern matches ``event_type``."""
        return self._pattern.fullmatch("." + event_type) is not None

    def pop(self, max_items: int) -> list[RedisDelivery]:
        """Up to ``max_items`` deliveries from the backlog, oldest first."""
        return [self.backlog.popleft() for _ in range(min(max_items, len(self.backlog)))]

    async def read(self, max_items: int) -> None:
        """Read into the backlog, which may stay empty: the entries a takeover pass finds
        when one is due, else new entries (waiting up to ``block_ms`` for them).

        A failure to read new entries is raised as redis-py's (the transport may be
        closing); the others as :class:`nerve.TransportError`.
        """
        client = self._link.client()
        if clock.monotonic() >= self._next_claim:
            self._next_claim = clock.monotonic() + self._claim_interval
            if await self._take_over(client, max(max_items, 100)):
                return
        reply: Any = await client.xreadgroup(
            self.name,
            self._link.consumer,
            {self._link.events_key: ">", self.direct: ">"},
            count=max_items,
            block=self._block_ms,
        )
        for stream, entries in reply or ():
            await self._take(client, stream, entries, None)

    async def reap(self, client: Redis, idle_ms: int, *, only: str = "", but: str = "") -> None:
        """Delete the group's consumers holding nothing and idle ``idle_ms`` or more: only
        the one named ``only``, or (``only`` empty) any but ``but``."""
        await self._link.scripts.reap(
            keys=[self._link.events_key, self.direct],
            args=[self.name, idle_ms, only, but],
            client=client,
        )

    async def _take(
        self,
        client: Redis,
        stream: str,
        entries: Iterable[tuple[str | None, dict[str, str] | None]],
        delivered: dict[str, int] | None,
    ) -> None:
        """Turn entries into deliveries in the backlog; acknowledge the non-matching.

        ``delivered``: delivery counts of entries taken over (None: first deliveries).
        """
        skipped: list[str] = []
        direct = stream == self.direct
        for entry_id, fields in entries:
            if entry_id is None or fields is None:
                continue  # deleted while pending (Redis 6.2 reports them as nil)
            if direct:
                attempt = int(fields.get(FIELD_ATTEMPT, "1"))
            else:
                if not self.matches(fields.get(FIELD_TYPE, "")):
                    skipped.append(entry_id)
                    continue
                attempt = 1
            if delivered is not None:
                attempt += delivered.get(entry_id, 1) - 1
            try:
                event = Event.model_validate_json(fields[FIELD_EVENT])
            except (KeyError, ValueError):
                log.exception("%s: dropping malformed entry %s of %s", self.name, entry_id, stream)
                skipped.append(entry_id)
                continue
            self.backlog.append(self._held.hold(event, self.name, attempt, stream, entry_id))
        if skipped:
            with self._link.translate("acknowledging non-matching entries"):
                async with client.pipeline(transaction=False) as pipe:
                    self._link.acknowledge(pipe, stream, self.name, skipped)
                    await pipe.execute()

    async def _take_over(self, client: Redis, count: int) -> bool:
        """Take over entries idle past the lease (dead consumers'); True if any came."""
        lease_ms = int(self._lease * 1000)
        found = False
        with self._link.translate(f"taking over entries of {self.name!r}"):
            for stream in (self._link.events_key, self.direct):
                start = self._cursors.get(stream, "0-0")
                reply = await client.xautoclaim(
                    stream, self.name, self._link.consumer, lease_ms, start, count=count
                )
                cursor, entries = reply[0], reply[1]
                self._cursors[stream] = cursor
                if cursor != "0-0":
                    self._next_claim = 0.0  # more to scan: go on at the next receive
                entries = [(i, f) for i, f in entries if i is not None]
                if not entries:
                    continue
                async with client.pipeline(transaction=False) as pipe:
                    for entry_id, _ in entries:
                        pipe.xpending_range(stream, self.name, entry_id, entry_id, 1)
                    pending = await pipe.execute()
                counts = {p[0]["message_id"]: int(p[0]["times_delivered"]) for p in pending if p}
                log.info(
                    "%s: took over %d entries idle for %.1fs or more",
                    self.name,
                    len(entries),
                    self._lease,
                )
                await self._take(client, stream, entries, counts)
                found = True
            await self.reap(client, REAP_IDLE_MS, but=self._link.consumer)
        return found
