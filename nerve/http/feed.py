"""The dashboard's live feed: the event log followed as Server-Sent Events.

The feed polls ``bus.history.recent`` rather than listening to this process's bus, so it
shows events published and handled by every process sharing the store. Outcomes arrive
after their events: the feed keeps following each event it sent until every subscription
it matches is done or dead-lettered, and sends an ``update`` whenever its states change.

Messages (``text/event-stream``):

- ``event: event`` with ``id: <cursor>``: a newly published event (see :func:`view`);
  reconnecting with ``?after=<cursor>`` (or ``Last-Event-ID``) resumes after it;
- ``event: update``: the same view of an event already sent, with new states;
- ``: comment`` lines as a heartbeat.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncGenerator, AsyncIterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import orjson

from nerve.exceptions import NerveError
from nerve.records import EventRecord, TraceNode
from nerve.routing import matches

if TYPE_CHECKING:
    from nerve.history import History

log = logging.getLogger("nerve.http")

#: Seconds between two reads of the log.
POLL_SECONDS = 0.5
#: Events the feed starts with (the newest), and reads at most per poll.
BACKLOG = 50
PAGE = 200
#: A comment is sent after this many quiet seconds, so proxies keep the stream open.
HEARTBEAT_SECONDS = 15.0
#: Unsettled events followed at once, and for how long, for their outcomes.
WATCH_LIMIT = 200
WATCH_SECONDS = 600.0
#: Seconds the subscriptions' names and patterns are cached by a stream.
SUBSCRIPTIONS_TTL = 10.0

#: Outcomes after which an event is not followed any more (a waiting run is: it resumes).
SETTLED = frozenset({"done", "dead_lettered", "cancelled"})


def states(record: EventRecord, subscriptions: Mapping[str, str]) -> dict[str, str]:
    """Each subscription's state: the latest outcome, or ``pending`` if it matches but has none."""
    found = {
        name: "pending"
        for name, pattern in subscriptions.items()
        if matches(pattern, record.event.event_type)
    }
    found.update(record.final_states())
    return found


def view(record: EventRecord, subscriptions: Mapping[str, str]) -> dict[str, Any]:
    """An event as the feed shows it: its ids, type, time and states (no payload)."""
    event = record.event
    return {
        "event_id": event.event_id,
        "event_type": event.event_type,
        "correlation_id": event.correlation_id,
        "causation_id": event.causation_id,
        "source": event.source,
        "published_at": record.published_at.isoformat(),
        "states": states(record, subscriptions),
        "outcomes": [o.model_dump(mode="json") for o in record.outcomes],
    }


def tree(node: TraceNode, subscriptions: Mapping[str, str]) -> dict[str, Any]:
    """A trace node with its states, its record in full (payload included), its children."""
    return {
        "record": node.record.model_dump(mode="json"),
        "states": states(node.record, subscriptions),
        "children": [tree(child, subscriptions) for child in node.children],
    }


def message(kind: str, data: Any, *, cursor: str | None = None) -> bytes:
    head = f"id: {cursor}\n" if cursor else ""
    return f"{head}event: {kind}\ndata: ".encode() + orjson.dumps(data) + b"\n\n"


class Feed:
    """One client's stream: new events after a cursor, then their outcomes as they come.

    Args:
        history: the bus's event log.
        after: the cursor to resume after (None: start with the newest ``BACKLOG``).
        pattern: only events whose type matches it.
        seconds: how long the stream lasts; the client reconnects with its cursor.
        watch: ids of events sent by an earlier stream that the client still shows as
            unsettled: their current states are sent first, then followed like new ones.
    """

    def __init__(
        self,
        history: History,
        *,
        after: str | None,
        pattern: str | None,
        seconds: float,
        watch: Sequence[str] = (),
    ) -> None:
        self._history = history
        self._cursor = after
        self._pattern = pattern
        self._seconds = seconds
        self._subscriptions: dict[str, str] = {}
        self._subscriptions_read = -SUBSCRIPTIONS_TTL
        #: event id -> (the states last sent, when it was first sent)
        now = time.monotonic()
        self._watched: dict[str, tuple[dict[str, str], float]] = {
            event_id: ({}, now) for event_id in watch[-WATCH_LIMIT:]
        }

    async def stream(self) -> AsyncGenerator[bytes, None]:
        """The ``text/event-stream`` body: ends after ``seconds`` or if the log fails."""
        yield b"retry: 1000\n: nerve feed\n\n"
        clock = time.monotonic
        end = clock() + self._seconds
        quiet_since = clock()
        first = True
        while True:
            try:
                chunks = [chunk async for chunk in self._poll(first)]
            except NerveError as exc:
                log.warning("the dashboard's feed could not read the event log: %s", exc)
                return
            first = False
            now = clock()
            if chunks:
                yield b"".join(chunks)
                quiet_since = now
            elif now - quiet_since >= HEARTBEAT_SECONDS:
                yield b": heartbeat\n\n"
                quiet_since = now
            if now >= end:
                return
            await asyncio.sleep(min(POLL_SECONDS, max(0.0, end - now)))

    async def _poll(self, first: bool) -> AsyncIterator[bytes]:
        subscriptions = await self._known_subscriptions()
        backlog = first and self._cursor is None
        limit = BACKLOG if backlog else PAGE
        while True:
            records, cursor = await self._history.recent(
                self._cursor, pattern=self._pattern, limit=limit
            )
            for record in records:
                item = view(record, subscriptions)
                self._follow(item)
                yield message("event", item, cursor=record.cursor or cursor)
            moved = cursor is not None and cursor != self._cursor
            self._cursor = cursor if cursor is not None else self._cursor
            if backlog or len(records) < limit or not moved:
                break
        for event_id, (sent, _since) in list(self._watched.items()):
            latest = await self._history.event(event_id)
            if latest is None:
                del self._watched[event_id]
                continue
            item = view(latest, subscriptions)
            if item["states"] != sent:
                self._follow(item)
                yield message("update", item)

    def _follow(self, item: dict[str, Any]) -> None:
        event_id: str = item["event_id"]
        current: dict[str, str] = item["states"]
        now = time.monotonic()
        since = self._watched.pop(event_id, (current, now))[1]
        if set(current.values()) <= SETTLED or now - since > WATCH_SECONDS:
            return
        self._watched[event_id] = (current, since)
        while len(self._watched) > WATCH_LIMIT:
            del self._watched[next(iter(self._watched))]

    async def _known_subscriptions(self) -> dict[str, str]:
        now = time.monotonic()
        if now - self._subscriptions_read >= SUBSCRIPTIONS_TTL:
            self._subscriptions = await self._history.subscriptions()
            self._subscriptions_read = now
        return self._subscriptions
