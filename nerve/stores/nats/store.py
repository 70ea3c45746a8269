"""The NATS store: connecting, making its buckets and streams, and every contract.

The parts live apart (:mod:`.marks`: done marks, failures, publish records; :mod:`.kept`:
dead letters, step results, counters; :mod:`.log`: the event log; :mod:`.timers`;
:mod:`.waits`; :mod:`.limits`: slots and rates); this module opens them on one
connection and translates what NATS raises into :class:`nerve.StoreError`.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Final, Self

import nats.errors
import nats.js.errors
from nats.aio.client import Client
from nats.js import JetStreamContext
from nats.js.api import KeyValueConfig, StreamConfig

from nerve.connections.nats import (
    DEFAULT_CONNECT_TIMEOUT,
    DEFAULT_PUBLISH_TIMEOUT,
    nats_connect,
    nats_options,
    nats_prefix,
    nats_where,
)
from nerve.events import Event
from nerve.exceptions import StoreError
from nerve.records import (
    AttemptError,
    DeadLetter,
    DeliveryState,
    EventRecord,
    OutcomeRow,
    PublishedRow,
    Timer,
    WaitRecord,
)
from nerve.settings import Settings
from nerve.stores.base import DEFAULT_HISTORY_RETENTION, DEFAULT_WINDOW, Store
from nerve.stores.nats.kept import Kept
from nerve.stores.nats.layout import Layout, token, untoken
from nerve.stores.nats.limits import Limits
from nerve.stores.nats.log import Log
from nerve.stores.nats.marks import Marks
from nerve.stores.nats.timers import Timers
from nerve.stores.nats.waits import Waits
from nerve.stores.nats.wire import JetStreamError, Wire, present
from nerve.urls import integer_option, number_option

log = logging.getLogger("nerve")

#: Seconds for JetStream's API calls at open (creating and updating streams).
API_TIMEOUT: Final = 5.0
#: JetStream's error code for "stream name already in use with a different configuration".
_OTHER_CONFIG: Final = 10058


@dataclass(frozen=True, slots=True)
class _Open:
    client: Client
    wire: Wire
    marks: Marks
    kept: Kept
    log: Log
    timers: Timers
    waits: Waits
    limits: Limits


class NATSStore(Store):
    """Done marks, failures, dead letters, step results, counters, the event log, the
    declared subscriptions, timers, waits, slots and rate states in NATS JetStream
    (key-value buckets and streams).

    Args:
        url: ``nats://user:password@host:4222?prefix=nerve&replicas=1`` (the transport's
            URL works as is; the store reads ``prefix``, ``replicas``,
            ``publish_timeout`` and ``connect_timeout``).
        window: seconds a done mark (and publish record, failures, step results and
            counters) is kept.
        history_retention: seconds the event log keeps events and outcomes.
    """

    def __init__(
        self,
        url: str = "nats://localhost:4222",
        *,
        window: float = DEFAULT_WINDOW,
        history_retention: float = DEFAULT_HISTORY_RETENTION,
    ) -> None:
        self.url = url
        self._server_url, options = nats_options(url)
        self._where = nats_where(url)
        self.prefix = nats_prefix(options)
        number = functools.partial(number_option, "nats", options)
        self.replicas = integer_option("nats", options, "replicas", 1, minimum=1)
        self.timeout = number("publish_timeout", DEFAULT_PUBLISH_TIMEOUT)
        self.connect_timeout = number("connect_timeout", DEFAULT_CONNECT_TIMEOUT)
        self.window = window
        self.history_retention = history_retention
        self.layout = Layout(self.prefix)
        self._open: _Open | None = None
        self._closing = False

    @classmethod
    def from_url(cls, url: str, settings: Settings) -> Self:
        return cls(
            url,
            window=settings.idempotency_window,
            history_retention=settings.history_retention,
        )

    def __repr__(self) -> str:
        return f"NATSStore(nats://{self._where}?prefix={self.prefix})"

    # lifecycle

    async def open(self) -> None:
        if self._open is not None:
            return
        self._closing = False

        async def disconnected() -> None:
            if not self._closing:
                log.warning("the NATS store lost %s; reconnecting", self._where)

        async def reconnected() -> None:
            log.info("the NATS store is back on %s", self._where)

        client = await nats_connect(
            self._server_url,
            where=self._where,
            connect_timeout=self.connect_timeout,
            error=StoreError,
            unreachable="the NATS store",
            disconnected=disconnected,
            reconnected=reconnected,
        )
        # Direct gets are answered by any server holding the stream: with replicas, one a
        # write has not reached yet. Reads go to the leader then.
        wire = Wire(client, timeout=self.timeout, direct=self.replicas == 1)
        try:
            with self._translate("creating its buckets and streams"):
                await self._declare(client.jetstream(timeout=API_TIMEOUT))
                await wire.start()
        except BaseException:
            self._closing = True
            await client.close()
            raise
        kept = Kept(wire, self.layout, self.window)
        self._open = _Open(
            client=client,
            wire=wire,
            marks=Marks(wire, self.layout, self.window),
            kept=kept,
            log=Log(wire, self.layout),
            timers=Timers(wire, self.layout),
            waits=Waits(wire, self.layout, kept),
            limits=Limits(wire, self.layout),
        )

    async def close(self) -> None:
        opened, self._open = self._open, None
        if opened is not None:
            self._closing = True
            await opened.client.close()  # flushes what was sent

    async def _declare(self, js: JetStreamContext) -> None:
        """Create the buckets and streams, or update them to this store's settings
        (the last store opened sets the windows, as the transport's URL sets its stream)."""
        layout, direct = self.layout, self.replicas == 1
        ttls = {layout.done: self.window, layout.steps: self.window}
        buckets = [
            b.config(ttl=ttls.get(b), replicas=self.replicas, direct=direct) for b in layout.buckets
        ]
        streams = [
            make(retention=self.history_retention, replicas=self.replicas, direct=direct)
            for make in (layout.log_config, layout.index_config)
        ]
        try:
            await asyncio.gather(
                *(_ensure_bucket(js, c) for c in buckets),
                *(_ensure_stream(js, c) for c in streams),
            )
        except nats.js.errors.ServiceUnavailableError as exc:
            raise StoreError(
                f"NATS at {self._where} has no JetStream: start nats-server with -js"
            ) from exc

    def _opened(self) -> _Open:
        if self._open is None:
            raise StoreError(f"the NATS store at {self._where} is not open")
        return self._open

    @contextmanager
    def _translate(self, doing: str) -> Iterator[None]:
        try:
            yield
        except (nats.errors.Error, JetStreamError, TimeoutError) as exc:
            detail = str(exc) or type(exc).__name__
            raise StoreError(f"NATS store at {self._where}: {doing} failed: {detail}") from exc

    # publish records

    async def record_published(self, event: Event[Any]) -> None:
        await self.record_published_many([event])

    async def record_published_many(self, events: Sequence[Event[Any]]) -> None:
        if events:
            with self._translate("recording publishes"):
                await self._opened().marks.record_published(events)

    async def event_type(self, event_id: str) -> str | None:
        with self._translate("reading a publish record"):
            return await self._opened().marks.event_type(event_id)

    # done marks and failures

    async def is_done(self, subscription: str, event_id: str) -> bool:
        return bool(await self.done_among(subscription, [event_id]))

    async def mark_done(self, subscription: str, event_id: str) -> None:
        await self.mark_done_many({subscription: (event_id,)})

    async def done_among(self, subscription: str, event_ids: Sequence[str]) -> set[str]:
        if not event_ids:
            return set()
        with self._translate("reading done marks"):
            return await self._opened().marks.done_among(subscription, event_ids)

    async def mark_done_many(self, done: Mapping[str, Sequence[str]]) -> None:
        if any(done.values()):
            with self._translate("writing done marks"):
                await self._opened().marks.mark_done(done)

    async def add_failure(self, subscription: str, event_id: str, error: AttemptError) -> None:
        with self._translate("recording a failure"):
            await self._opened().marks.add_failure(subscription, event_id, error)

    async def take_failures(self, subscription: str, event_id: str) -> list[AttemptError]:
        with self._translate("taking failures"):
            return await self._opened().marks.take_failures(subscription, event_id)

    async def states(self, event_id: str) -> dict[str, DeliveryState]:
        opened = self._opened()
        with self._translate("reading states"):
            (failed, done), dead = await asyncio.gather(
                opened.marks.states(event_id), opened.kept.dead_subscriptions(event_id)
            )
        found = dict.fromkeys(sorted(failed), DeliveryState.FAILED)  # later kinds win
        found.update(dict.fromkeys(sorted(dead), DeliveryState.DEAD_LETTERED))
        found.update(dict.fromkeys(sorted(done), DeliveryState.DONE))
        return found

    # dead letters

    async def add_dead_letter(self, entry: DeadLetter) -> None:
        with self._translate("adding a dead letter"):
            await self._opened().kept.add_dead_letter(entry)

    async def dead_letters(
        self,
        *,
        event_id: str | None = None,
        subscription: str | None = None,
        limit: int | None = None,
    ) -> list[DeadLetter]:
        with self._translate("listing dead letters"):
            return await self._opened().kept.dead_letters(event_id, subscription, limit)

    async def take_dead_letters(
        self, *, event_id: str | None = None, subscription: str | None = None
    ) -> list[DeadLetter]:
        with self._translate("taking dead letters"):
            return await self._opened().kept.take_dead_letters(event_id, subscription)

    # step results and counters

    async def step_result(self, subscription: str, event_id: str, step: str) -> str | None:
        with self._translate("reading a step result"):
            return await self._opened().kept.step_result(subscription, event_id, step)

    async def record_step(self, subscription: str, event_id: str, step: str, result: str) -> None:
        with self._translate("recording a step result"):
            await self._opened().kept.record_step(subscription, event_id, step, result)

    async def add_to(
        self, subscription: str, event_id: str, counter: str, amounts: Mapping[str, float]
    ) -> dict[str, float]:
        with self._translate("adding to a counter"):
            return await self._opened().kept.add_to(subscription, event_id, counter, amounts)

    # the event log

    async def record_history(
        self, events: Sequence[PublishedRow], outcomes: Sequence[OutcomeRow]
    ) -> None:
        if events or outcomes:
            with self._translate("recording history"):
                await self._opened().log.record(events, outcomes)

    async def trim_history(self, before: float) -> None:
        with self._translate("trimming history"):
            await self._opened().log.trim(before)

    async def history_event(self, event_id: str) -> EventRecord | None:
        with self._translate("reading history"):
            return await self._opened().log.event(event_id)

    async def history_chain(self, correlation_id: str) -> list[EventRecord]:
        with self._translate("reading a chain"):
            return await self._opened().log.chain(correlation_id)

    async def history_after(
        self, after: str | None, limit: int
    ) -> tuple[list[EventRecord], str | None]:
        with self._translate("reading the feed"):
            return await self._opened().log.after(after, limit)

    async def history_of_type(self, event_type: str, since: float, limit: int) -> list[EventRecord]:
        with self._translate("reading the events of a type"):
            return await self._opened().log.of_type(event_type, since, limit)

    # timers

    async def add_timer(self, timer: Timer, *, replace: bool = False) -> bool:
        with self._translate("adding a timer"):
            return await self._opened().timers.add(timer, replace)

    async def claim_timers(self, now: float, lease: float, limit: int) -> list[Timer]:
        with self._translate("claiming timers"):
            return await self._opened().timers.claim(now, lease, limit)

    async def delete_timer(self, timer_id: str) -> bool:
        with self._translate("deleting a timer"):
            return await self._opened().timers.delete(timer_id)

    async def timers(self, prefix: str = "", limit: int = 100) -> list[Timer]:
        with self._translate("listing timers"):
            return await self._opened().timers.listed(prefix, limit)

    async def timer(self, timer_id: str) -> Timer | None:
        with self._translate("reading a timer"):
            return await self._opened().timers.get(timer_id)

    # waits

    async def add_wait(self, wait: WaitRecord) -> None:
        with self._translate("adding a wait"):
            await self._opened().waits.add(wait)

    async def waits_for(self, events: Sequence[Event[Any]]) -> list[tuple[WaitRecord, Event[Any]]]:
        if not events:
            return []
        with self._translate("finding waits"):
            return await self._opened().waits.matching(events)

    async def remove_wait(self, wait_id: str) -> bool:
        with self._translate("removing a wait"):
            return await self._opened().waits.remove(wait_id)

    async def waits(
        self,
        *,
        subscription: str | None = None,
        event_id: str | None = None,
        event_type: str | None = None,
        limit: int | None = None,
    ) -> list[WaitRecord]:
        with self._translate("listing waits"):
            return await self._opened().waits.listed(subscription, event_id, event_type, limit)

    # flow control

    async def take_slot(
        self, limiter: str, key: str, holder: str, *, limit: int, lease: float, now: float
    ) -> bool:
        with self._translate("taking a slot"):
            return await self._opened().limits.take_slot(
                limiter, key, holder, limit=limit, lease=lease, now=now
            )

    async def free_slot(self, limiter: str, key: str, holder: str) -> None:
        with self._translate("freeing a slot"):
            await self._opened().limits.free_slot(limiter, key, holder)

    async def slots_taken(self, limiter: str, key: str, now: float) -> int:
        with self._translate("counting slots"):
            return await self._opened().limits.slots_taken(limiter, key, now)

    async def take_rate(
        self,
        limiter: str,
        key: str,
        *,
        interval: float,
        burst: float,
        cost: float,
        now: float,
        force: bool = False,
    ) -> float:
        with self._translate("taking from a rate"):
            return await self._opened().limits.take_rate(
                limiter, key, interval=interval, burst=burst, cost=cost, now=now, force=force
            )

    async def block_rate(
        self, limiter: str, key: str, *, until: float, burst: float, interval: float
    ) -> None:
        with self._translate("pausing a rate"):
            await self._opened().limits.block_rate(
                limiter, key, until=until, burst=burst, interval=interval
            )

    # subscriptions

    async def declare_subscriptions(self, subscriptions: Mapping[str, str]) -> None:
        bucket = self.layout.subscriptions
        items = [(bucket.subject(token(k)), v.encode(), None) for k, v in subscriptions.items()]
        if items:
            with self._translate("declaring subscriptions"):
                await self._opened().wire.put(items)

    async def subscriptions(self) -> dict[str, str]:
        bucket, wire = self.layout.subscriptions, self._opened().wire
        with self._translate("reading subscriptions"):
            subjects = await wire.subjects(bucket.stream, bucket.subject(">"))
            found = await wire.last([(bucket.stream, s) for s in subjects])
        pairs = (
            (untoken(bucket.tokens(m.subject)[0]), m.data.decode())
            for m in map(present, found)
            if m is not None
        )
        return dict(sorted(pairs))


async def _ensure_bucket(js: JetStreamContext, config: KeyValueConfig) -> None:
    """Create a KV bucket, or update its age, replicas and direct gets to ``config``'s."""
    try:
        await js.create_key_value(config)
    except nats.js.errors.BadRequestError as exc:
        if exc.err_code != _OTHER_CONFIG:
            raise
        current = (await js.stream_info(f"KV_{config.bucket}")).config
        current.max_age = config.ttl or 0.0
        current.num_replicas = config.replicas
        current.allow_direct = bool(config.direct)
        if current.max_age and (current.duplicate_window or 0) > current.max_age:
            current.duplicate_window = current.max_age
        await js.update_stream(current)


async def _ensure_stream(js: JetStreamContext, config: StreamConfig) -> None:
    """Create a stream, or update it to ``config`` (another process may create it too)."""
    try:
        await js.add_stream(config)
    except nats.js.errors.BadRequestError as exc:
        if exc.err_code != _OTHER_CONFIG:
            raise
        await js.update_stream(config)
