"""The consume loop of one subscription: dedupe -> handler -> settle -> retry / dead letter.

Up to ``concurrency`` worker tasks serve a subscription. A worker that finds the buffer
empty receives the next batch from the transport itself (one at a time: the others
park), then handles deliveries from the buffer. Workers wake each other in a chain: one
that takes a delivery while more wait wakes one other, so a handler that never suspends
lets its worker drain the batch alone, and handlers that await (an LLM call) bring in a
new worker at each await, up to ``concurrency``. A quiet subscription costs one parked
task; a busy one reuses its tasks instead of making one per event.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections import deque
from collections.abc import Awaitable, Callable, Hashable, Sequence
from typing import Any, TypeVar, cast

from nerve import clock, constants
from nerve.batching import Batcher
from nerve.context import HandlerContext, handling
from nerve.events import Event
from nerve.exceptions import (
    AlreadyHandled,
    CrashLoop,
    HandlerTimeout,
    Reject,
    Retry,
    RunCancelled,
)
from nerve.flow.controls import RateLimited, RejectItems
from nerve.flow.gate import FlowGate, Verdict
from nerve.observe.observer import Observers
from nerve.priority import PriorityBuffer
from nerve.records import AttemptError, DeadLetter, Timer
from nerve.settler import Settler, acknowledge
from nerve.stores.base import Store
from nerve.subscription import Subscription
from nerve.transports.base import Delivery, Transport
from nerve.waits import CANCELLED_STEP, Suspended, WaitService
from nerve.watchdog import watch_frames_of

log = logging.getLogger("nerve")

T = TypeVar("T")

#: Timers of deliveries held back by flow controls:
#: ``defer:<subscription>:<event id>:<deferral>``.
DEFER_PREFIX = "defer:"
#: Deliveries a subscription takes from the transport ahead of its workers.
MIN_PREFETCH = 128
#: How often, and how many times, stop() repeats the cancellation of a receiver that has
#: not ended yet.
RECEIVER_STOP_POLL = 0.02
RECEIVER_STOP_TRIES = 50
#: Longest wait between attempts to receive from a failing transport (or to ask a failing
#: store which events were handled), in seconds.
RETRY_MAX = 5.0


class SubscriptionRunner:
    """Runs one subscription's handler over the deliveries a transport hands it."""

    def __init__(
        self,
        subscription: Subscription,
        transport: Transport,
        store: Store,
        settler: Settler,
        observers: Observers | None = None,
        waits: WaitService | None = None,
    ) -> None:
        self.subscription = subscription
        self._waits = waits
        self._gate = (
            FlowGate(
                subscription.name,
                store,
                concurrency=subscription.limit,
                throttle=subscription.throttle,
                rate_limit=subscription.rate_limit,
                debounce=subscription.debounce,
            )
            if subscription.controlled
            else None
        )
        self._batcher = (
            Batcher(subscription.batch, self._run_batch, subscription.concurrency)
            if subscription.batch is not None
            else None
        )
        self._observers = observers or Observers()
        self._transport = transport
        self._store = store
        self._settler = settler
        self._prefetch = max(MIN_PREFETCH, 2 * subscription.concurrency)
        self._direct = (
            subscription.timeout is None
            and subscription.payload_model is None
            and not subscription.blocking
        )
        # The handler as an async one, typed once here (a cast per event costs a call).
        self._handler = cast(Callable[[Event[Any]], Awaitable[object]], subscription.handler)
        self._batch_handler = cast(
            Callable[[list[Event[Any]]], Awaitable[object]], subscription.handler
        )
        self._buffer: deque[Delivery] | PriorityBuffer = (
            deque()
            if subscription.priority is None
            else PriorityBuffer(None if subscription.priority is True else subscription.priority)
        )
        self._keyed: dict[Hashable, deque[Delivery]] = {}
        self._held = 0  # deliveries waiting behind their ordering key
        self._workers: set[asyncio.Task[None]] = set()
        self._parked: deque[asyncio.Future[None]] = deque()
        self._waking = 0  # workers woken (or started) that have not run yet
        self._receiver: asyncio.Task[Any] | None = None  # the worker receiving, if any
        # Ids being handled here -> a future that a duplicate waiting for the end sets up.
        self._active: dict[str, asyncio.Future[None] | None] = {}
        # Ids handled here lately (two generations of sets): a duplicate that was already
        # buffered when its twin finished is caught without asking the store again.
        self._recent: set[str] = set()
        self._recent_old: set[str] = set()
        self._recent_max = self._prefetch + subscription.concurrency
        self._stopping = False

    def start(self) -> None:
        self._wake_one()

    @property
    def name(self) -> str:
        """The subscription's name."""
        return self.subscription.name

    def loop_blocked(self, delivery: Delivery, seconds: float) -> None:
        """The loop watchdog found this handler holding the event loop ``seconds``."""
        if self._observers:
            self._observers.blocked(self.subscription.name, delivery.event, seconds)

    def holding(self) -> dict[str, str]:
        """What this runner holds now, by event id: waiting in its buffer, waiting behind
        its ordering key, or being handled (for diagnostics: where an event is)."""
        held = {d.event.event_id: "buffered" for d in self._buffer}
        for queue in self._keyed.values():
            held.update((d.event.event_id, "waiting behind its key") for d in queue)
        held.update((event_id, "being handled") for event_id in self._active)
        return held

    def forget(self, event_id: str) -> None:
        """Stop treating ``event_id`` as handled (its success could not be recorded)."""
        self._recent.discard(event_id)
        self._recent_old.discard(event_id)

    async def stop(self, grace: float) -> None:
        """Take no more deliveries, let in-flight handlers finish for ``grace`` seconds.

        Deliveries received but not started are released for redelivery; handlers still
        running after the grace period are cancelled and their deliveries left unsettled
        (a durable transport redelivers them; never ack on cancellation).
        """
        self._stopping = True
        receiver = self._receiver
        if receiver is not None:
            receiver.cancel()  # it waits on the transport, handling nothing
            # A client library may swallow a cancellation that lands mid-command (redis-py
            # under Python 3.11's wait_for): insist, briefly, until the receiver has ended.
            for _ in range(RECEIVER_STOP_TRIES):
                done, _pending = await asyncio.wait({receiver}, timeout=RECEIVER_STOP_POLL)
                if done:
                    break
                receiver.cancel()
        for fut in self._parked:
            fut.cancel()
        unstarted = list(self._buffer)
        self._buffer.clear()
        if self._batcher is not None:
            unstarted.extend(self._batcher.take_all())
        for queue in self._keyed.values():
            unstarted.extend(queue)
            queue.clear()
        for delivery in unstarted:
            await delivery.release()
        running = self._workers | (self._batcher.running if self._batcher else set())
        if not running:
            return
        _, late = await asyncio.wait(running, timeout=grace)
        for task in late:
            task.cancel()
        await asyncio.gather(*late, return_exceptions=True)
        if late:
            log.warning(
                "%s: %d handler(s) still running after the %.1fs grace period were "
                "cancelled; their events are left for redelivery",
                self.subscription.name,
                len(late),
                grace,
            )

    # the workers

    def _wake_one(self) -> None:
        """Get one more worker going, unless one is already on its way."""
        if self._waking or self._stopping:
            return
        while self._parked:
            fut = self._parked.popleft()
            if not fut.done():
                fut.set_result(None)
                self._waking += 1
                return
        if len(self._workers) < self.subscription.concurrency:
            task = asyncio.create_task(self._work(), name=f"nerve-worker:{self.subscription.name}")
            self._workers.add(task)
            task.add_done_callback(self._workers.discard)
            self._waking += 1

    def _ensure_receiver(self) -> None:
        if self._receiver is None and not self._waking:
            self._wake_one()

    async def _work(self) -> None:
        buffer = self._buffer
        loop = asyncio.get_running_loop()
        key_of = self.subscription.ordered_by
        self._waking -= 1
        while not self._stopping:
            if buffer:
                delivery = buffer.popleft()
                if buffer:
                    if not self._waking:
                        self._wake_one()
                elif self._receiver is None:
                    # Nobody is receiving: if this handler suspends, bring in a worker
                    # that will. (A handler that never suspends lets this worker receive
                    # the next batch itself, and the check then finds it receiving.)
                    loop.call_soon(self._ensure_receiver)
                if self._batcher is not None:
                    self._held += 1  # gathered: counts against the prefetch until run
                    self._batcher.add(delivery)
                    continue
                try:
                    if key_of is not None:
                        await self._handle_in_order(delivery, key_of(delivery.event))
                    else:
                        await self._handle(delivery)
                except Exception:  # the store or transport failed, not the handler
                    log.exception(
                        "%s: could not settle %s; leaving it for redelivery",
                        self.subscription.name,
                        delivery.event.event_id,
                    )
                    await self._release(delivery)
            elif self._receiver is None and self._held < self._prefetch:
                self._receiver = asyncio.current_task()
                try:
                    batch = await self._receive(self._prefetch - self._held)
                finally:
                    self._receiver = None
                if batch is None:
                    return  # the transport is closed
                buffer.extend(batch)
            else:
                fut = loop.create_future()
                self._parked.append(fut)
                await fut
                self._waking -= 1

    async def _receive(self, room: int) -> Sequence[Delivery] | None:
        """The next batch, without the duplicates of events already handled."""
        name = self.subscription.name
        batch = await self._until_done("receive", lambda: self._transport.receive(name, room))
        if not batch:
            return None
        ids = [d.event.event_id for d in batch]
        # While the store is down nothing could be recorded anyway: the batch waits for it,
        # neither run again blind nor handed back (which would spend attempts).
        done = await self._until_done(
            "checking for handled events", lambda: self._store.done_among(name, ids)
        )
        if not done:
            return batch
        await acknowledge(self._transport, [d for d in batch if d.event.event_id in done])
        return [d for d in batch if d.event.event_id not in done]

    async def _until_done(self, doing: str, call: Callable[[], Awaitable[T]]) -> T:
        """``call()``, again and again with a growing pause while the broker or the store
        fails: a worker never gives up on its subscription."""
        failures = 0
        while True:
            try:
                return await call()
            except Exception:
                failures += 1
                delay = min(RETRY_MAX, 0.1 * 2**failures)
                log.exception(
                    "%s: %s failed; retrying in %.1fs", self.subscription.name, doing, delay
                )
                await clock.sleep(delay)

    async def _release(self, delivery: Delivery) -> None:
        try:
            await delivery.nack(self.subscription.backoff.delay(delivery.attempt))
        except Exception:  # the broker will redeliver after its own timeout
            log.exception(
                "%s: could not release %s", self.subscription.name, delivery.event.event_id
            )

    async def _handle_in_order(self, delivery: Delivery, key: Hashable) -> None:
        queue = self._keyed.get(key)
        if queue is not None:  # another worker is on this key: it takes this one after
            queue.append(delivery)
            self._held += 1
            return
        self._keyed[key] = queue = deque()
        try:
            await self._handle(delivery)
            while queue:
                self._held -= 1
                await self._handle(queue.popleft())
        finally:
            del self._keyed[key]

    # one delivery

    async def _handle(self, delivery: Delivery) -> None:
        event = delivery.event
        event_id = event.event_id
        active = self._active
        while event_id in active:
            # A duplicate of an event being handled (its broker redelivered it after a
            # lost connection, or it was published twice): wait for the outcome. Acking
            # it now would lose the event if that handling fails, since its own
            # settlement may reach nothing but a dead connection.
            waiter = active[event_id]
            if waiter is None:
                waiter = active[event_id] = asyncio.get_running_loop().create_future()
            await asyncio.shield(waiter)
        if event_id in self._recent or event_id in self._recent_old:
            await delivery.ack()  # a duplicate of an event just handled here
            return
        active[event_id] = None
        attempt = delivery.attempt
        try:
            if attempt > 1 and (
                await self._dead_already(delivery)
                or await self._crash_loop(delivery)
                or await self._cancelled_already(delivery)
            ):
                return
            if self._gate is not None:
                verdict = await self._gate.admit(event)
                if verdict.action != "go":
                    await self._held_back(delivery, verdict)
                    return
                try:
                    await self._run(delivery, attempt)
                finally:
                    await self._gate.done(verdict)
                return
            await self._run(delivery, attempt)
        finally:
            waiter = active.pop(event_id, None)
            if waiter is not None:
                waiter.set_result(None)

    async def _run(self, delivery: Delivery, attempt: int) -> None:
        """Run the handler (again, in place, for an ordered subscription's retries) and
        settle the delivery."""
        sub = self.subscription
        event = delivery.event
        event_id = event.event_id
        observers = self._observers
        while True:
            ctx = HandlerContext(event, sub.name, attempt, self._store, self._waits)
            token = handling.set(ctx)
            if observers:
                observers.started(sub.name, event, ctx)
            started = time.perf_counter() if observers else 0.0
            try:
                if self._direct:
                    await self._handler(event)
                else:
                    await self._invoke(event)
            except AlreadyHandled:
                await delivery.ack()  # its transaction found another worker's mark
                return
            except Suspended:
                if observers:
                    observers.waiting(sub.name, event, time.perf_counter() - started, ctx)
                await self._suspend(delivery, ctx)
                return
            except RunCancelled:
                if observers:
                    observers.cancelled(sub.name, event, time.perf_counter() - started, ctx)
                await self._finished(ctx)
                await self._settler.done(delivery)
                return
            except Exception as exc:  # noqa: BLE001  # any handler failure is data
                error = exc
            else:
                if observers:
                    observers.handled(sub.name, event, time.perf_counter() - started, ctx)
                if sub.cancel_on and (attempt > 1 or "nerve.waits" in ctx.extensions):
                    await self._finished(ctx)
                recent = self._recent
                recent.add(event_id)
                if len(recent) > self._recent_max:
                    self._recent_old = recent
                    self._recent = set()
                await self._settler.done(delivery)
                return
            finally:
                handling.reset(token)
            seconds = time.perf_counter() - started if observers else 0.0
            delay = await self._failed(event, error, attempt)
            if observers:
                observers.failed(sub.name, event, error, seconds, ctx, retry_in=delay)
            if sub.cancel_on:
                if delay is None:  # dead-lettered: it listens no more
                    await self._finished(ctx)
                elif attempt == 1 and self._waits is not None:  # retried: it listens
                    await self._waits.watch_cancel(self._store, event, sub.name, sub.cancel_on)
            if delay is None:
                await delivery.reject()
                return
            if sub.ordered_by is None:
                await delivery.nack(delay)
                return
            # Ordered: retry in place, so later events of the same key keep waiting.
            await clock.sleep(delay)
            attempt += 1

    async def _run_batch(self, group: Sequence[Delivery]) -> None:
        """Run the handler on a batch and settle each of its deliveries on its own."""
        sub = self.subscription
        observers = self._observers
        events = [d.event for d in group]
        started = time.perf_counter()
        try:
            try:
                if sub.timeout is None:
                    await self._batch_handler(events)
                else:
                    async with asyncio.timeout(sub.timeout):
                        await self._batch_handler(events)
            except RejectItems as exc:
                await self._settle_batch(group, started, rejected=exc.items)
            except Exception as exc:  # noqa: BLE001  # the batch failed: each is retried
                seconds = time.perf_counter() - started
                for delivery in group:
                    event = delivery.event
                    delay = await self._failed(event, exc, delivery.attempt)
                    if observers:
                        ctx = HandlerContext(event, sub.name, delivery.attempt, self._store)
                        observers.failed(sub.name, event, exc, seconds, ctx, retry_in=delay)
                    if delay is None:
                        await delivery.reject()
                    else:
                        await delivery.nack(delay)
            else:
                await self._settle_batch(group, started, rejected={})
        except Exception:  # the store or transport failed, not the handler
            log.exception("%s: could not settle a batch; leaving it for redelivery", sub.name)
            for delivery in group:
                await self._release(delivery)
        finally:
            self._held -= len(group)

    async def _settle_batch(
        self, group: Sequence[Delivery], started: float, *, rejected: dict[str, str]
    ) -> None:
        sub = self.subscription
        observers = self._observers
        seconds = time.perf_counter() - started
        for delivery in group:
            event = delivery.event
            ctx = HandlerContext(event, sub.name, delivery.attempt, self._store)
            why = rejected.get(event.event_id)
            if why is None:
                if observers:
                    observers.handled(sub.name, event, seconds, ctx)
                await self._settler.done(delivery)
                continue
            error = Reject(why)
            await self._failed(event, error, delivery.attempt)
            if observers:
                observers.failed(sub.name, event, error, seconds, ctx, retry_in=None)
            await delivery.reject()

    async def _held_back(self, delivery: Delivery, verdict: Verdict) -> None:
        """Settle a delivery its flow controls hold back (see :mod:`nerve.flow.gate`)."""
        sub = self.subscription
        event = delivery.event
        if verdict.action == "defer":
            body = json.dumps(
                {
                    "subscription": sub.name,
                    "event": verdict.event.model_dump(mode="json"),
                    "reason": verdict.reason,
                }
            )
            # One timer per deferral: the timer loop deletes a timer it handed back, and a
            # deferral of the same event meanwhile (in another process) must not be it.
            timer_id = f"{DEFER_PREFIX}{sub.name}:{event.event_id}:{uuid.uuid4().hex[:12]}"
            await self._store.add_timer(Timer(timer_id=timer_id, due=verdict.until, body=body))
            await delivery.ack()
            return
        log.info("%s: %s %s: %s", sub.name, event.event_type, event.event_id, verdict.reason)
        if verdict.action == "drop":
            await self._settler.done(delivery)
            return
        await self._failed(event, RateLimited(verdict.reason), delivery.attempt)
        await delivery.reject()

    async def _suspend(self, delivery: Delivery, ctx: HandlerContext) -> None:
        """The handler waits (``wait_for``): settle the delivery, holding nothing.

        Acknowledged without a done mark: the wait's answer redelivers the event, and
        the handler runs again then. With ``cancel_on``, the run listens for its
        cancellation meanwhile.
        """
        sub = self.subscription
        if sub.cancel_on and self._waits is not None:
            await self._waits.watch_cancel(self._store, ctx.event, sub.name, sub.cancel_on)
        await delivery.ack()

    async def _finished(self, ctx: HandlerContext) -> None:
        """The run ended: forget the cancellations it listened for."""
        sub = self.subscription
        if sub.cancel_on and self._waits is not None:
            await self._waits.unwatch_cancel(self._store, ctx.event, sub.name, len(sub.cancel_on))

    async def _cancelled_already(self, delivery: Delivery) -> bool:
        """Whether this retried run was cancelled (``cancel_on``) meanwhile; then settle
        it as done without running it. Asked only of subscriptions with ``cancel_on``."""
        sub = self.subscription
        if not sub.cancel_on:
            return False
        event = delivery.event
        if await self._store.step_result(sub.name, event.event_id, CANCELLED_STEP) is None:
            return False
        log.info("%s: %s %s was cancelled", sub.name, event.event_type, event.event_id)
        ctx = HandlerContext(event, sub.name, delivery.attempt, self._store, self._waits)
        if self._observers:
            self._observers.cancelled(sub.name, event, 0.0, ctx)
        await self._finished(ctx)
        await self._settler.done(delivery)
        return True

    async def _dead_already(self, delivery: Delivery) -> bool:
        """Whether this redelivered event is dead-lettered here already; then settle it.

        A process can die between writing a dead letter and settling the delivery (on
        RabbitMQ a retry's original is held unsettled for two seconds: see
        ``nerve.transports.amqp.waits``); its broker then hands the event out again.
        Running it would run a given-up event once more and replace its dead letter, and
        every attempt's error in it, with one holding only the last. A replay takes the
        dead letter first, so a replayed event is not caught here. Asked on redeliveries
        only: first attempts cost nothing.
        """
        sub = self.subscription
        found = await self._store.dead_letters(
            event_id=delivery.event.event_id, subscription=sub.name, limit=1
        )
        if not found:
            return False
        log.info(
            "%s: %s %s is dead-lettered already: settled without running it again",
            sub.name,
            delivery.event.event_type,
            delivery.event.event_id,
        )
        await delivery.reject()
        return True

    async def _crash_loop(self, delivery: Delivery) -> bool:
        """Count this start of a redelivered event; dead-letter it if it keeps coming back.

        A handler that kills its process reports no error, so the retry budget cannot
        count its failures: instead, every start of a redelivery is counted in the store
        (first attempts are not, to keep the common path free of writes), in the pair's
        counter ``constants.STARTS_COUNTER``. When an event comes back after
        ``retries + 1`` counted starts (this start being number ``retries + 2``), it is
        dead-lettered with :class:`CrashLoop` instead of being run again: at most
        ``retries + 2`` runs in all. A delivery that was only prefetched by a process
        that died is counted when it does start, never before, so it is not mistaken for
        a crash. Taking the dead letter (a replay) forgets the count.
        """
        sub = self.subscription
        event = delivery.event
        store = self._store
        totals = await store.add_to(
            sub.name, event.event_id, constants.STARTS_COUNTER, {"starts": 1}
        )
        before = int(totals["starts"]) - 1  # counted starts before this one
        if before <= sub.retries:
            return False
        exc = CrashLoop(
            f"{sub.name} started {event.event_type} {event.event_id} {before} time(s) after "
            "its first attempt and never finished: the process handling it died each time"
        )
        errors = await store.take_failures(sub.name, event.event_id)
        errors.append(AttemptError.from_exception(exc, delivery.attempt))
        entry = DeadLetter(
            event=event, subscription=sub.name, attempts=delivery.attempt, errors=errors
        )
        await store.add_dead_letter(entry)
        if self._observers:
            ctx = HandlerContext(event, sub.name, delivery.attempt, store)
            self._observers.failed(sub.name, event, exc, 0.0, ctx, retry_in=None)
        await delivery.reject()
        return True

    async def _invoke(self, event: Event[Any]) -> None:
        sub = self.subscription
        arg = sub.prepare(event)
        if sub.timeout is None:
            await self._call(arg)
            return
        try:
            async with asyncio.timeout(sub.timeout) as scope:
                await self._call(arg)
        except TimeoutError as exc:
            if scope.expired():
                raise HandlerTimeout(
                    f"{sub.name} did not finish {event.event_type} {event.event_id} "
                    f"within its {sub.timeout}s timeout"
                ) from exc
            raise

    async def _call(self, arg: Event[Any]) -> None:
        handler = self.subscription.handler
        if self.subscription.blocking:
            # In a thread, with this task's context (nerve.current() works there).
            await asyncio.to_thread(handler, arg)
        else:
            await self._handler(arg)

    async def _failed(self, event: Event[Any], exc: Exception, attempt: int) -> float | None:
        """Record a failed attempt; return the delay before a retry, or None if dead-lettered."""
        sub = self.subscription
        # The outcome's log line is nerve.observe.logs.EventLog's (an observer every bus has).
        error = AttemptError.from_exception(exc, attempt)
        if isinstance(exc, Reject) or attempt > sub.retries:
            errors = await self._store.take_failures(sub.name, event.event_id)
            errors.append(error)
            entry = DeadLetter(event=event, subscription=sub.name, attempts=attempt, errors=errors)
            await self._store.add_dead_letter(entry)
            return None
        await self._store.add_failure(sub.name, event.event_id, error)
        if isinstance(exc, Retry) and exc.delay is not None:
            delay = exc.delay
        else:
            delay = sub.backoff.delay(attempt)
        return delay


# The loop watchdog knows a handler's frames by this coroutine's code (see nerve.watchdog).
watch_frames_of(SubscriptionRunner._handle.__code__)
