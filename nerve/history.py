"""The event log: what was published, and what each subscription made of it.

A bus records, in its store, every event it publishes (in full) and the outcome of every
handler attempt (done, retrying or dead-lettered, with its duration and error). Reached as
``bus.history``, the log answers ``nerve status``, ``nerve trace``, ``nerve tail`` and the
dashboard: one event and its outcomes, the tree of a correlation id, the events published
after a cursor, and every subscription declared on the bus's transport and store.

Records are written by a :class:`HistoryRecorder` observer that buffers them and writes
them in batches (every ``FLUSH_DELAY`` seconds or ``FLUSH_BATCH`` records, and at stop).
A crash loses the history of its last flush interval, never events: history is a log of
what happened, not part of delivering it. A failed history write is logged and dropped.

Recording is on by default for durable transports and off for ``memory://`` (where it
costs about a quarter of the top rate of trivial handlers); ``NERVE_HISTORY=true`` or
``Settings(history=True)`` turns it on there, ``false`` off everywhere. Retention: records
are kept ``settings.history_retention`` seconds (``NERVE_HISTORY_RETENTION``, default 7
days), trimmed as time goes; the in-memory store also keeps at most its ``max_history``
(10,000) newest events.

Example:
    ```python
    record = await bus.history.event(event_id)
    for node in await bus.history.trace(record.event.correlation_id):
        print(node.record.event.event_type, [o.state for o in node.record.outcomes])
    ```
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any

from nerve import clock
from nerve.events import Event
from nerve.observe.observer import Observer
from nerve.records import EventRecord, OutcomeRow, PublishedRow, TraceNode
from nerve.routing import matches

if TYPE_CHECKING:
    from nerve.context import HandlerContext
    from nerve.stores.base import EventLog, Store

log = logging.getLogger("nerve")

#: History is written in batches of up to this many records...
FLUSH_BATCH = 512
#: ...or this many seconds after the first of them, whichever comes first.
FLUSH_DELAY = 0.05
#: Expired history is trimmed at most once every this many seconds.
TRIM_EVERY = 60.0
#: ``recent`` reads the store this many records at a time while a pattern filters them.
_SCAN_PAGE = 500


class History:
    """The event log of a bus's transport and store. Reached as ``bus.history``.

    Every method reads the store, so it sees what every process sharing the store
    recorded (on a durable store); the in-memory store knows only this process.
    """

    def __init__(self, store: Callable[[], Awaitable[Store]]) -> None:
        #: The store, ready to read, with what the recorder buffered written to it.
        self._store = store

    async def event(self, event_id: str) -> EventRecord | None:
        """The event with this id and its outcomes, or None if not in the log."""
        store = await self._store()
        return await store.history_event(event_id)

    async def trace(self, correlation_id: str) -> list[TraceNode]:
        """The chain of a correlation id as trees by ``causation_id``, roots first.

        A root is an event whose cause is not in the log (the chain's first event, or
        one whose parent was trimmed); siblings are in publish order.
        """
        store = await self._store()
        records = await store.history_chain(correlation_id)
        return build_trees(records)

    async def recent(
        self, after: str | None = None, *, pattern: str | None = None, limit: int = 100
    ) -> tuple[list[EventRecord], str | None]:
        """Events published after the cursor ``after``, oldest first, and the next cursor.

        With ``after=None``, the newest ``limit`` events (``limit=0``: none, only a cursor
        at the end of the log, to follow from now on). Pass the returned cursor back to
        get what was published since; it is None only when the log is empty. ``pattern``
        keeps the events whose type matches it (``*`` one segment, ``#`` any).
        """
        store = await self._store()
        if pattern is None or limit == 0:
            return await store.history_after(after, limit)
        found: list[EventRecord] = []
        cursor = after
        while len(found) < limit:
            page, nxt = await store.history_after(cursor, _SCAN_PAGE)
            for index, record in enumerate(page):
                if matches(pattern, record.event.event_type):
                    found.append(record)
                    if len(found) == limit and index < len(page) - 1:
                        # stop here: the cursor must not skip the unread rest of the page
                        return found, record.cursor
            if nxt is None or nxt == cursor or len(page) < _SCAN_PAGE:
                cursor = nxt
                break
            cursor = nxt
        return found, cursor

    async def subscriptions(self) -> dict[str, str]:
        """Every subscription declared on this transport and store: name -> pattern."""
        store = await self._store()
        return await store.subscriptions()


def build_trees(records: Sequence[EventRecord]) -> list[TraceNode]:
    """Arrange one chain's records as trees by ``causation_id``, in publish order."""
    ordered = sorted(records, key=lambda r: (r.published_at, r.event.event_id))
    nodes = {r.event.event_id: TraceNode(record=r) for r in ordered}
    roots: list[TraceNode] = []
    for record in ordered:
        node = nodes[record.event.event_id]
        parent = nodes.get(record.event.causation_id or "")
        if parent is None or parent is node:
            roots.append(node)
        else:
            parent.children.append(node)
    return roots


class HistoryRecorder(Observer):
    """Buffers published events and attempt outcomes; writes them to the store in batches.

    The hooks only append a tuple to a list; a timer (or a full batch) schedules the
    write, so the cost on the hot path is an append and, once per batch, a task.

    Args:
        store: where the history goes (the bus's store).
        retention: seconds records are kept; older ones are trimmed as time goes.
        logged: called with each batch of events once it is in the log (the bus matches
            them to waiting handlers then: see ``nerve.waits``).
    """

    def __init__(
        self,
        store: EventLog,
        retention: float,
        logged: Callable[[Sequence[Event[Any]]], Awaitable[None]] | None = None,
    ) -> None:
        self._store = store
        self._logged = logged
        self._retention = retention
        self._events: list[PublishedRow] = []
        self._outcomes: list[OutcomeRow] = []
        self._timer: asyncio.TimerHandle | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._spawned = False  # a flush task is scheduled and has not started
        self._trimmed = 0.0

    # hooks (synchronous, quick)

    def published(self, events: Sequence[Event[Any]]) -> None:
        now = clock.time()
        self._events.extend([(e, now) for e in events])
        self._schedule()

    def handled(
        self, subscription: str, event: Event[Any], seconds: float, context: HandlerContext
    ) -> None:
        self._outcome(subscription, event, seconds, context, "done")

    def waiting(
        self, subscription: str, event: Event[Any], seconds: float, context: HandlerContext
    ) -> None:
        self._outcome(subscription, event, seconds, context, "waiting")

    def cancelled(
        self, subscription: str, event: Event[Any], seconds: float, context: HandlerContext
    ) -> None:
        self._outcome(subscription, event, seconds, context, "cancelled")

    def _outcome(
        self,
        subscription: str,
        event: Event[Any],
        seconds: float,
        context: HandlerContext,
        state: str,
    ) -> None:
        self._outcomes.append(
            (
                subscription,
                event.event_id,
                context.attempt,
                state,
                clock.time(),
                seconds,
                None,
                None,
            )
        )
        self._schedule()

    def failed(
        self,
        subscription: str,
        event: Event[Any],
        error: BaseException,
        seconds: float,
        context: HandlerContext,
        *,
        retry_in: float | None,
    ) -> None:
        kind = type(error)
        name = (
            kind.__qualname__
            if kind.__module__ == "builtins"
            else f"{kind.__module__}.{kind.__qualname__}"
        )
        self._outcomes.append(
            (
                subscription,
                event.event_id,
                context.attempt,
                "retrying" if retry_in is not None else "dead_lettered",
                clock.time(),
                seconds,
                name,
                str(error),
            )
        )
        self._schedule()

    # writing

    def _schedule(self) -> None:
        if self._spawned:  # a flush is on its way: it takes everything buffered by then
            return
        if len(self._events) + len(self._outcomes) >= FLUSH_BATCH:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            self._spawn()
        elif self._timer is None:
            self._timer = clock.call_later(FLUSH_DELAY, self._due)

    def _due(self) -> None:
        self._timer = None
        if not self._spawned:
            self._spawn()

    def _spawn(self) -> None:
        self._spawned = True
        task = asyncio.get_running_loop().create_task(self.flush(), name="nerve-history")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def flush(self) -> None:
        """Write everything buffered (and trim expired history, now and then)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._spawned = False
        events, outcomes = self._events, self._outcomes
        if events or outcomes:
            self._events, self._outcomes = [], []
            try:
                await self._store.record_history(events, outcomes)
            except Exception:
                log.exception(
                    "could not record the history of %d events and %d outcomes (dropped)",
                    len(events),
                    len(outcomes),
                )
            if events and self._logged is not None:
                try:
                    await self._logged([row[0] for row in events])
                except Exception:
                    log.exception("could not match %d events to waiting handlers", len(events))
        now = clock.time()
        if now - self._trimmed >= TRIM_EVERY:
            self._trimmed = now
            try:
                await self._store.trim_history(now - self._retention)
            except Exception:
                log.exception("could not trim the history")

    async def close(self) -> None:
        """Wait for writes in progress, then write what is left."""
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.flush()
