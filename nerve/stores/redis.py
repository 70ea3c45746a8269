"""``redis://host:port/db``: the store on Redis, next to the Redis transport (or alone).

Keys (under the URL's ``prefix`` option, default ``nerve``; names are the ``*_KEY``
constants below)::

    {prefix}:done:{event_id}         hash  subscription -> unix time it was handled
    {prefix}:failures:{event_id}     hash  subscription -> attempt errors, one JSON per line
    {prefix}:published:{event_id}    string, the event type
    {prefix}:dlq                     hash  "subscription NUL event_id" -> dead letter JSON
    {prefix}:dlq:order               sorted set of the same members, by time dead-lettered
    {prefix}:dlq:event:{event_id}    set of the subscriptions holding a dead letter of it
    {prefix}:steps:{event_id}        hash  "subscription NUL step" -> the step's JSON result
    {prefix}:counters:{event_id}     hash  "subscription NUL counter NUL name" -> its total
    {prefix}:log                     stream of logged event ids (the feed; ids are cursors)
    {prefix}:log:event:{event_id}    hash  e -> event JSON, at -> published at, seq -> feed id
    {prefix}:log:outcomes:{event_id} list of outcome rows (JSON arrays), oldest first
    {prefix}:log:chain:{corr_id}     sorted set of the chain's event ids, by publish time
    {prefix}:log:type:{event_type}   sorted set of the type's event ids, by publish time
    {prefix}:log:types               set of the types with such an index (for trimming)
    {prefix}:subscriptions           hash  subscription -> pattern (every declared one)
    {prefix}:timers                  sorted set of "seq:timer id" entries, by due time
                                     (seq: writes so far, zero-padded: ties in write order)
    {prefix}:timers:bodies           hash  timer id -> body
    {prefix}:timers:entries          hash  timer id -> its entry in {prefix}:timers
    {prefix}:timers:writes           counter of timer writes (the entries' seq)
    {prefix}:waits                   hash  wait id -> wait JSON
    {prefix}:waits:order             sorted set of wait ids, by created_at
    {prefix}:waits:where             hash  wait id -> JSON [run's event id, awaited type,
                                     shape, key]: its index entries, to remove them
    {prefix}:waits:shapes:{type}     hash  shape (JSON list of paths) -> its waits on type
    {prefix}:waits:key:{type}:{key}  set of the ids of the waits on (type, match key)
    {prefix}:waits:run:{event_id}    set of the ids of the waits of a suspended run
    {prefix}:slots:{limiter}NUL{key} sorted set of a key's slot holders, by lease end
    {prefix}:rate:{limiter}NUL{key}  string, a rated key's TAT (unix time)

Timers and waits are :mod:`nerve.stores.redis_waits`'s (its ``*_KEY`` constants), slots
and rates :mod:`nerve.stores.redis_limits`'s.

One hash per event keeps :meth:`RedisStore.states` one lookup per kind. Done marks and
publish records expire ``window`` seconds after they were written, and a done mark older
than the window is ignored even while its hash lives on (a later mark of the same event by
another subscription extends the hash's TTL); failure lists expire after the window too,
so an event abandoned mid-retries leaves nothing behind for long. The event log's keys
expire ``history_retention`` seconds after their last write, and the feed and the
per-type indexes are trimmed to that age by :meth:`RedisStore.trim_history`. Dead
letters, timers and waits never expire: they are kept until taken, deleted or removed.
Step results and counters expire ``window`` seconds after the event's last step or
counter write, except while the event has a dead letter or a wait in any subscription:
then they are kept until the last of them is taken or removed. Slot holders and rate
states expire a minute after their last lease ends or their TAT is past. Writes survive
what Redis's persistence settings make survive (``appendonly`` for every write).

The Lua scripts are in ``lua/`` next to this module, read once when it is imported.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from importlib import resources
from typing import Any, Final, Self

from redis.asyncio import Redis
from redis.exceptions import RedisError

from nerve import clock
from nerve.connections.redis import DEFAULT_PREFIX, redis_client, redis_options, redis_where
from nerve.events import Event
from nerve.exceptions import StoreError
from nerve.records import (
    AttemptError,
    DeadLetter,
    DeliveryState,
    EventRecord,
    Outcome,
    OutcomeRow,
    PublishedRow,
)
from nerve.settings import Settings
from nerve.stores.base import DEFAULT_HISTORY_RETENTION, DEFAULT_WINDOW, Store
from nerve.stores.redis_limits import RedisLimits
from nerve.stores.redis_waits import WAIT_RUN_KEY, RedisTimersAndWaits
from nerve.transports.base import raise_if_cancelled

DONE_KEY: Final = "{prefix}:done:{event_id}"
FAILURES_KEY: Final = "{prefix}:failures:{event_id}"
PUBLISHED_KEY: Final = "{prefix}:published:{event_id}"
DLQ_KEY: Final = "{prefix}:dlq"
DLQ_ORDER_KEY: Final = "{prefix}:dlq:order"
DLQ_EVENT_KEY: Final = "{prefix}:dlq:event:{event_id}"
STEPS_KEY: Final = "{prefix}:steps:{event_id}"
COUNTERS_KEY: Final = "{prefix}:counters:{event_id}"
LOG_FEED_KEY: Final = "{prefix}:log"
LOG_EVENT_KEY: Final = "{prefix}:log:event:{event_id}"
LOG_OUTCOMES_KEY: Final = "{prefix}:log:outcomes:{event_id}"
LOG_CHAIN_KEY: Final = "{prefix}:log:chain:{correlation_id}"
LOG_TYPE_KEY: Final = "{prefix}:log:type:{event_type}"
SUBSCRIPTIONS_KEY: Final = "{prefix}:subscriptions"
_SEP: Final = "\x00"  # between the parts of a member or field: none can contain it

#: Dead letters are read this many at a time when filtering by subscription.
_PAGE = 500

#: The scripts that write steps or counters start with this one's ``keep`` function.
_KEEPING = ("record_step", "add_to", "release_steps")


def _load_scripts() -> dict[str, str]:
    """The store's Lua scripts (``lua/*.lua`` next to this module), read once."""
    folder = resources.files("nerve.stores").joinpath("lua")
    keep = folder.joinpath("keep.lua").read_text(encoding="utf-8")
    scripts = {}
    for name in (
        "add_failure",
        "take_failures",
        "take_dead",
        "done_among",
        "mark_done",
        "record_published",
        "record_history",
        "trim_history",
        *_KEEPING,
    ):
        text = folder.joinpath(f"{name}.lua").read_text(encoding="utf-8")
        scripts[name] = keep + text if name in _KEEPING else text
    return scripts


_SCRIPTS: Final = _load_scripts()


class RedisStore(RedisTimersAndWaits, RedisLimits, Store):
    """Idempotency marks, failures, dead letters, publish records, step results and
    counters, the event log, timers, waits and flow control in Redis.

    Args:
        url: ``redis://host:port/db?prefix=nerve`` (the transport's URL works as is).
        window: seconds an idempotency mark (and publish record) is kept.
        history_retention: seconds the event log's keys live after their last write.
    """

    def __init__(
        self,
        url: str,
        *,
        window: float = DEFAULT_WINDOW,
        history_retention: float = DEFAULT_HISTORY_RETENTION,
    ) -> None:
        self.url = url
        self._client_url, options = redis_options(url)
        self._where = redis_where(url)
        self.prefix = options.get("prefix") or DEFAULT_PREFIX
        self.window = window
        self._window_ms = max(1, int(window * 1000))
        self._dlq = DLQ_KEY.format(prefix=self.prefix)
        self._dlq_order = DLQ_ORDER_KEY.format(prefix=self.prefix)
        self._dlq_event_prefix = DLQ_EVENT_KEY.format(prefix=self.prefix, event_id="")
        self._history_ms = max(1, int(history_retention * 1000))
        self._feed = LOG_FEED_KEY.format(prefix=self.prefix)
        self._subscriptions = SUBSCRIPTIONS_KEY.format(prefix=self.prefix)
        self._redis: Redis | None = None

    @classmethod
    def from_url(cls, url: str, settings: Settings) -> Self:
        return cls(
            url,
            window=settings.idempotency_window,
            history_retention=settings.history_retention,
        )

    async def open(self) -> None:
        if self._redis is not None:
            return
        client = redis_client(self._client_url)
        try:
            await client.ping()
        except RedisError as exc:
            await client.aclose()
            raise StoreError(f"cannot reach the Redis store at {self._where}: {exc}") from exc
        self._redis = client
        self._add_failure = client.register_script(_SCRIPTS["add_failure"])
        self._take_failures = client.register_script(_SCRIPTS["take_failures"])
        self._take_dead = client.register_script(_SCRIPTS["take_dead"])
        self._done_among = client.register_script(_SCRIPTS["done_among"])
        self._mark_done = client.register_script(_SCRIPTS["mark_done"])
        self._record_published = client.register_script(_SCRIPTS["record_published"])
        self._record_step = client.register_script(_SCRIPTS["record_step"])
        self._add_to = client.register_script(_SCRIPTS["add_to"])
        self._release_steps = client.register_script(_SCRIPTS["release_steps"])
        self._record_history = client.register_script(_SCRIPTS["record_history"])
        self._trim_history = client.register_script(_SCRIPTS["trim_history"])
        self._open_timers_and_waits(client)
        self._open_limits(client)

    async def close(self) -> None:
        client, self._redis = self._redis, None
        if client is not None:
            await client.aclose()

    def _client(self) -> Redis:
        if self._redis is None:
            raise StoreError(f"the Redis store at {self._where} is not open")
        return self._redis

    @contextmanager
    def _translate(self, doing: str) -> Iterator[None]:
        try:
            yield
        except RedisError as exc:
            raise StoreError(f"Redis store at {self._where}: {doing} failed: {exc}") from exc
        raise_if_cancelled()  # redis-py swallows a cancellation landing mid-command

    def _key(self, template: str, event_id: str) -> str:
        return template.format(prefix=self.prefix, event_id=event_id)

    # publish records

    async def record_published(self, event: Event[Any]) -> None:
        key = self._key(PUBLISHED_KEY, event.event_id)
        with self._translate("recording a publish"):
            await self._client().set(key, event.event_type, px=self._window_ms, nx=True)

    async def record_published_many(self, events: Sequence[Event[Any]]) -> None:
        if not events:
            return
        with self._translate("recording publishes"):
            await self._record_published(
                keys=[self._key(PUBLISHED_KEY, e.event_id) for e in events],
                args=[self._window_ms, *(e.event_type for e in events)],
                client=self._client(),
            )

    async def event_type(self, event_id: str) -> str | None:
        with self._translate("reading a publish record"):
            found: Any = await self._client().get(self._key(PUBLISHED_KEY, event_id))
        return None if found is None else str(found)

    # done marks

    async def is_done(self, subscription: str, event_id: str) -> bool:
        return bool(await self.done_among(subscription, [event_id]))

    async def mark_done(self, subscription: str, event_id: str) -> None:
        await self.mark_done_many({subscription: (event_id,)})

    async def done_among(self, subscription: str, event_ids: Sequence[str]) -> set[str]:
        if not event_ids:
            return set()
        keys = [self._key(DONE_KEY, event_id) for event_id in event_ids]
        horizon = repr(clock.time() - self.window)
        with self._translate("reading done marks"):
            found: Any = await self._done_among(
                keys=keys, args=[subscription, horizon], client=self._client()
            )
        return {event_ids[int(index) - 1] for index in found}

    async def mark_done_many(self, done: Mapping[str, Sequence[str]]) -> None:
        now = repr(clock.time())
        batches = [(sub, ids) for sub, ids in done.items() if ids]
        if not batches:
            return
        with self._translate("writing done marks"):
            async with self._client().pipeline(transaction=False) as pipe:
                for subscription, event_ids in batches:
                    keys: list[str] = []
                    for event_id in event_ids:
                        keys.append(self._key(DONE_KEY, event_id))
                        keys.append(self._key(FAILURES_KEY, event_id))
                    await self._mark_done(
                        keys=keys, args=[subscription, now, self._window_ms], client=pipe
                    )
                await pipe.execute()

    # failures

    async def add_failure(self, subscription: str, event_id: str, error: AttemptError) -> None:
        with self._translate("recording a failure"):
            await self._add_failure(
                keys=[self._key(FAILURES_KEY, event_id)],
                args=[subscription, error.model_dump_json(), self._window_ms],
                client=self._client(),
            )

    async def take_failures(self, subscription: str, event_id: str) -> list[AttemptError]:
        with self._translate("taking failures"):
            lines: str | None = await self._take_failures(
                keys=[self._key(FAILURES_KEY, event_id)], args=[subscription], client=self._client()
            )
        if not lines:
            return []
        errors = [AttemptError.model_validate_json(line) for line in lines.split("\n")]
        return sorted(errors, key=lambda e: e.attempt)

    # dead letters

    async def add_dead_letter(self, entry: DeadLetter) -> None:
        member = f"{entry.subscription}{_SEP}{entry.event.event_id}"
        with self._translate("adding a dead letter"):
            async with self._client().pipeline(transaction=True) as pipe:
                pipe.hset(self._dlq, member, entry.model_dump_json())
                pipe.zadd(self._dlq_order, {member: clock.time()})
                pipe.sadd(self._key(DLQ_EVENT_KEY, entry.event.event_id), entry.subscription)
                pipe.persist(self._key(STEPS_KEY, entry.event.event_id))  # a replay needs them
                pipe.persist(self._key(COUNTERS_KEY, entry.event.event_id))
                await pipe.execute()

    async def dead_letters(
        self,
        *,
        event_id: str | None = None,
        subscription: str | None = None,
        limit: int | None = None,
    ) -> list[DeadLetter]:
        client = self._client()
        found: list[DeadLetter] = []
        with self._translate("listing dead letters"):
            if event_id is not None:
                subs: Any = await client.smembers(self._key(DLQ_EVENT_KEY, event_id))
                members = [f"{s}{_SEP}{event_id}" for s in subs if subscription in (None, s)]
                if not members:
                    return []
                async with client.pipeline(transaction=False) as pipe:
                    pipe.hmget(self._dlq, members)
                    for member in members:
                        pipe.zscore(self._dlq_order, member)
                    entries, *scores = await pipe.execute()
                ranked = sorted(
                    ((s or 0.0, e) for s, e in zip(scores, entries, strict=True) if e),
                    key=lambda pair: pair[0],
                    reverse=True,
                )
                found = [DeadLetter.model_validate_json(e) for _, e in ranked]
                return found if limit is None else found[:limit]
            start = 0
            while limit is None or len(found) < limit:
                page: Any = await client.zrevrange(self._dlq_order, start, start + _PAGE - 1)
                if not page:
                    break
                start += _PAGE
                if subscription is not None:
                    page = [m for m in page if m.partition(_SEP)[0] == subscription]
                if page:
                    found.extend(
                        DeadLetter.model_validate_json(e)
                        for e in await client.hmget(self._dlq, page)
                        if e is not None
                    )
        return found if limit is None else found[:limit]

    async def take_dead_letters(
        self, *, event_id: str | None = None, subscription: str | None = None
    ) -> list[DeadLetter]:
        with self._translate("taking dead letters"):
            flat: list[str] = await self._take_dead(
                keys=[self._dlq, self._dlq_order],
                args=[self._dlq_event_prefix, event_id or "", subscription or ""],
                client=self._client(),
            )
        pairs = sorted(zip(flat[1::2], flat[0::2], strict=True), key=lambda p: float(p[0]))
        taken = [DeadLetter.model_validate_json(entry) for _, entry in pairs]  # oldest first
        if taken:
            await self._released(taken)
        return taken

    async def _released(self, taken: list[DeadLetter]) -> None:
        by_event: dict[str, list[str]] = {}
        for entry in taken:
            by_event.setdefault(entry.event.event_id, []).append(entry.subscription)
        with self._translate("releasing step results"):
            async with self._client().pipeline(transaction=False) as pipe:
                for event_id, subscriptions in by_event.items():
                    await self._release_steps(
                        keys=[
                            self._key(STEPS_KEY, event_id),
                            self._key(COUNTERS_KEY, event_id),
                            self._key(DLQ_EVENT_KEY, event_id),
                            self._key(WAIT_RUN_KEY, event_id),
                        ],
                        args=[self._window_ms, *subscriptions],
                        client=pipe,
                    )
                await pipe.execute()

    # step results and counters

    async def step_result(self, subscription: str, event_id: str, step: str) -> str | None:
        with self._translate("reading a step result"):
            found: Any = await self._client().hget(
                self._key(STEPS_KEY, event_id), f"{subscription}{_SEP}{step}"
            )
        return None if found is None else str(found)

    async def record_step(self, subscription: str, event_id: str, step: str, result: str) -> None:
        with self._translate("recording a step result"):
            await self._record_step(
                keys=self._keeping(STEPS_KEY, event_id),
                args=[self._window_ms, f"{subscription}{_SEP}{step}", result],
                client=self._client(),
            )

    async def add_to(
        self, subscription: str, event_id: str, counter: str, amounts: Mapping[str, float]
    ) -> dict[str, float]:
        args: list[Any] = [self._window_ms, f"{subscription}{_SEP}{counter}{_SEP}"]
        for name, amount in amounts.items():
            args += (name, repr(float(amount)))
        with self._translate("adding to a counter"):
            flat: list[str] = await self._add_to(
                keys=self._keeping(COUNTERS_KEY, event_id),
                args=args,
                client=self._client(),
            )
        return {name: float(total) for name, total in zip(flat[0::2], flat[1::2], strict=True)}

    def _keeping(self, template: str, event_id: str) -> list[str]:
        """The keys of a script that writes steps or counters (see keep.lua)."""
        return [
            self._key(template, event_id),
            self._key(DLQ_EVENT_KEY, event_id),
            self._key(WAIT_RUN_KEY, event_id),
        ]

    # status

    async def states(self, event_id: str) -> dict[str, DeliveryState]:
        with self._translate("reading states"):
            async with self._client().pipeline(transaction=False) as pipe:
                pipe.hkeys(self._key(FAILURES_KEY, event_id))
                pipe.smembers(self._key(DLQ_EVENT_KEY, event_id))
                pipe.hgetall(self._key(DONE_KEY, event_id))
                failed, dead, done = await pipe.execute()
        found = dict.fromkeys(failed, DeliveryState.FAILED)  # later kinds win
        found.update(dict.fromkeys(dead, DeliveryState.DEAD_LETTERED))
        horizon = clock.time() - self.window
        found.update({s: DeliveryState.DONE for s, at in done.items() if _fresh(at, horizon)})
        return found

    # the event log

    async def record_history(
        self, events: Sequence[PublishedRow], outcomes: Sequence[OutcomeRow]
    ) -> None:
        args: list[Any] = [self.prefix, self._history_ms, len(events)]
        for event, at in events:
            args += (
                event.event_id,
                event.correlation_id,
                event.event_type,
                repr(at),
                event.model_dump_json(),
            )
        for row in outcomes:
            args += (row[1], json.dumps(row))
        with self._translate("recording history"):
            await self._record_history(keys=[], args=args, client=self._client())

    async def trim_history(self, before: float) -> None:
        with self._translate("trimming history"):
            await self._trim_history(
                keys=[self._feed],
                args=[self.prefix, f"{max(0, int(before * 1000))}-0", repr(before)],
                client=self._client(),
            )

    async def _log_records(self, event_ids: Sequence[str]) -> list[EventRecord]:
        if not event_ids:
            return []
        with self._translate("reading history"):
            async with self._client().pipeline(transaction=False) as pipe:
                for event_id in event_ids:
                    pipe.hmget(self._key(LOG_EVENT_KEY, event_id), ["e", "at", "seq"])
                    pipe.lrange(self._key(LOG_OUTCOMES_KEY, event_id), 0, -1)
                found = await pipe.execute()
        records = []
        for index in range(0, len(found), 2):
            (body, at, seq), rows = found[index], found[index + 1]
            if body is None:  # expired
                continue
            outcomes = [Outcome.from_row(json.loads(row)) for row in rows]
            records.append(EventRecord.from_log(body, at, outcomes, seq))
        return records

    async def history_event(self, event_id: str) -> EventRecord | None:
        found = await self._log_records([event_id])
        return found[0] if found else None

    async def history_chain(self, correlation_id: str) -> list[EventRecord]:
        key = LOG_CHAIN_KEY.format(prefix=self.prefix, correlation_id=correlation_id)
        with self._translate("reading a chain"):
            ids: Any = await self._client().zrange(key, 0, -1)
        return await self._log_records(list(ids))

    async def history_after(
        self, after: str | None, limit: int
    ) -> tuple[list[EventRecord], str | None]:
        client = self._client()
        with self._translate("reading the feed"):
            if after is None:
                entries: Any = await client.xrevrange(self._feed, count=max(1, limit))
                if not entries:
                    return [], None
                cursor = entries[0][0]
                entries = list(reversed(entries[:limit])) if limit else []
            else:
                entries = await client.xrange(self._feed, min=f"({after}", count=limit)
                cursor = entries[-1][0] if entries else after
        return await self._log_records([fields["id"] for _id, fields in entries]), cursor

    async def history_of_type(self, event_type: str, since: float, limit: int) -> list[EventRecord]:
        """Logged events of a type published at ``since`` or later, oldest first."""
        if limit <= 0:
            return []
        key = LOG_TYPE_KEY.format(prefix=self.prefix, event_type=event_type)
        with self._translate("reading history by type"):
            ids: Any = await self._client().zrangebyscore(key, repr(since), "+inf", 0, limit)
        return await self._log_records(list(ids))

    async def declare_subscriptions(self, subscriptions: Mapping[str, str]) -> None:
        if subscriptions:
            with self._translate("declaring subscriptions"):
                await self._client().hset(
                    self._subscriptions,
                    mapping={k: v for k, v in subscriptions.items()},  # noqa: C416  # redis-py's type
                )

    async def subscriptions(self) -> dict[str, str]:
        with self._translate("reading subscriptions"):
            found: Any = await self._client().hgetall(self._subscriptions)
        return dict(sorted(found.items()))


def _fresh(mark: str | None, horizon: float) -> bool:
    return mark is not None and float(mark) >= horizon
