"""``redis://host:port/db``: Redis Streams (Redis >= 6.2), a consumer group per subscription.

Layout (every key under ``prefix``, default ``nerve``; the names are the ``*_KEY`` constants
below)::

    {prefix}:events              one stream holding every published event
    {prefix}:sub:{name}:direct   a stream per subscription: retries and DLQ replays
    {prefix}:sub:{name}:delayed  a sorted set per subscription: retries waiting for their delay

Why one stream for all events rather than a stream per event type: a subscription's pattern
(``github.#``) must also match event types first published after its workers started, and
a new subscription must see events published before it existed (``start_from="earliest"``).
With one stream, each subscription's consumer group (created by :meth:`declare` at ``0`` or
``$``) reads everything and filters by pattern; entries that do not match are acknowledged
in bulk on the spot and never handed out. The price is that every group reads every event:
fine for the tens of subscriptions an agent system runs, not for thousands.

Why a second stream per subscription: a retry or a replay is for one subscription only.
:meth:`RedisDelivery.nack` acknowledges the original entry and, in the same Lua script,
puts the event with its next attempt number into the subscription's ``delayed`` set,
scored by its due time (Redis server time, so hosts' clocks do not matter). A task moves
due entries into the ``direct`` stream, which the same consumer group reads next to the
main one (one XREADGROUP over both keys, so an XADD to either wakes a blocked reader).
Direct entries are deleted once settled: only one group reads them.

Dead consumers: each transport instance is a consumer of its own (host-pid-random). Redis
redelivers nothing on its own, so :meth:`RedisTransport.receive` runs XAUTOCLAIM every
``claim_interval`` seconds, taking over entries idle for ``lease`` seconds. An entry taken
over is attempt ``delivery count`` (a takeover spends a retry). While a
delivery is in flight here, a background task resets its idle time every ``lease / 3``
(``XCLAIM ... JUSTID``, only while this consumer still owns it), so a long LLM call is not
taken over. A claim is not a lease: a consumer that stalls past ``lease`` (a frozen
process) can still finish and acknowledge after another one took the entry over; the
event is then handled twice, which the idempotency store catches in most cases (at least
once, never lost).

Trimming: Redis's own ``MAXLEN`` trim deletes entries even when they are pending or not
yet read, so nerve never publishes with it. Instead, every minute, :meth:`trim` runs
``XTRIM ... MINID`` at the oldest of (the retention horizon, the first pending entry of
each group, the last entry each group read): settled events older than ``retention`` go,
an unprocessed one never does. A consumer group nobody reads any more (a subscription
removed from the code) holds trimming back: delete it with ``XGROUP DESTROY``.
``publish`` never waits: Redis holds the pending work, so ``timeout`` and ``bounded``
are accepted and ignored. A cancellation that redis-py swallows mid-command is raised
again once the command returns (``publish``, ``publish_many``, ``receive``). Keys of one
subscription live in different hash slots: Redis Cluster is not supported.

URL options (query string): ``prefix`` (key prefix), ``block_ms`` (longest XREADGROUP
block, default 1000), ``lease`` (seconds, default 30), ``claim_interval`` (seconds,
default ``lease / 2``), ``retention`` (seconds settled events stay, default a week).
Other query options go to redis-py.

Connections: each client (the transport's, the store's) has a pool of up to
``max_connections`` connections (default 500, a redis-py URL option), one per command in
progress. A command that finds every connection busy waits up to 20 s for one, instead of
failing at once as redis-py 8's default pool does past 100 (a hundred concurrent
``publish`` calls failed with "Too many connections").
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import socket
import uuid
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from typing import Any, Final, Self

from redis.asyncio import Redis
from redis.exceptions import RedisError, ResponseError

from nerve.connections.redis import DEFAULT_PREFIX, redis_client, redis_options, redis_where
from nerve.events import Event
from nerve.exceptions import SubscriptionError, TransportError
from nerve.routing import compile_pattern
from nerve.settings import Settings
from nerve.subscription import StartFrom
from nerve.transports.base import Delivery, Transport, raise_if_cancelled
from nerve.urls import number_option

log = logging.getLogger("nerve")

# Wire names, in one place.
EVENTS_KEY: Final = "{prefix}:events"
DIRECT_KEY: Final = "{prefix}:sub:{name}:direct"
DELAYED_KEY: Final = "{prefix}:sub:{name}:delayed"
FIELD_TYPE: Final = "t"  # event type, so non-matching entries are skipped without parsing
FIELD_EVENT: Final = "e"  # the event as JSON
FIELD_ATTEMPT: Final = "a"  # attempt number, on direct entries

DEFAULT_BLOCK_MS: Final = 1000
DEFAULT_LEASE: Final = 30.0
#: How often the delayed sets are checked for retries another process left behind.
PROMOTE_POLL: Final = 0.5
#: Retries moved to a direct stream per script call.
PROMOTE_BATCH: Final = 500
#: Events sent per pipeline by publish_many.
PUBLISH_CHUNK: Final = 1000
#: wait_idle polls this often.
#: Consumers with nothing pending and idle this long are deleted (crashed processes').
REAP_IDLE_MS: Final = 3_600_000
#: Idle time given to in-flight entries released at close: claimable at once by anyone.
RELEASED_IDLE_MS: Final = 365 * 24 * 3_600_000

#: Default retention of settled events in the events stream: a week, as on SQLite.
DEFAULT_RETENTION: Final = 7 * 24 * 3600.0
#: How often the events stream is trimmed.
TRIM_INTERVAL: Final = 60.0

# Acknowledge the original entry and requeue the event for this subscription, atomically.
# Returns -1 (and requeues nothing) when the entry was no longer pending: someone settled it.
_NACK = """
if redis.call('XACK', KEYS[1], ARGV[1], ARGV[2]) == 0 then return -1 end
if ARGV[6] == '1' then redis.call('XDEL', KEYS[1], ARGV[2]) end
local delay = tonumber(ARGV[3])
if delay <= 0 then
  redis.call('XADD', KEYS[2], '*', 'a', ARGV[4], 'e', ARGV[5])
  return 0
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZADD', KEYS[3], now + delay, ARGV[4] .. ' ' .. ARGV[5])
return delay
"""

# Append events to the stream KEYS[1]: ARGV holds (type, event JSON) pairs (the fields
# FIELD_TYPE and FIELD_EVENT). One command
# for a batch: redis-py packs each command in Python, which costs more than an XADD.
_PUBLISH = """
for i = 1, #ARGV, 2 do
  redis.call('XADD', KEYS[1], '*', 't', ARGV[i], 'e', ARGV[i + 1])
end
return #ARGV / 2
"""

# Move due retries from the delayed set to the direct stream; return the milliseconds until
# the next one is due, or -1 when none waits.
_PROMOTE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, tonumber(ARGV[1]))
for _, member in ipairs(due) do
  local sep = string.find(member, ' ', 1, true)
  redis.call('XADD', KEYS[2], '*', 'a', string.sub(member, 1, sep - 1),
             'e', string.sub(member, sep + 1))
  redis.call('ZREM', KEYS[1], member)
end
local nxt = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
if #nxt == 0 then return -1 end
return math.max(0, tonumber(nxt[2]) - now)
"""

# Set the idle time of the entries this consumer still owns (0: keep them; large: release
# them). Checking the owner first keeps a stalled consumer from taking an entry back.
_TOUCH = """
local n = 0
for i = 4, #ARGV do
  local p = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[i], ARGV[i], 1, ARGV[2])
  if #p > 0 then
    redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, ARGV[i], 'IDLE', ARGV[3], 'JUSTID')
    n = n + 1
  end
end
return n
"""

# Trim the events stream below the oldest entry any consumer group still needs (its first
# pending entry, or the last it read) and below the retention horizon ARGV[1] (ms), never
# above either. Returns the number of entries deleted.
_TRIM = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
local function parse(id)
  local dash = string.find(id, '-', 1, true)
  return {tonumber(string.sub(id, 1, dash - 1)), tonumber(string.sub(id, dash + 1))}
end
local function less(a, b) return a[1] < b[1] or (a[1] == b[1] and a[2] < b[2]) end
local t = redis.call('TIME')
local floor = {tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) - tonumber(ARGV[1]) + 1, 0}
for _, g in ipairs(redis.call('XINFO', 'GROUPS', KEYS[1])) do
  local f = {}
  for i = 1, #g, 2 do f[g[i]] = g[i + 1] end
  local needed = parse(f['last-delivered-id'])
  if f['pending'] > 0 then
    needed = parse(redis.call('XPENDING', KEYS[1], f['name'])[2])
  end
  if less(needed, floor) then floor = needed end
end
if floor[1] <= 0 then return 0 end
return redis.call('XTRIM', KEYS[1], 'MINID', floor[1] .. '-' .. floor[2])
"""

# Delete consumers with nothing pending, idle longer than ARGV[2] ms (ARGV[3]: only this
# one, or '' for any but ARGV[4]). Atomic, so no entry is dropped from a consumer's list.
_REAP = """
local n = 0
for _, key in ipairs(KEYS) do
  for _, c in ipairs(redis.call('XINFO', 'CONSUMERS', key, ARGV[1])) do
    local f = {}
    for i = 1, #c, 2 do f[c[i]] = c[i + 1] end
    local wanted = (ARGV[3] == '' and f['name'] ~= ARGV[4]) or f['name'] == ARGV[3]
    if wanted and f['pending'] == 0 and f['idle'] >= tonumber(ARGV[2]) then
      redis.call('XGROUP', 'DELCONSUMER', key, ARGV[1], f['name'])
      n = n + 1
    end
  end
end
return n
"""


# A subscription's unsettled work, in one consistent look: [pending on the events stream,
# length of its direct stream (unread + pending), retries in its delayed set, entries of
# the events stream past ARGV[2] not scanned (-1: unknown), then (type, count) pairs of the
# events stream entries its group has not read yet, at most ARGV[2] of them]. False when
# the group does not exist.
_LAG = """
if redis.call('EXISTS', KEYS[1]) == 0 then return false end
local group = nil
for _, g in ipairs(redis.call('XINFO', 'GROUPS', KEYS[1])) do
  local f = {}
  for i = 1, #g, 2 do f[g[i]] = g[i + 1] end
  if f['name'] == ARGV[1] then group = f end
end
if group == nil then return false end
local direct = 0
if redis.call('EXISTS', KEYS[2]) == 1 then direct = redis.call('XLEN', KEYS[2]) end
local counts, scanned, left = {}, 0, tonumber(ARGV[2])
local start = '(' .. group['last-delivered-id']
while left > 0 do
  local batch = redis.call('XRANGE', KEYS[1], start, '+', 'COUNT', math.min(left, 1000))
  if #batch == 0 then break end
  for _, entry in ipairs(batch) do
    local fields, t = entry[2], ''
    for i = 1, #fields, 2 do
      if fields[i] == 't' then t = fields[i + 1] break end
    end
    counts[t] = (counts[t] or 0) + 1
  end
  scanned = scanned + #batch
  left = left - #batch
  start = '(' .. batch[#batch][1]
end
local rest = 0
if left <= 0 then
  rest = -1
  if type(group['lag']) == 'number' then rest = math.max(0, group['lag'] - scanned) end
end
local reply = {group['pending'], direct, redis.call('ZCARD', KEYS[3]), rest}
for t, n in pairs(counts) do
  reply[#reply + 1] = t
  reply[#reply + 1] = n
end
return reply
"""
#: Unread entries of the events stream :meth:`RedisTransport.lag` reads, by type, per call.
LAG_SCAN: Final = 10_000


def _id_key(entry_id: str) -> tuple[int, int]:
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)


class RedisDelivery(Delivery):
    """A delivery read from one of a subscription's streams."""

    __slots__ = ("_transport", "entry_id", "stream")

    def __init__(
        self,
        transport: RedisTransport,
        event: Event[Any],
        subscription: str,
        attempt: int,
        stream: str,
        entry_id: str,
    ) -> None:
        super().__init__(event, subscription, attempt)
        self._transport = transport
        self.stream = stream
        self.entry_id = entry_id

    async def _ack(self) -> None:
        await self._transport._settle([self])

    async def _reject(self) -> None:
        await self._transport._settle([self])

    async def _nack(self, delay: float) -> None:
        await self._transport._requeue(self, delay)

    async def _release(self) -> None:
        await self._transport._requeue(self, 0.0, tried=False)


@dataclass(slots=True)
class _Subscription:
    name: str
    pattern: re.Pattern[str]
    direct: str
    delayed: str
    backlog: deque[RedisDelivery] = field(default_factory=deque)  # read, not yet returned
    next_claim: float = 0.0
    cursors: dict[str, str] = field(default_factory=dict)  # XAUTOCLAIM cursor per stream


class RedisTransport(Transport):
    """Redis Streams: one stream of events, a consumer group per subscription.

    See the module docstring for the layout and what a lease does and does not promise.

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
        self._where = redis_where(url)
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
        self.events_key = EVENTS_KEY.format(prefix=self.prefix)
        self.consumer = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self._redis: Redis | None = None
        self._subs: dict[str, _Subscription] = {}
        self._in_flight: dict[RedisDelivery, None] = {}  # received, not settled
        self._tasks: list[asyncio.Task[None]] = []
        self._wake = asyncio.Event()  # a local nack: the promoter recomputes its sleep
        self._closed = False

    @classmethod
    def from_url(cls, url: str, settings: Settings) -> Self:
        return cls(url)

    def own_store_url(self) -> str:
        return self.url

    # lifecycle

    async def connect(self) -> None:
        if self._redis is not None:
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
            raise TransportError(f"cannot reach Redis at {self._where}: {exc}") from exc
        self._redis = client
        self._closed = False
        self._nack_script = client.register_script(_NACK)
        self._promote_script = client.register_script(_PROMOTE)
        self._touch_script = client.register_script(_TOUCH)
        self._reap_script = client.register_script(_REAP)
        self._trim_script = client.register_script(_TRIM)
        self._publish_script = client.register_script(_PUBLISH)
        self._lag_script = client.register_script(_LAG)
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
        client, self._redis = self._redis, None
        if client is None:
            return []
        unsettled = [d for d in self._in_flight if not d.settled]
        self._in_flight.clear()
        for sub in self._subs.values():
            unsettled.extend(sub.backlog)
            sub.backlog.clear()
        try:
            # Left pending for redelivery (durable), but made claimable at once instead
            # of after the lease; then this consumer's name goes if it holds nothing.
            await self._touch(client, unsettled, RELEASED_IDLE_MS)
            for sub in self._subs.values():
                await self._reap_script(
                    keys=[self.events_key, sub.direct],
                    args=[sub.name, 0, self.consumer, ""],
                    client=client,
                )
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
        sub = _Subscription(
            name=subscription,
            pattern=compile_pattern(pattern),
            direct=DIRECT_KEY.format(prefix=self.prefix, name=subscription),
            delayed=DELAYED_KEY.format(prefix=self.prefix, name=subscription),
        )
        client = self._client()
        with self._translate(f"declaring {subscription!r}"):
            for key, start in (
                (self.events_key, "0" if start_from == "earliest" else "$"),
                (sub.direct, "0"),
            ):
                try:
                    await client.xgroup_create(key, subscription, id=start, mkstream=True)
                except ResponseError as exc:
                    if "BUSYGROUP" not in str(exc):
                        raise  # the group exists already: attach to it, keep its position
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
        client = self._client()
        body = event.model_dump_json()
        with self._translate(f"publishing {event.event_type} {event.event_id}"):
            if subscription is None:
                await client.xadd(
                    self.events_key, {FIELD_TYPE: event.event_type, FIELD_EVENT: body}
                )
                raise_if_cancelled()
                return
            direct = DIRECT_KEY.format(prefix=self.prefix, name=subscription)
            if subscription not in self._subs and not await client.exists(direct):
                raise SubscriptionError(f"no subscription named {subscription!r} in {self._where}")
            await client.xadd(direct, {FIELD_ATTEMPT: "1", FIELD_EVENT: body})
        raise_if_cancelled()

    async def publish_many(
        self, events: Sequence[Event[Any]], *, timeout: float | None = None, bounded: bool = True
    ) -> None:
        self._check_open()
        client = self._client()
        with self._translate(f"publishing {len(events)} events"):
            for start in range(0, len(events), PUBLISH_CHUNK):
                args: list[str] = []
                for event in events[start : start + PUBLISH_CHUNK]:
                    args.append(event.event_type)
                    args.append(event.model_dump_json())
                await self._publish_script(keys=[self.events_key], args=args, client=client)
                raise_if_cancelled()

    # receiving

    async def receive(self, subscription: str, max_items: int) -> Sequence[Delivery]:
        sub = self._subs[subscription]
        loop = asyncio.get_running_loop()
        while not self._closed:
            raise_if_cancelled()  # or stop() waits for ever
            if sub.backlog:
                n = min(max_items, len(sub.backlog))
                return [sub.backlog.popleft() for _ in range(n)]
            client = self._client()
            if loop.time() >= sub.next_claim:
                sub.next_claim = loop.time() + self.claim_interval
                if await self._autoclaim(client, sub, max(max_items, 100)):
                    continue
            try:
                reply: Any = await client.xreadgroup(
                    sub.name,
                    self.consumer,
                    {self.events_key: ">", sub.direct: ">"},
                    count=max_items,
                    block=self.block_ms,
                )
            except RedisError as exc:
                if self._closed:
                    break
                raise TransportError(f"Redis at {self._where}: receive failed: {exc}") from exc
            for stream, entries in reply or ():
                await self._take(client, sub, stream, entries, None)
        return ()

    async def _take(
        self,
        client: Redis,
        sub: _Subscription,
        stream: str,
        entries: Iterable[tuple[str | None, dict[str, str] | None]],
        delivered: dict[str, int] | None,
    ) -> None:
        """Turn entries into deliveries in ``sub.backlog``; acknowledge the non-matching.

        ``delivered``: delivery counts of entries taken over (None: first deliveries).
        """
        skipped: list[str] = []
        direct = stream == sub.direct
        for entry_id, fields in entries:
            if entry_id is None or fields is None:
                continue  # deleted while pending (Redis 6.2 reports them as nil)
            if direct:
                attempt = int(fields.get(FIELD_ATTEMPT, "1"))
            else:
                if not sub.pattern.fullmatch("." + fields.get(FIELD_TYPE, "")):
                    skipped.append(entry_id)
                    continue
                attempt = 1
            if delivered is not None:
                attempt += delivered.get(entry_id, 1) - 1
            try:
                event = Event.model_validate_json(fields[FIELD_EVENT])
            except (KeyError, ValueError):
                log.exception("%s: dropping malformed entry %s of %s", sub.name, entry_id, stream)
                skipped.append(entry_id)
                continue
            delivery = RedisDelivery(self, event, sub.name, attempt, stream, entry_id)
            self._in_flight[delivery] = None  # before any await: cancellation loses nothing
            sub.backlog.append(delivery)
        if skipped:
            with self._translate("acknowledging non-matching entries"):
                async with client.pipeline(transaction=False) as pipe:
                    pipe.xack(stream, sub.name, *skipped)
                    if direct:
                        pipe.xdel(stream, *skipped)
                    await pipe.execute()

    async def _autoclaim(self, client: Redis, sub: _Subscription, count: int) -> bool:
        """Take over entries idle past the lease (dead consumers'); True if any came."""
        lease_ms = int(self.lease * 1000)
        found = False
        with self._translate(f"taking over entries of {sub.name!r}"):
            for stream in (self.events_key, sub.direct):
                start = sub.cursors.get(stream, "0-0")
                reply = await client.xautoclaim(
                    stream, sub.name, self.consumer, lease_ms, start, count=count
                )
                cursor, entries = reply[0], reply[1]
                sub.cursors[stream] = cursor
                if cursor != "0-0":
                    sub.next_claim = 0.0  # more to scan: go on at the next receive
                entries = [(i, f) for i, f in entries if i is not None]
                if not entries:
                    continue
                async with client.pipeline(transaction=False) as pipe:
                    for entry_id, _ in entries:
                        pipe.xpending_range(stream, sub.name, entry_id, entry_id, 1)
                    pending = await pipe.execute()
                counts = {p[0]["message_id"]: int(p[0]["times_delivered"]) for p in pending if p}
                log.info(
                    "%s: took over %d entries idle for %.1fs or more",
                    sub.name,
                    len(entries),
                    self.lease,
                )
                await self._take(client, sub, stream, entries, counts)
                found = True
            await self._reap_script(
                keys=[self.events_key, sub.direct],
                args=[sub.name, REAP_IDLE_MS, "", self.consumer],
            )
        return found

    # settling

    async def ack_many(self, deliveries: Sequence[Delivery]) -> None:
        batch = [d for d in deliveries if isinstance(d, RedisDelivery) and d.claim()]
        if batch:
            await self._settle(batch)

    async def _settle(self, deliveries: Sequence[RedisDelivery]) -> None:
        groups: dict[tuple[str, str], list[str]] = {}
        for delivery in deliveries:
            self._in_flight.pop(delivery, None)
            groups.setdefault((delivery.stream, delivery.subscription), []).append(
                delivery.entry_id
            )
        with self._translate(f"acknowledging {len(deliveries)} deliveries"):
            async with self._client().pipeline(transaction=False) as pipe:
                for (stream, group), ids in groups.items():
                    pipe.xack(stream, group, *ids)
                    if stream != self.events_key:  # a direct stream: only this group reads it
                        pipe.xdel(stream, *ids)
                await pipe.execute()

    async def _requeue(self, delivery: RedisDelivery, delay: float, *, tried: bool = True) -> None:
        self._in_flight.pop(delivery, None)
        sub = self._subs[delivery.subscription]
        with self._translate(f"requeueing {delivery.event.event_id}"):
            await self._nack_script(
                keys=[delivery.stream, sub.direct, sub.delayed],
                args=[
                    sub.name,
                    delivery.entry_id,
                    int(delay * 1000),
                    delivery.attempt + 1 if tried else delivery.attempt,
                    delivery.event.model_dump_json(),
                    0 if delivery.stream == self.events_key else 1,
                ],
                client=self._client(),
            )
        if delay > 0:
            self._wake.set()

    # background tasks

    async def trim(self) -> int:
        """Delete settled events older than ``retention`` from the events stream.

        Never deletes an entry a consumer group still needs: one pending (delivered, not
        acknowledged) or not yet read. Runs every minute while connected; returns how
        many entries went.
        """
        with self._translate("trimming the events stream"):
            deleted: Any = await self._trim_script(
                keys=[self.events_key], args=[int(self.retention * 1000)], client=self._client()
            )
        return int(deleted)

    async def _promote_loop(self) -> None:
        """Move due retries into the direct streams, sleeping until the next is due."""
        loop = asyncio.get_running_loop()
        next_trim = loop.time() + TRIM_INTERVAL
        # Not `while True`: redis-py may swallow the cancellation close() sends (see
        # receive), so the loop also ends on the flag close() sets first.
        while not self._closed:
            if loop.time() >= next_trim:
                next_trim = loop.time() + TRIM_INTERVAL
                try:
                    await self.trim()
                except TransportError:
                    log.warning("could not trim the events stream", exc_info=True)
            self._wake.clear()  # before reading the sets: a nack from now on wakes us
            sleep = PROMOTE_POLL
            try:
                async with self._client().pipeline(transaction=False) as pipe:
                    for sub in list(self._subs.values()):
                        await self._promote_script(
                            keys=[sub.delayed, sub.direct], args=[PROMOTE_BATCH], client=pipe
                        )
                    waits = await pipe.execute()
                due = [int(ms) for ms in waits if int(ms) >= 0]
                if due:
                    sleep = min(sleep, min(due) / 1000)
            except (RedisError, TransportError):
                log.warning("could not move due retries; trying again", exc_info=True)
            if sleep > 0:
                with suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), sleep)

    async def _refresh_loop(self) -> None:
        """Reset the idle time of in-flight entries, so no one takes them over."""
        while not self._closed:
            await asyncio.sleep(self.lease / 3)
            try:
                await self._touch(self._client(), list(self._in_flight), 0)
            except (RedisError, TransportError):
                log.warning("could not refresh the claims of in-flight deliveries", exc_info=True)

    async def _touch(
        self, client: Redis, deliveries: Iterable[RedisDelivery], idle_ms: int
    ) -> None:
        by_stream: dict[tuple[str, str], list[str]] = {}
        for delivery in deliveries:
            by_stream.setdefault((delivery.stream, delivery.subscription), []).append(
                delivery.entry_id
            )
        if not by_stream:
            return
        async with client.pipeline(transaction=False) as pipe:
            for (stream, group), ids in by_stream.items():
                await self._touch_script(
                    keys=[stream], args=[group, self.consumer, idle_ms, *ids], client=pipe
                )
            await pipe.execute()

    # idleness

    async def is_idle(self) -> bool:
        subs = list(self._subs.values())
        if not subs:
            return True
        with self._translate("checking for pending work"):
            # One MULTI: a consistent snapshot, so a nack (atomic) never looks idle.
            async with self._client().pipeline(transaction=True) as pipe:
                pipe.xinfo_stream(self.events_key)
                pipe.xinfo_groups(self.events_key)
                for sub in subs:
                    pipe.xlen(sub.direct)
                    pipe.zcard(sub.delayed)
                replies = await pipe.execute()
        last = _id_key(replies[0]["last-generated-id"])
        groups = {g["name"]: g for g in replies[1]}
        for index, sub in enumerate(subs):
            group = groups.get(sub.name)
            if group is None:
                continue  # deleted behind our back: nothing for us to wait for
            if group["pending"] or _id_key(group["last-delivered-id"]) < last:
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
        sub = self._subs.get(subscription)
        if sub is None:
            return None
        with self._translate(f"reading the lag of {subscription!r}"):
            reply: Any = await self._lag_script(
                keys=[self.events_key, sub.direct, sub.delayed],
                args=[subscription, LAG_SCAN],
                client=self._client(),
            )
        if not reply:
            return None
        pending, direct, delayed, rest = (int(x) for x in reply[:4])
        unread = sum(
            int(n)
            for t, n in zip(reply[4::2], reply[5::2], strict=True)
            if sub.pattern.fullmatch("." + t)
        )
        return pending + direct + delayed + unread + max(rest, 0)

    async def ping(self) -> None:
        with self._translate("pinging"):
            await self._client().ping()

    # helpers

    def _client(self) -> Redis:
        if self._redis is None:
            self._check_open()
            raise TransportError(f"the Redis transport for {self._where} is not connected")
        return self._redis

    @contextmanager
    def _translate(self, doing: str) -> Iterator[None]:
        try:
            yield
        except RedisError as exc:
            raise TransportError(f"Redis at {self._where}: {doing} failed: {exc}") from exc
