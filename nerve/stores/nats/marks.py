"""Done marks, failures and publish records: the ``{prefix}_done`` bucket.

Every key lives a window (the bucket's max age), and a done mark holds the time it was
written, so one older than the window is ignored even before the server removes it.

Forgetting failures costs no write on the hot path: a done mark written after the
pair's failures (a higher sequence in the same stream) makes them forgotten, so
:meth:`Marks.take_failures` returns none and :meth:`Marks.states` reports the pair done,
and a failure recorded later starts a new list. Appending a failure is a compare-and-set
on the pair's key, taking them a compare-and-delete (a purge below the next sequence).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from nerve import clock
from nerve.events import Event
from nerve.records import AttemptError
from nerve.stores.nats.layout import Layout, token, untoken
from nerve.stores.nats.wire import Stored, Wire, present

#: The kinds of keys, their first token.
DONE, FAILURES, PUBLISHED = "d", "f", "p"


class Marks:
    """Done marks, failures and publish records of one prefix."""

    def __init__(self, wire: Wire, layout: Layout, window: float) -> None:
        self._wire = wire
        self._bucket = layout.done
        self._stream = layout.done.stream
        self.window = window

    def _key(self, kind: str, event_id: str, subscription: str) -> tuple[str, str]:
        return self._stream, self._bucket.subject(kind, token(event_id), token(subscription))

    async def record_published(self, events: Sequence[Event[Any]]) -> None:
        subject = self._bucket.subject
        await self._wire.put(
            [(subject(PUBLISHED, token(e.event_id)), e.event_type.encode(), None) for e in events]
        )

    async def event_type(self, event_id: str) -> str | None:
        [found] = await self._wire.last(
            [(self._stream, self._bucket.subject(PUBLISHED, token(event_id)))]
        )
        found = present(found)
        return None if found is None else found.data.decode()

    async def done_among(self, subscription: str, event_ids: Sequence[str]) -> set[str]:
        found = await self._wire.last([self._key(DONE, e, subscription) for e in event_ids])
        horizon = clock.time() - self.window
        return {e for e, mark in zip(event_ids, found, strict=True) if _fresh(mark, horizon)}

    async def mark_done(self, done: Mapping[str, Sequence[str]]) -> None:
        now = repr(clock.time()).encode()
        subject = self._bucket.subject
        await self._wire.put(
            [
                (subject(DONE, token(event_id), token(subscription)), now, None)
                for subscription, event_ids in done.items()
                for event_id in event_ids
            ]
        )

    async def add_failure(self, subscription: str, event_id: str, error: AttemptError) -> None:
        failures = self._key(FAILURES, event_id, subscription)
        done = self._key(DONE, event_id, subscription)
        line = error.model_dump_json().encode()
        while True:
            found, mark = await self._wire.last([failures, done])
            old = present(found)
            lines = [] if old is None or _forgotten(old, mark) else [old.data]
            last = 0 if found is None else found.seq
            if await self._wire.swap(failures[1], b"\n".join([*lines, line]), last):
                return

    async def take_failures(self, subscription: str, event_id: str) -> list[AttemptError]:
        failures = self._key(FAILURES, event_id, subscription)
        done = self._key(DONE, event_id, subscription)
        while True:
            found, mark = await self._wire.last([failures, done])
            if found is None:
                return []
            [taken] = await self._wire.purge(self._stream, [(failures[1], found.seq + 1)])
            if taken:
                break  # else another failure was added (or they were taken) meanwhile
        old = present(found)
        if old is None or _forgotten(old, mark):
            return []
        errors = [AttemptError.model_validate_json(line) for line in old.data.split(b"\n")]
        return sorted(errors, key=lambda e: e.attempt)

    async def states(self, event_id: str) -> tuple[set[str], set[str]]:
        """The subscriptions with failures not forgotten, and those done within the window."""
        subjects = await self._wire.subjects(
            self._stream, self._bucket.subject("*", token(event_id), "*")
        )
        found = await self._wire.last([(self._stream, s) for s in subjects])
        by_kind: dict[str, dict[str, Stored]] = {DONE: {}, FAILURES: {}}
        for subject, message in zip(subjects, found, strict=True):
            kind, _event, sub = self._bucket.tokens(subject)
            value = present(message)
            if value is not None and kind in by_kind:
                by_kind[kind][untoken(sub)] = value
        marks = by_kind[DONE]
        failed = {s for s, f in by_kind[FAILURES].items() if not _forgotten(f, marks.get(s))}
        horizon = clock.time() - self.window
        return failed, {s for s, mark in marks.items() if _fresh(mark, horizon)}


def _fresh(mark: Stored | None, horizon: float) -> bool:
    """A done mark written within the window."""
    value = present(mark)
    return value is not None and float(value.data) >= horizon


def _forgotten(failures: Stored, mark: Stored | None) -> bool:
    """Failures followed by a done mark: the pair succeeded after them."""
    value = present(mark)
    return value is not None and value.seq > failures.seq
