"""EventBus: subscribe, publish, and the lifecycle that runs the subscriptions."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from types import TracebackType
from typing import Any, Literal, TypeVar

from nerve import clock, constants
from nerve.context import current
from nerve.dlq import DeadLetterQueue
from nerve.events import Event
from nerve.exceptions import BusClosed, ChainTooDeep, SubscriptionError
from nerve.flow.controls import (
    Batch,
    Concurrency,
    Debounce,
    PrioritySpec,
    RateLimit,
    Throttle,
)
from nerve.history import History, HistoryRecorder
from nerve.later import Later, due_time
from nerve.observe import default_observers
from nerve.observe.observer import Observer, Observers
from nerve.parked import ParkedFiler, file_parked
from nerve.records import DeliveryState, Timer, WaitRecord
from nerve.routing import matches
from nerve.runner import DEFER_PREFIX, SubscriptionRunner
from nerve.schedules import CatchUp, Schedule
from nerve.settings import Settings
from nerve.settler import Settler
from nerve.stores import store_from_url
from nerve.stores.base import Store
from nerve.subscription import (
    Backoff,
    Handler,
    KeyFunc,
    StartFrom,
    Subscription,
    check_handler,
    default_name,
    key_func,
)
from nerve.timers import TimerService
from nerve.transports import transport_from_url
from nerve.transports.base import Delivery, Transport
from nerve.urls import redact
from nerve.waits import RecentEvents, RecentMatcher, WaitService
from nerve.watchdog import LoopWatchdog

log = logging.getLogger("nerve")

H = TypeVar("H", bound=Handler)
_State = Literal["new", "connected", "running", "stopping", "stopped"]
_UNSET: Any = object()


@dataclass(frozen=True, slots=True)
class EventStatus:
    """Where one event stands with each subscription that should handle it.

    ``event_type`` is None when the store has no record of the event (never published
    here, or older than the idempotency window).
    """

    event_id: str
    event_type: str | None
    subscriptions: dict[str, DeliveryState] = field(default_factory=dict)
    #: Why a subscription's run is deferred (throttled until T, debounced, waiting for
    #: its key's slot), by subscription.
    reasons: dict[str, str] = field(default_factory=dict)

    @property
    def settled(self) -> bool:
        """True when every subscription is done or dead-lettered."""
        return all(
            s in (DeliveryState.DONE, DeliveryState.DEAD_LETTERED)
            for s in self.subscriptions.values()
        )


class EventBus:
    """Routes events to subscriptions and runs their handlers with delivery guarantees.

    Args:
        url: the transport, e.g. ``memory://`` (default, from ``NERVE_URL``).
        store: a :class:`Store` or a store URL; by default one of the transport's kind.
        settings: defaults for everything else (``NERVE_*`` environment variables).
        transport: a transport instance, instead of ``url``.

    Example:
        ```python
        bus = EventBus()

        @bus.on("support.ticket.created", retries=3, timeout=60)
        async def triage(event: Event) -> None: ...

        async with bus:
            await bus.publish(Event(event_type="support.ticket.created", payload={"id": 7}))
        ```
    """

    def __init__(
        self,
        url: str | None = None,
        *,
        store: Store | str | None = None,
        settings: Settings | None = None,
        transport: Transport | None = None,
    ) -> None:
        self.settings = settings or Settings()
        self.url = url or self.settings.url
        self._transport = transport or transport_from_url(self.url, self.settings)
        if isinstance(store, Store):
            self._store = store
            #: Where the store is, for messages (a password is masked).
            self.store_url = type(store).__name__
        else:
            store_url = store or self.settings.store_url or self._transport.default_store_url
            self._store = store_from_url(store_url, self.settings)
            self.store_url = redact(store_url)
        self._subscriptions: dict[str, Subscription] = {}
        self._runners: dict[str, SubscriptionRunner] = {}
        self._settler: Settler | None = None
        self._watchdog: LoopWatchdog | None = None
        self._filer: ParkedFiler | None = None  # files what the broker parks (nerve.parked)
        self._state: _State = "new"
        self._connecting = asyncio.Lock()
        self._stopped = asyncio.Event()
        self._observers = Observers(default_observers())
        self._recorder: HistoryRecorder | None = None
        history = self.settings.history
        if history is None:  # the in-process bus pays ~25% of its top rate for the log
            history = self._transport.durable
        # Waits look back in the event log; an in-process bus without one keeps a ring of
        # its recent events instead (every publish goes through this process).
        recent = None if history or self._transport.durable else RecentEvents()
        self._waits = WaitService(
            self._ready_store,
            self._redeliver,
            self.publish,
            default_timeout=self.settings.wait_timeout,
            max_timeout=self.settings.max_wait_timeout,
            recent=recent,
            lookback=bool(history) or recent is not None,
        )
        if history:
            self._recorder = HistoryRecorder(
                self._store, self.settings.history_retention, logged=self._waits.match
            )
            self._observers.add(self._recorder)
        elif recent is not None:
            self._observers.add(RecentMatcher(self._waits, recent))
        self._later = Later(self._ready_store, self.publish, self.publish_many)
        self._timers: TimerService | None = None
        self._host: EventBus | None = None  # the bus that took this one's subscriptions
        self.dlq = DeadLetterQueue(self._ready_store, self._redeliver, self._file_parked)
        #: The event log: events published, handler outcomes, declared subscriptions.
        self.history = History(self._history_store)
        #: Deliveries an in-process transport still held when the bus stopped (lost).
        self.unfinished: list[Delivery] = []

    # subscribing

    def on(
        self,
        pattern: str,
        *,
        name: str | None = None,
        retries: int | None = None,
        timeout: float | None = _UNSET,
        concurrency: int | Concurrency | None = None,
        ordered_by: str | KeyFunc | None = None,
        backoff: Backoff | None = None,
        payload_model: type[Any] | None = None,
        start_from: StartFrom = "earliest",
        blocking: bool = False,
        cancel_on: Sequence[tuple[str, str]] = (),
        throttle: Throttle | None = None,
        rate_limit: RateLimit | None = None,
        debounce: Debounce | None = None,
        batch: Batch | None = None,
        priority: PrioritySpec | bool = False,
    ) -> Callable[[H], H]:
        """Decorate an async handler to subscribe it to ``pattern``.

        Args:
            pattern: event type, or a pattern with ``*`` (one segment) / ``#`` (any).
            name: the subscription's stable name (default: module.qualname of the handler).
            retries: attempts after the first (default ``settings.retries``).
            timeout: seconds an attempt may take; a timeout is a retryable failure.
            concurrency: handlers of this subscription in flight at once in this
                process (an int), or a :class:`nerve.flow.Concurrency`: at most that
                many per key at once across every process (see :mod:`nerve.flow`).
            ordered_by: a payload path (``"customer.id"``) or a function of the event;
                events with equal keys are handled one after another, in order.
            backoff: the retry schedule (default: 0.5 s doubling to 60 s, with jitter).
            payload_model: validate payloads into this type (or annotate ``Event[Model]``).
            start_from: where a new subscription on a durable transport starts.
            blocking: the handler is a plain function (``def``) doing CPU-bound or
                blocking work: each attempt runs in a thread of the loop's default
                executor, so the event loop (every other handler, the HTTP intake)
                goes on meanwhile. ``timeout`` still ends the attempt (the thread itself
                runs on to its end: Python cannot stop a thread).
            cancel_on: ``(event type, path)`` pairs, e.g.
                ``[("order.cancelled", "payload.order_id")]``: an event of that type
                whose value at the path equals the handled event's cancels the run while
                it waits (``wait_for`` raises :class:`RunCancelled` in it) or retries
                (its next attempt does not run). A cancelled run is settled as done.
            throttle, rate_limit, debounce: flow controls shared by every process on
                the store (:class:`nerve.flow.Throttle`, :class:`~nerve.flow.RateLimit`,
                :class:`~nerve.flow.Debounce`).
            batch: a :class:`nerve.flow.Batch`: the handler takes ``list[Event]``.
            priority: run received deliveries highest priority first: True reads the
                ``nerve-priority`` metadata; a path or a function of the event gives it
                (see :mod:`nerve.flow.controls` for how far the order reaches).
        """

        def register(handler: H) -> H:
            self.subscribe(
                pattern,
                handler,
                name=name,
                retries=retries,
                timeout=timeout,
                concurrency=concurrency,
                ordered_by=ordered_by,
                backoff=backoff,
                payload_model=payload_model,
                start_from=start_from,
                blocking=blocking,
                cancel_on=cancel_on,
                throttle=throttle,
                rate_limit=rate_limit,
                debounce=debounce,
                batch=batch,
                priority=priority,
            )
            return handler

        return register

    def subscribe(
        self,
        event_type: str,
        handler: Handler,
        *,
        name: str | None = None,
        retries: int | None = None,
        timeout: float | None = _UNSET,
        concurrency: int | Concurrency | None = None,
        ordered_by: str | KeyFunc | None = None,
        backoff: Backoff | None = None,
        payload_model: type[Any] | None = None,
        start_from: StartFrom = "earliest",
        blocking: bool = False,
        cancel_on: Sequence[tuple[str, str]] = (),
        throttle: Throttle | None = None,
        rate_limit: RateLimit | None = None,
        debounce: Debounce | None = None,
        batch: Batch | None = None,
        priority: PrioritySpec | bool = False,
    ) -> Subscription:
        """Subscribe ``handler`` to an event type or pattern (the seed's form).

        Takes the same options as :meth:`on`. Subscriptions are made before the bus
        starts (or first publishes).

        Raises:
            SubscriptionError: bad pattern, handler not async, name taken, bus running.
        """
        if self._state != "new":
            raise SubscriptionError(
                "subscribe before the bus starts or first publishes: the transport "
                "declares every subscription when it connects"
            )
        check_handler(handler, blocking=blocking)
        sub_name = name or default_name(handler)
        taken = self._subscriptions.get(sub_name)
        if (
            name is None
            and taken is not None
            and taken.handler is handler
            and taken.pattern != event_type
        ):
            # The seed's bus lets one handler serve several event types: name each by pattern.
            sub_name = f"{sub_name}:{event_type}"
        if sub_name in self._subscriptions:
            raise SubscriptionError(
                f"a subscription named {sub_name!r} exists already; "
                "pass name=... to tell them apart"
            )
        settings = self.settings
        subscription = Subscription(
            name=sub_name,
            pattern=event_type,
            handler=handler,
            retries=settings.retries if retries is None else retries,
            timeout=settings.timeout if timeout is _UNSET else timeout,
            concurrency=(
                settings.concurrency
                if concurrency is None or isinstance(concurrency, Concurrency)
                else concurrency
            ),
            limit=concurrency if isinstance(concurrency, Concurrency) else None,
            throttle=throttle,
            rate_limit=rate_limit,
            debounce=debounce,
            batch=batch,
            priority=None if priority is False else priority,
            backoff=backoff or Backoff(),
            ordered_by=key_func(ordered_by),
            start_from=start_from,
            payload_model=payload_model,
            blocking=blocking,
            cancel_on=tuple((str(t), str(p)) for t, p in cancel_on),
        )
        self._subscriptions[sub_name] = subscription
        return subscription

    def schedule(
        self,
        name: str,
        when: str | timedelta,
        event: Event[Any],
        *,
        tz: str = "UTC",
        catch_up: CatchUp = "latest",
    ) -> Schedule:
        """Publish ``event`` at every due time of ``when`` (a cron expression in ``tz``, or
        a period), once per due time across every process running this bus.

        ``event`` is a template: each firing is a copy with an id made of ``name`` and the
        due time. ``catch_up`` says what happens to due times missed while no bus ran:
        ``"latest"`` fires the latest of them once, ``"all"`` each, ``"skip"`` none (see
        :mod:`nerve.schedules`). Running buses fire schedules; declare them before start.

        Raises:
            ValueError: a bad cron expression, period, time zone or name.
            SubscriptionError: the name is taken, or the bus is running.
        """
        if self._state not in ("new", "connected"):
            raise SubscriptionError("declare schedules before the bus starts")
        made = Schedule.make(name, when, event, tz=tz, catch_up=catch_up)
        self._later.add_schedule(made)
        return made

    def every(
        self,
        when: str | timedelta,
        *,
        event_type: str,
        payload: Any = None,
        name: str | None = None,
        tz: str = "UTC",
        catch_up: CatchUp = "latest",
        **options: Any,
    ) -> Callable[[H], H]:
        """Decorate a handler to run at every due time of ``when`` (cron or period).

        Subscribes the handler to ``event_type`` (``options`` as :meth:`on` takes them)
        and schedules that event (see :meth:`schedule`); the schedule's name is the
        subscription's.

        Example:
            ```python
            @bus.every("*/5 * * * *", event_type="inbox.poll", tz="Europe/Paris")
            async def poll(event: Event) -> None: ...
            ```
        """

        def register(handler: H) -> H:
            sub = self.subscribe(event_type, handler, name=name, **options)
            self.schedule(
                sub.name.replace(":", "."),
                when,
                Event(event_type=event_type, payload=payload),
                tz=tz,
                catch_up=catch_up,
            )
            return handler

        return register

    def include(self, other: EventBus) -> None:
        """Take over the subscriptions of ``other`` (an app split over modules).

        ``other`` is only a place where handlers were declared: it is never started
        itself, and from now on its ``publish``, ``publish_many``, ``status`` and ``dlq``
        act on this bus, so handlers that publish through their own module's bus reach
        this one. The subscriptions keep their names and options.

        Raises:
            SubscriptionError: a name is taken here already, or this bus is running.
        """
        if self._state != "new":
            raise SubscriptionError("include buses before this one starts or first publishes")
        clash = self._subscriptions.keys() & other._subscriptions.keys()
        if clash:
            raise SubscriptionError(f"subscriptions named {sorted(clash)} exist on both buses")
        if other._state != "new":
            raise SubscriptionError("include a bus that has not started or published")
        self._subscriptions.update(other._subscriptions)
        other._host = self
        other.dlq = self.dlq
        other.history = self.history

    def observe(self, observer: Observer) -> None:
        """Call ``observer``'s hooks as events are published, handled and failed.

        Add observers before the bus starts: running subscriptions keep the ones they
        started with.
        """
        self._observers.add(observer)

    @property
    def transport(self) -> Transport:
        """The transport this bus runs on."""
        return self._transport

    @property
    def running(self) -> bool:
        """True between :meth:`start` and :meth:`stop`: subscriptions are being served."""
        return self._state == "running"

    @property
    def subscriptions(self) -> dict[str, Subscription]:
        """The subscriptions by name (a copy)."""
        return dict(self._subscriptions)

    # publishing

    async def publish(
        self,
        event: Event[Any],
        *,
        timeout: float | None = _UNSET,
        delay: timedelta | float | None = None,
        at: datetime | None = None,
    ) -> Event[Any]:
        """Hand an event to every matching subscription; return the event as published.

        With ``delay`` (seconds or a timedelta) or ``at`` (an aware datetime), the event is
        kept in the store and handed to the transport when due, by whichever running bus
        claims it (within ``settings.timer_poll`` of the due time): durable on a durable
        store, never early, its ``event_id`` fixed now (so ``status`` shows it
        ``scheduled`` and :meth:`cancel_scheduled` can take it back). Scheduling the same
        event id twice keeps the first.

        Inside a handler, the event is stamped with ``causation_id`` (the handled event)
        and ``correlation_id`` (its chain) unless it carries them already. Returns once the
        transport has the event; outside handlers, waits while pending work is at its
        bound (inside, never: the handler's own progress is what frees room).

        Raises:
            BusFull: still no room after ``timeout`` (default ``settings.publish_timeout``).
            BusClosed: the bus has stopped.
            ChainTooDeep: inside a handler, the chain would exceed ``settings.chain_limit``
                (the handler's own event is then dead-lettered, unless it catches this).
        """
        if self._host is not None:
            return await self._host.publish(event, timeout=timeout, delay=delay, at=at)
        if self._state not in ("connected", "running", "stopping"):
            await self._connect()
        ctx = current()
        if ctx is not None and event.causation_id is None:
            event = self._caused_by(event, ctx.event)
        if delay is not None or at is not None:
            now = clock.time()
            due = due_time(delay, at, now)
            await self._later.schedule_event(event, due)
            if self._timers is not None and due - now < self.settings.timer_poll:
                self._timers.wake()
            return event
        if self._observers:
            event = self._observers.publishing(event)
        await self._store.record_published(event)
        await self._transport.publish(
            event,
            timeout=self.settings.publish_timeout if timeout is _UNSET else timeout,
            bounded=ctx is None,
        )
        if self._observers:
            self._observers.published((event,))
        return event

    async def publish_many(
        self, events: Iterable[Event[Any]], *, timeout: float | None = _UNSET
    ) -> list[Event[Any]]:
        """Publish many events at once; return them as published, in order.

        The same as :meth:`publish` for each event, in far fewer round trips where the
        transport can batch (a script call per 1,000 events on Redis, group commits on
        SQLite, pipelined confirms on RabbitMQ). Returns once the transport has every
        event. If it raises, some of the events may have been published; publishing them
        all again is safe (same ids: an event already handled is not handled again).

        Raises:
            BusFull, BusClosed, ChainTooDeep: as :meth:`publish`.
        """
        if self._host is not None:
            return await self._host.publish_many(events, timeout=timeout)
        if self._state not in ("connected", "running", "stopping"):
            await self._connect()
        ctx = current()
        batch = [
            self._caused_by(e, ctx.event) if ctx is not None and e.causation_id is None else e
            for e in events
        ]
        if not batch:
            return batch
        if self._observers:
            batch = [self._observers.publishing(e) for e in batch]
        await self._store.record_published_many(batch)
        await self._transport.publish_many(
            batch,
            timeout=self.settings.publish_timeout if timeout is _UNSET else timeout,
            bounded=ctx is None,
        )
        if self._observers:
            self._observers.published(batch)
        return batch

    async def cancel_scheduled(self, event_id: str) -> bool:
        """Take back an event published with a delay that is not due yet; True if it was
        still scheduled (then no subscription will get it)."""
        if self._host is not None:
            return await self._host.cancel_scheduled(event_id)
        return await self._later.cancel(event_id)

    async def scheduled(self, limit: int = 100) -> list[tuple[Event[Any], datetime]]:
        """Events published with a delay and not due yet, earliest first, with due times."""
        return await self._later.scheduled(limit)

    async def waits(
        self,
        *,
        subscription: str | None = None,
        event_id: str | None = None,
        event_type: str | None = None,
        limit: int | None = 100,
    ) -> list[WaitRecord]:
        """Runs suspended in ``wait_for``, oldest first: ``event_id`` is the run's event,
        ``event_type`` the awaited one (see :mod:`nerve.waits`)."""
        return await self._waits.waiting(
            subscription=subscription, event_id=event_id, event_type=event_type, limit=limit
        )

    async def cancel(
        self, event_id: str, subscription: str | None = None, *, reason: str = "cancelled"
    ) -> int:
        """Cancel the runs of an event that wait (``wait_for``) or retry: a waiting run
        resumes into :class:`RunCancelled` (settled as done); a retrying one is settled
        at its next attempt. Returns how many waiting or retrying runs were found."""
        if self._host is not None:
            return await self._host.cancel(event_id, subscription, reason=reason)
        return await self._waits.cancel_event(
            event_id, subscription, reason=reason, logged=self.history.event
        )

    def _caused_by(self, event: Event[Any], parent: Event[Any]) -> Event[Any]:
        depth = parent.chain_depth + 1
        if depth > self.settings.chain_limit:
            raise ChainTooDeep(
                f"publishing {event.event_type} from the handler of {parent.event_type} "
                f"{parent.event_id} would make the chain {parent.correlation_id} "
                f"{depth} deep (chain_limit={self.settings.chain_limit})"
            )
        correlation = (
            parent.correlation_id
            if event.correlation_id == event.event_id
            else event.correlation_id
        )
        return event.model_copy(
            update={
                "causation_id": parent.event_id,
                "correlation_id": correlation,
                "metadata": {**event.metadata, constants.CHAIN_DEPTH_KEY: str(depth)},
            }
        )

    # lifecycle

    async def start(self) -> None:
        """Connect and start handling events. Returns once running."""
        if self._state == "running":
            return
        await self._connect()
        self._settler = Settler(self._store, self._transport, on_released=self._forget)
        self._runners = {
            name: SubscriptionRunner(
                sub,
                self._transport,
                self._store,
                self._settler,
                Observers(self._observers.members),
                self._waits,
            )
            for name, sub in self._subscriptions.items()
        }
        await self._later.install()
        await self._waits.prime()
        self._timers = TimerService(
            self._store,
            {
                "event:": self._later.due_event,
                "wait:": self._waits.on_timer,
                "schedule:": self._later.due_schedule,
                DEFER_PREFIX: self._undefer,
            },
            poll=self.settings.timer_poll,
        )
        self._waits.wake_timers = self._timers.wake
        self._timers.start()
        if self._runners:
            self._watchdog = LoopWatchdog.acquire(self.settings.loop_watchdog)
        for runner in self._runners.values():
            runner.start()
        if self._runners and self._transport.parks:
            self._filer = ParkedFiler(self._file_parked_now)
            self._filer.start()
        self._state = "running"

    def _forget(self, deliveries: Sequence[Delivery]) -> None:
        for delivery in deliveries:
            runner = self._runners.get(delivery.subscription)
            if runner is not None:
                runner.forget(delivery.event.event_id)

    async def join(self, timeout: float | None = None) -> None:
        """Wait until nothing is pending for this bus's subscriptions.

        Every event delivered to them is then settled (done or dead-lettered), with no
        retry waiting. Handy in scripts and tests; on a shared durable transport it also
        waits for events that other processes publish meanwhile.

        Raises:
            TimeoutError: events are still unsettled after ``timeout`` seconds.
        """
        async with asyncio.timeout(timeout):
            await self._transport.wait_idle()

    async def stop(self, grace: float | None = None) -> None:
        """Stop: take no new deliveries, give in-flight handlers ``grace`` seconds, close.

        What was not handled stays with a durable transport for redelivery; an in-process
        transport loses it, and the bus logs it and keeps it in :attr:`unfinished`.
        """
        if self._state == "stopping":
            await self._stopped.wait()
            return
        if self._state in ("new", "stopped"):
            self._state = "stopped"
            await self._store.close()  # reopened by dlq / status calls after a stop
            return
        grace = self.settings.shutdown_grace if grace is None else grace
        self._state = "stopping"
        if self._timers is not None:
            await self._timers.stop()
            self._timers = None
            self._waits.wake_timers = lambda: None
        if self._filer is not None:
            await self._filer.stop()
            self._filer = None
        await asyncio.gather(*(runner.stop(grace) for runner in self._runners.values()))
        if self._settler is not None:
            await self._settler.close()
        await self._flush_history()
        self._runners = {}
        if self._watchdog is not None:
            self._watchdog.release()
            self._watchdog = None
        self.unfinished = await self._transport.close()
        await self._store.close()
        self._state = "stopped"
        self._stopped.set()
        if self.unfinished:
            log.warning(
                "the bus stopped with %d unfinished deliveries (lost: %s is in-process); first: %s",
                len(self.unfinished),
                redact(self.url),
                ", ".join(f"{d.subscription}/{d.event.event_id}" for d in self.unfinished[:5]),
            )

    async def start_processing(self) -> None:
        """Start, then run until cancelled; stop gracefully on cancellation (the seed's form)."""
        await self.start()
        try:
            await asyncio.Future()
        finally:
            await asyncio.shield(self.stop())

    async def __aenter__(self) -> EventBus:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Drain (see :meth:`drain`); on an exception, stop at once within the grace."""
        if exc_type is None:
            await self.drain()
        else:
            await self.stop()

    async def drain(self, grace: float | None = None) -> None:
        """Handle what is pending (until :meth:`join` returns) within ``grace`` seconds
        (default ``settings.shutdown_grace``), then :meth:`stop` with what is left of it.

        On a shared durable transport, pending includes what other processes publish
        meanwhile: a server stopping there usually calls :meth:`stop` instead.
        """
        grace = self.settings.shutdown_grace if grace is None else grace
        started = clock.monotonic()
        if self._state == "running":
            try:
                await self.join(grace)
            except TimeoutError:
                log.warning("events still unsettled after the %.1fs grace period", grace)
        await self.stop(max(0.0, grace - (clock.monotonic() - started)))

    # status

    async def status(self, event_id: str) -> EventStatus:
        """Per subscription that should handle the event: pending, done, failed or
        dead-lettered.

        The subscriptions are this bus's and every one declared with its store by a bus
        that connected to it (a worker elsewhere), so a publisher-only bus sees them too.
        """
        if self._host is not None:
            return await self._host.status(event_id)
        store = await self._ready_store()
        states = await store.states(event_id)
        reasons: dict[str, str] = {}
        for wait in await store.waits(event_id=event_id):
            if wait.kind == "wait" and states.get(wait.subscription) is not DeliveryState.DONE:
                states[wait.subscription] = DeliveryState.WAITING
        event_type = await store.event_type(event_id)
        if event_type is not None:
            patterns = await store.subscriptions()
            patterns.update((sub.name, sub.pattern) for sub in self._subscriptions.values())
            later = await self._later.is_scheduled(event_id)
            fresh = DeliveryState.SCHEDULED if later else DeliveryState.PENDING
            for name, pattern in patterns.items():
                if name not in states and matches(pattern, event_type):
                    states[name] = fresh
                    held = [] if later else await store.timers(f"{DEFER_PREFIX}{name}:{event_id}:")
                    if held:
                        states[name] = DeliveryState.DEFERRED
                        reasons[name] = json.loads(held[-1].body).get("reason", "")
        return EventStatus(
            event_id=event_id, event_type=event_type, subscriptions=states, reasons=reasons
        )

    # internals

    async def _connect(self) -> None:
        async with self._connecting:
            if self._state in ("connected", "running", "stopping"):
                return
            if self._state == "stopped":
                raise BusClosed("the bus has stopped")
            await self._store.open()
            await self._transport.connect()
            for sub in self._subscriptions.values():
                await self._transport.declare(sub.name, sub.pattern, start_from=sub.start_from)
            if self._subscriptions:
                await self._store.declare_subscriptions(
                    {sub.name: sub.pattern for sub in self._subscriptions.values()}
                )
            self._state = "connected"

    async def _flush_history(self) -> None:
        """Write the event log's buffer now (at stop, and before reading the log)."""
        if self._recorder is not None:
            await self._recorder.close()

    async def _history_store(self) -> Store:
        """The store of the bus running this one's subscriptions, with the event log's
        buffer written: what :attr:`history` reads."""
        bus = self._host or self
        store = await bus._ready_store()
        await bus._flush_history()
        return store

    async def _ready_store(self) -> Store:
        if self._state == "new":
            await self._connect()
        elif self._state == "stopped":
            await self._store.open()  # dead letters and status outlive the bus's run
        return self._store

    async def _file_parked(self) -> None:
        """File what the broker parked as dead letters (:mod:`nerve.parked`), if it parks
        and this bus is connected to it (not once it has stopped)."""
        if self._transport.parks and self._state in ("connected", "running"):
            await self._file_parked_now()

    async def _file_parked_now(self) -> None:
        await file_parked(self._transport, self._store, self._observers)

    async def _undefer(self, timer: Timer) -> None:
        """A delivery held back by a flow control is due: hand it back to its subscription."""
        body = json.loads(timer.body)
        await self._redeliver(Event.model_validate(body["event"]), body["subscription"])
        await self._store.delete_timer(timer.timer_id)

    async def _redeliver(self, event: Event[Any], subscription: str) -> None:
        if self._state not in ("connected", "running", "stopping"):
            await self._connect()
        await self._transport.publish(event, subscription=subscription)
