"""Durable waits: a handler suspends until a matching event (or its timeout) resumes it.

``await wait_for("refund.approval.decided", match={"payload.refund_id": 7},
timeout=timedelta(days=3))`` inside a handler returns the matching event, or None when
the timeout passed first. In between, nothing is held: no worker slot, no lease, no
in-flight delivery.

How it works (every transport, every store):

1. The n-th ``wait_for`` of a run (subscription, event) is named ``wait:n`` (or ``name=``).
   If the store holds its answer (a step result ``nerve.wait:<name>``), it is returned:
   that is how a resumed run gets through waits it passed before.
2. Otherwise the wait is indexed in the store by awaited type and match key
   (:class:`nerve.stores.base.WaitStore`), with a timer for its timeout; then the event
   log (or, on an in-process bus without one, a ring of recent events) is searched for
   a matching event published since the run's event was. Found: the handler goes on
   with it at once. Not found: :class:`Suspended` ends the attempt, and the runner
   settles the delivery as *waiting* (acknowledged, not marked done).
3. Every bus matches the events it publishes against the waits once they are in the
   event log (the log's writer calls :meth:`WaitService.match`). Registering (index,
   then look back) and matching (log, then look up waits) are each ordered writes then
   reads on one store, so an event published at any moment after the run's event is
   found by one side or the other, or both: never by neither. That is the race other
   systems lose (an event sent right after the wait starts).
4. Answering is the creation of the wait's answer timer, which only one creator wins
   (the event, the timeout, a cancellation: the first wins). The winner records the
   answer as the wait's step result, drops the wait, and redelivers the run's event to
   its subscription; the handler runs again from the top, its steps and earlier waits
   replayed from the store. A process dying mid-way leaves the answer timer to come
   due, and another process finishes the job.

What runs again on resume: the handler's code outside ``step()`` calls (cheap, and
deterministic up to the wait: waits are named by their order, so a handler must reach
them in the same order). Code in steps, and the waits themselves, do not.
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections import defaultdict, deque
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from nerve import clock
from nerve.context import HandlerContext, current
from nerve.events import Event
from nerve.exceptions import ConfigurationError, NerveError, RunCancelled
from nerve.matching import check_paths, matches, value_at
from nerve.observe.observer import Observer
from nerve.records import DeliveryState, EventRecord, Timer, WaitRecord
from nerve.stores.base import Store

log = logging.getLogger("nerve")

#: Step (``StepStore``) under which a wait's answer is kept: ``nerve.wait:<name>``.
ANSWER_STEP = "nerve.wait:"
#: Step recording that a run was cancelled (read when a retried run starts).
CANCELLED_STEP = "nerve.cancelled"
#: Seconds an answer timer is held by the process answering, before another may finish it.
ANSWER_LEASE = 30.0
#: Events published up to this many seconds before the run's event still answer its
#: waits (clocks of publishing hosts differ a little).
CLOCK_SKEW = 1.0
#: The in-process ring of recent events (buses without an event log) keeps this many...
RING_SIZE = 100_000
#: ...for at most this many seconds.
RING_AGE = 3600.0


class Suspended(BaseException):  # control flow, like CancelledError
    """Raised by ``wait_for`` to end the attempt while the run waits.

    A BaseException so that a handler's ``except Exception`` does not swallow it; the
    runner settles the delivery as waiting.
    """

    def __init__(self, wait: WaitRecord) -> None:
        super().__init__(f"waiting for {wait.event_type} {wait.match}")
        self.wait = wait


async def wait_for(
    event_type: str,
    *,
    match: Mapping[str, Any] | None = None,
    timeout: timedelta | float | None = None,
    name: str | None = None,
    info: Mapping[str, Any] | None = None,
) -> Event[Any] | None:
    """Inside a handler: the next ``event_type`` event matching ``match``, or None on timeout.

    Durable: the handler is suspended (holding nothing) until such an event is
    published by any process, then runs again from the top on any worker, its
    ``step()`` results and earlier waits replayed from the store. Any matching event
    published after the handled event counts, even one published before this call.

    Args:
        event_type: the awaited event's type.
        match: paths of the awaited event and the values they must have, e.g.
            ``{"payload.refund_id": 7}`` or ``{"correlation_id": event.correlation_id}``.
        timeout: how long to wait (default ``settings.wait_timeout``, at most
            ``settings.max_wait_timeout``).
        name: the wait's name within the run (default ``wait:<n>``, by call order).
        info: shown with the waiting run by ``nerve waits`` and the dashboard.

    Raises:
        NerveError: called outside a handler.
        RunCancelled: the run was cancelled while it waited.
    """
    ctx = current()
    if ctx is None or ctx.waiter is None:
        raise NerveError("wait_for works only inside a handler run by a bus")
    seconds = timeout.total_seconds() if isinstance(timeout, timedelta) else timeout
    found = dict(match or {})
    check_paths(found)
    return await ctx.waiter.wait(ctx, event_type, found, seconds, name, info or {})


def answer_timer_id(wait_id: str) -> str:
    return f"wait:{wait_id}:answer"


def timeout_timer_id(wait_id: str) -> str:
    return f"wait:{wait_id}:timeout"


class RecentEvents:
    """The events this process published lately, by type, for a bus with no event log
    (the in-process transport: every publish goes through this process).

    Adding is a dict lookup and a deque append per event (every publish pays it); the
    times are the events' own timestamps, read only when a wait looks back.
    """

    def __init__(self, size: int = RING_SIZE, age: float = RING_AGE) -> None:
        self._by_type: defaultdict[str, deque[Event[Any]]] = defaultdict(lambda: deque(maxlen=size))
        self._types = size
        self._age = age

    def add(self, events: Sequence[Event[Any]]) -> None:
        by_type = self._by_type
        for event in events:
            by_type[event.event_type].append(event)
        if len(by_type) > self._types:  # a flood of types: start afresh
            by_type.clear()

    def since(self, event_type: str, since: float) -> list[Event[Any]]:
        ring = self._by_type.get(event_type)
        if not ring:
            return []
        horizon = max(since, clock.time() - self._age)
        found: list[Event[Any]] = []
        for event in reversed(ring):  # newest first: stop at the horizon
            if published_at(event) < horizon:
                break
            found.append(event)
        found.reverse()
        return found


class RecentMatcher(Observer):
    """An in-process bus's stand-in for the event log's writer: keeps what is published
    in the ring and, once this bus's store may hold waits, matches it to them (one task
    per burst of publishes)."""

    def __init__(self, waits: WaitService, recent: RecentEvents) -> None:
        self._waits = waits
        self._recent = recent
        self._pending: list[Event[Any]] = []
        self._tasks: set[asyncio.Task[None]] = set()

    def published(self, events: Sequence[Event[Any]]) -> None:
        self._recent.add(events)  # at once: a wait registered next looks back here
        if not self._waits.may_have_waits:
            return
        if not self._pending:
            task = asyncio.get_running_loop().create_task(self._match(), name="nerve-waits")
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        self._pending.extend(events)

    async def _match(self) -> None:
        await asyncio.sleep(0)  # let the burst gather
        events, self._pending = self._pending, []
        try:
            await self._waits.match(events, remembered=True)
        except Exception:
            log.exception("could not match %d events to waiting handlers", len(events))


class WaitService:
    """Registers, matches, answers and resumes the waits of a bus (see the module).

    Args:
        store: the bus's store, ready (a callable: the bus connects it lazily).
        redeliver: hands a run's event to one subscription again (the resume).
        publish: the bus's publish (for handlers that ask before they wait).
        settings_timeout: (default, maximum) wait timeouts in seconds.
        recent: the in-process ring to look back in, when the bus keeps no event log.
        lookback: False when neither an event log nor a ring is there to look back in.
    """

    def __init__(
        self,
        store: Callable[[], Awaitable[Store]],
        redeliver: Callable[[Event[Any], str], Awaitable[None]],
        publish: Callable[[Event[Any]], Awaitable[Event[Any]]],
        *,
        default_timeout: float,
        max_timeout: float,
        recent: RecentEvents | None,
        lookback: bool = True,
    ) -> None:
        self._store = store
        self._redeliver = redeliver
        self._publish = publish
        self._default_timeout = default_timeout
        self._max_timeout = max_timeout
        self._recent = recent
        self._lookback = lookback
        self.wake_timers: Callable[[], None] = lambda: None
        #: False while this process knows its store holds no wait (an in-process bus
        #: then matches nothing: see :class:`RecentMatcher`); True once one may exist.
        self.may_have_waits = recent is None

    async def prime(self) -> None:
        """Find out whether the store holds waits already (made by an earlier run)."""
        if not self.may_have_waits:
            store = await self._store()
            self.may_have_waits = bool(await store.waits(limit=1))

    # in the handler

    async def publish(self, event: Event[Any]) -> Event[Any]:
        """Publish through the bus (a request that a wait of the run answers)."""
        return await self._publish(event)

    async def wait(
        self,
        ctx: HandlerContext,
        event_type: str,
        match: Mapping[str, Any],
        timeout: float | None,
        name: str | None,
        info: Mapping[str, Any],
    ) -> Event[Any] | None:
        seen: list[str] = ctx.extensions.setdefault("nerve.waits", [])
        name = name or f"wait:{len(seen) + 1}"
        store = ctx.store
        recorded = await store.step_result(ctx.subscription, ctx.event.event_id, ANSWER_STEP + name)
        if recorded is not None:
            return self._answered(seen, json.loads(recorded))
        if not self._lookback:
            raise ConfigurationError(
                "wait_for looks back in the event log, and this bus keeps none: "
                "leave settings.history unset (or true) to use waits"
            )
        seconds = self._default_timeout if timeout is None else timeout
        if not 0 < seconds <= self._max_timeout:
            raise ValueError(
                f"wait_for timeout {seconds}s is not within (0, {self._max_timeout}] "
                "(settings.max_wait_timeout)"
            )
        now = clock.time()
        run = ctx.event
        wait = WaitRecord(
            wait_id=wait_id(ctx.subscription, run.event_id, name),
            subscription=ctx.subscription,
            name=name,
            event=run,
            event_type=event_type,
            match=dict(match),
            since=published_at(run) - CLOCK_SKEW,
            deadline=now + seconds,
            info=dict(info),
            created_at=now,
        )
        # Index first, then look back: see the module docstring (3.).
        self.may_have_waits = True
        await store.add_wait(wait)
        await store.add_timer(
            Timer(timer_id=timeout_timer_id(wait.wait_id), due=now + seconds, body="{}")
        )
        self.wake_timers()
        answered = set(seen)
        for event in await self._look_back(store, wait):
            if event.event_id in answered or event.event_id == run.event_id:
                continue
            if matches(event, wait.match):
                if await self._answer(store, wait, event, resume=False):
                    await self._settle(store, wait, _answer_json(event))
                    return self._answered(seen, {"event": event.model_dump(mode="json")})
                break  # answered meanwhile by someone else
        # Answered meanwhile (by the event log's matcher, or a cancellation)?
        timer = await store.timer(answer_timer_id(wait.wait_id))
        if timer is not None:
            body = json.loads(timer.body)
            return self._answered(seen, body["answer"])
        raise Suspended(wait)

    def _answered(self, seen: list[str], answer: Mapping[str, Any]) -> Event[Any] | None:
        if answer.get("cancelled"):
            raise RunCancelled(answer.get("reason") or "the run was cancelled")
        data = answer.get("event")
        event = None if data is None else Event.model_validate(data)
        seen.append(event.event_id if event is not None else "")
        return event

    async def _look_back(self, store: Store, wait: WaitRecord) -> list[Event[Any]]:
        if self._recent is not None:
            return self._recent.since(wait.event_type, wait.since)
        records = await store.history_of_type(wait.event_type, wait.since, 1000)
        return [r.event for r in records]

    # answering

    def remember(self, events: Sequence[Event[Any]]) -> None:
        """Keep these just-published events in the ring (buses without an event log)."""
        if self._recent is not None:
            self._recent.add(events)

    async def match(self, events: Sequence[Event[Any]], *, remembered: bool = False) -> None:
        """Answer the waits these newly logged events match (the event log's writer, or
        the in-process ring, calls this for every event published)."""
        if not remembered:
            self.remember(events)
        store = await self._store()
        answered: set[str] = set()
        for wait, event in await store.waits_for(events):
            if event.event_id == wait.event.event_id or wait.wait_id in answered:
                continue
            answered.add(wait.wait_id)
            if wait.kind == "cancel":
                await self.cancel_run(wait.subscription, wait.event, reason=_cancel_reason(event))
            else:
                await self._answer(store, wait, event, resume=True)

    async def _answer(
        self,
        store: Store,
        wait: WaitRecord,
        event: Event[Any] | None,
        *,
        resume: bool,
        cancelled: str | None = None,
    ) -> bool:
        """Try to answer ``wait``; True if this call won (then, with ``resume``, the run
        is resumed now; a crash leaves the answer timer to finish it)."""
        run = wait.event
        step = ANSWER_STEP + wait.name
        if await store.step_result(wait.subscription, run.event_id, step) is not None:
            return False  # answered and settled already (its answer timer is gone)
        answer = _answer_json(event)
        if cancelled is not None:
            answer = {"cancelled": True, "reason": cancelled}
        body = json.dumps({"wait": wait.model_dump(mode="json"), "answer": answer})
        won = await store.add_timer(
            Timer(
                timer_id=answer_timer_id(wait.wait_id),
                due=clock.time() + ANSWER_LEASE,
                body=body,
            )
        )
        if won and resume:
            await self._settle(store, wait, answer, resume=True)
        return won

    async def _settle(
        self, store: Store, wait: WaitRecord, answer: Mapping[str, Any], *, resume: bool = False
    ) -> None:
        """Record the answer, drop the wait, resume the run; then forget the timers.
        Each step is safe to repeat (a crash repeats them when the timer comes due)."""
        run = wait.event
        await store.record_step(
            wait.subscription, run.event_id, ANSWER_STEP + wait.name, json.dumps(answer)
        )
        await store.remove_wait(wait.wait_id)
        await store.delete_timer(timeout_timer_id(wait.wait_id))
        if resume:
            await self._redeliver(run, wait.subscription)
        await store.delete_timer(answer_timer_id(wait.wait_id))

    # timers

    async def on_timer(self, timer: Timer) -> None:
        """A wait's timeout came due, or an answer whose process died is finished."""
        store = await self._store()
        wait_ref = timer.timer_id.removeprefix("wait:")
        if wait_ref.endswith(":answer"):
            body = json.loads(timer.body)
            wait = WaitRecord.model_validate(body["wait"])
            await self._settle(store, wait, body["answer"], resume=True)
            return
        wait_id = wait_ref.removesuffix(":timeout")
        found = await self._find(store, wait_id)
        if found is None:  # answered already
            await store.delete_timer(timer.timer_id)
            return
        if not await self._answer(store, found, None, resume=True):
            await store.delete_timer(timer.timer_id)

    async def _find(self, store: Store, wait_id: str) -> WaitRecord | None:
        event_id = wait_id.split("/", 1)[0]
        for wait in await store.waits(event_id=event_id):
            if wait.wait_id == wait_id:
                return wait
        return None

    # cancelling

    async def watch_cancel(
        self, store: Store, run: Event[Any], subscription: str, cancel_on: Sequence[tuple[str, str]]
    ) -> None:
        """Index the cancellations a run listens for (``cancel_on``) while it waits or
        retries: ``(event type, path)``, the path's value taken from the run's event.
        Like a wait, each looks back for a cancelling event published since the run's."""
        now = clock.time()
        for index, (event_type, path) in enumerate(cancel_on):
            value = value_at(run, path)
            if not isinstance(value, str | int | float | bool):
                continue
            name = f"cancel:{index}"
            wait = WaitRecord(
                wait_id=wait_id(subscription, run.event_id, name),
                subscription=subscription,
                name=name,
                event=run,
                event_type=event_type,
                match={path: value},
                since=published_at(run) - CLOCK_SKEW,
                kind="cancel",
                created_at=now,
            )
            self.may_have_waits = True
            await store.add_wait(wait)
            if not self._lookback:
                continue
            for event in await self._look_back(store, wait):
                if event.event_id != run.event_id and matches(event, wait.match):
                    await self.cancel_run(subscription, run, reason=_cancel_reason(event))
                    return

    async def unwatch_cancel(
        self, store: Store, run: Event[Any], subscription: str, count: int
    ) -> None:
        """Forget the cancellations a finished run listened for."""
        for index in range(count):
            await store.remove_wait(wait_id(subscription, run.event_id, f"cancel:{index}"))

    async def waiting(
        self,
        *,
        subscription: str | None,
        event_id: str | None,
        event_type: str | None,
        limit: int | None,
    ) -> list[WaitRecord]:
        """The runs suspended in ``wait_for`` (cancellation listeners left out)."""
        store = await self._store()
        found = await store.waits(
            subscription=subscription, event_id=event_id, event_type=event_type, limit=None
        )
        waiting = [w for w in found if w.kind == "wait"]
        return waiting if limit is None else waiting[:limit]

    async def cancel_event(
        self,
        event_id: str,
        subscription: str | None,
        *,
        reason: str,
        logged: Callable[[str], Awaitable[EventRecord | None]],
    ) -> int:
        """Cancel the waiting or retrying runs of an event (``bus.cancel``); a retrying
        run's event is found in the event log (``logged``)."""
        store = await self._store()
        runs: dict[str, Event[Any]] = {}
        for wait in await store.waits(event_id=event_id, subscription=subscription):
            runs[wait.subscription] = wait.event
        retrying = [
            name
            for name, state in (await store.states(event_id)).items()
            if state is DeliveryState.FAILED and subscription in (None, name) and name not in runs
        ]
        if retrying:
            record = await logged(event_id)
            if record is not None:
                runs.update(dict.fromkeys(retrying, record.event))
        for name, run in runs.items():
            await self.cancel_run(name, run, reason=reason)
        return len(runs)

    async def cancel_run(self, subscription: str, run: Event[Any], *, reason: str) -> bool:
        """Cancel a run: a waiting one resumes into :class:`RunCancelled`; a retrying one
        is settled when its next attempt starts. True if it was waiting or retrying."""
        store = await self._store()
        await store.record_step(subscription, run.event_id, CANCELLED_STEP, json.dumps(reason))
        found = False
        for wait in await store.waits(event_id=run.event_id, subscription=subscription):
            if wait.kind == "cancel":
                await store.remove_wait(wait.wait_id)
                found = True
            elif await self._answer(store, wait, None, resume=True, cancelled=reason):
                found = True
        return found


def published_at(event: Event[Any]) -> float:
    """When ``event`` was published (its timestamp), as unix time; a minute ago if its
    timestamp is not ISO 8601 (an event from outside may carry anything)."""
    try:
        stamp = datetime.fromisoformat(event.timestamp)
    except ValueError:
        return clock.time() - 60.0
    if stamp.tzinfo is None:
        stamp = stamp.replace(tzinfo=UTC)
    return stamp.timestamp()


def wait_id(subscription: str, event_id: str, name: str) -> str:
    """The id of a run's wait: the run's event id first (``waits(event_id=...)``)."""
    return f"{event_id}/{subscription}/{name}"


def _answer_json(event: Event[Any] | None) -> dict[str, Any]:
    return {"event": None if event is None else event.model_dump(mode="json")}


def _cancel_reason(event: Event[Any]) -> str:
    return f"cancelled by {event.event_type} {event.event_id}"


def request_id(*parts: str) -> str:
    """A stable event id made of ``parts`` (a request a resumed run publishes again)."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, "nerve:" + "/".join(parts)))
