"""Waits on the ``{prefix}_waits`` bucket, found by awaited type and match key.

A wait is the key ``w.{wait}`` (its :class:`WaitRecord` as JSON). Two indexes make
:meth:`Waits.matching` a few direct gets per batch of events, whatever the number of
waits: ``s.{event type}``, the shapes of the waits on a type (a JSON list, written when a
new shape comes; a shape no wait has any more stays), and ``k.{event type}.{key hash}``,
the ids of the waits on a type and match key (a JSON list). The key is hashed (BLAKE2b,
128 bits, hex) because it holds the awaited values, of any length, while a subject line
is bounded; a wait read through the index is checked against the event's key, so a
collision, or an index entry not yet (or no longer) matching its wait, finds nothing.
Lists of ids are updated by compare-and-set and deleted by compare-and-delete when they
empty; ids sharing one key share one message (up to ``max_payload``, tens of thousands).

Matching a batch of events: one request per awaited type (its shapes), one per (type,
key) the events have, one per wait found: three round trips. A subject listing would
scan the bucket's subject index (nats-server 2.9 keeps no tree), about 30 ms per 100,000
keys: only :meth:`Waits.listed` does that, for tools.

The waits of a pair ``(subscription, event)`` are also listed in the kept bucket
(:meth:`.Kept.pin`), which keeps the pair's step results and counters while it waits and
lists a run's waits. Adding a wait pins its pair first, then indexes it, then writes it;
removing it deletes it first (of two removers, one gets True), then unindexes and unpins
it. A crash in between leaves an index entry pointing to nothing (skipped), or a pair
kept (its steps) longer than it waits.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from typing import Any

from nerve.events import Event
from nerve.matching import event_key
from nerve.records import WaitRecord
from nerve.stores.nats.kept import Kept
from nerve.stores.nats.layout import Layout, token, untoken
from nerve.stores.nats.wire import Stored, Wire, present

#: The kinds of keys, their first token.
WAIT, SHAPES, KEYS = "w", "s", "k"


def key_hash(key: str) -> str:
    """A match key as a subject token: its hash."""
    return hashlib.blake2b(key.encode(), digest_size=16).hexdigest()


class Waits:
    """The waits of one prefix."""

    def __init__(self, wire: Wire, layout: Layout, kept: Kept) -> None:
        self._wire = wire
        self._bucket = layout.waits
        self._stream = layout.waits.stream
        self._kept = kept

    def _wait(self, wait_id: str) -> str:
        return self._bucket.subject(WAIT, token(wait_id))

    def _shapes(self, event_type: str) -> str:
        return self._bucket.subject(SHAPES, token(event_type))

    def _keys(self, event_type: str, key: str) -> str:
        return self._bucket.subject(KEYS, token(event_type), key_hash(key))

    async def add(self, wait: WaitRecord) -> None:
        pair = (wait.subscription, wait.event.event_id)
        await self._kept.pin(*pair, wait.wait_id)
        [found] = await self._wire.last([(self._stream, self._wait(wait.wait_id))])
        old = _record(found)
        if old is not None:  # replaced: its index entry and its pair's pin may differ
            if (old.event_type, old.key) != (wait.event_type, wait.key):
                await self._unlist(old)
            if (old.subscription, old.event.event_id) != pair:
                await self._kept.unpin(old.subscription, old.event.event_id, old.wait_id)
        shape = list(wait.shape)
        await self._update(self._shapes(wait.event_type), lambda s: _with(s, shape))
        await self._update(self._keys(wait.event_type, wait.key), lambda i: _with(i, wait.wait_id))
        await self._wire.put([(self._wait(wait.wait_id), wait.model_dump_json().encode(), None)])

    async def remove(self, wait_id: str) -> bool:
        subject = self._wait(wait_id)
        while True:
            [found] = await self._wire.last([(self._stream, subject)])
            wait = _record(found)
            if wait is None or found is None:
                return False
            [gone] = await self._wire.purge(self._stream, [(subject, found.seq + 1)])
            if gone:
                break  # else it was replaced (or removed) meanwhile
        await self._unlist(wait)
        await self._kept.unpin(wait.subscription, wait.event.event_id, wait_id)
        return True

    async def _unlist(self, wait: WaitRecord) -> None:
        subject = self._keys(wait.event_type, wait.key)
        await self._update(subject, lambda ids: [i for i in ids if i != wait.wait_id])

    async def _update(self, subject: str, change: Callable[[list[Any]], list[Any]]) -> None:
        """Compare-and-set a JSON list to ``change(list)``; deleted when it empties."""
        while True:
            [found] = await self._wire.last([(self._stream, subject)])
            items = _items(found)
            changed = change(items)
            if changed == items:
                return
            if changed:
                seq = 0 if found is None else found.seq
                payload = json.dumps(changed, separators=(",", ":")).encode()
                if await self._wire.swap(subject, payload, seq):
                    return
            elif found is not None:
                [gone] = await self._wire.purge(self._stream, [(subject, found.seq + 1)])
                if gone:
                    return

    async def matching(self, events: Sequence[Event[Any]]) -> list[tuple[WaitRecord, Event[Any]]]:
        wire, stream = self._wire, self._stream
        types = list(dict.fromkeys(e.event_type for e in events))
        found = await wire.last([(stream, self._shapes(t)) for t in types])
        shapes = {t: [tuple(s) for s in _items(m)] for t, m in zip(types, found, strict=True)}
        wanted: list[tuple[Event[Any], str, str]] = []  # (event, key, subject)
        for event in events:
            for shape in shapes[event.event_type]:
                key = event_key(event, shape)
                if key is not None:
                    wanted.append((event, key, self._keys(event.event_type, key)))
        subjects = list(dict.fromkeys(subject for _e, _k, subject in wanted))
        lists = await wire.last([(stream, s) for s in subjects])
        ids = dict(zip(subjects, map(_items, lists), strict=True))
        waits = await self._records(list(dict.fromkeys(i for s in subjects for i in ids[s])))
        return [
            (wait, event)
            for event, key, subject in wanted
            for wait in (waits.get(i) for i in ids[subject])
            if wait is not None and wait.event_type == event.event_type and wait.key == key
        ]

    async def listed(
        self,
        subscription: str | None,
        event_id: str | None,
        event_type: str | None,
        limit: int | None,
    ) -> list[WaitRecord]:
        """Waits by filters, oldest first: a run's from its pins, a type's from its key
        lists, else a listing of every wait's key."""
        wire, bucket = self._wire, self._bucket
        if event_id is not None:
            ids = await self._kept.waiting(event_id, subscription)
        elif event_type is not None:
            lists = await wire.subjects(self._stream, bucket.subject(KEYS, token(event_type), "*"))
            found = await wire.last([(self._stream, s) for s in lists])
            ids = [i for m in found for i in _items(m)]
        else:
            subjects = await wire.subjects(self._stream, bucket.subject(WAIT, "*"))
            ids = [untoken(bucket.tokens(s)[1]) for s in subjects]
        records = await wire.last([(self._stream, self._wait(i)) for i in dict.fromkeys(ids)])
        waits = [
            (wait, m.seq)
            for m in records
            if m is not None
            and (wait := _record(m)) is not None
            and (subscription is None or wait.subscription == subscription)
            and (event_id is None or wait.event.event_id == event_id)
            and (event_type is None or wait.event_type == event_type)
        ]
        waits.sort(key=lambda pair: pair[1])
        return [w for w, _seq in waits[:limit]]

    async def _records(self, ids: Sequence[str]) -> dict[str, WaitRecord]:
        found = await self._wire.last([(self._stream, self._wait(i)) for i in ids])
        return {w.wait_id: w for w in map(_record, found) if w is not None}


def _record(found: Stored | None) -> WaitRecord | None:
    value = present(found)
    return None if value is None else WaitRecord.model_validate_json(value.data)


def _items(found: Stored | None) -> list[Any]:
    value = present(found)
    items: list[Any] = [] if value is None else json.loads(value.data)
    return items


def _with(items: list[Any], item: Any) -> list[Any]:
    return items if item in items else [*items, item]
