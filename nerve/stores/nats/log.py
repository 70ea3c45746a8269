"""The event log on two streams: ``{prefix}-log`` (events) and ``{prefix}-log-index``
(outcomes, the chain entries of events other than a chain's root, and the type entries
of every event).

An event is published on its own subject with ``Nats-Expected-Last-Subject-Sequence: 0``,
so the first record of it wins and a later one is refused; its stream sequence is its
cursor, dense in logging order, so the feed is a range of sequences. Both streams keep
``history_retention`` (their max age, counted from logging); :meth:`Log.trim` also
removes, from the front, what was published (or ended) before a given time, stopping at
the first message that was not.

Reads are direct gets by subject and sequence. An event's outcomes, or a chain's
entries, are read one message per request (``next_by_subj``: JetStream 2.9 has no batch
get), the events of a page together: a page of events with at most ``k`` outcomes each
takes ``k + 3`` round trips. A type's events since a time are found by a search over the
index's sequences, probing :data:`_PROBES` at a time for the type's first entry after
each (a few round trips for millions of entries), then read one entry per round trip
from :data:`_REORDER` seconds before the time on (events are logged in batches, nearly
in publish order) up to the limit.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence

from nerve.records import EventRecord, Outcome, OutcomeRow, PublishedRow
from nerve.stores.nats.layout import Layout
from nerve.stores.nats.wire import EXPECTED_LAST, Request, Stored, Wire

#: Messages read at a time while trimming from the front of a stream.
_TRIM_PAGE = 64

#: Sequences probed at once while searching the index for a time.
_PROBES = 16
#: Seconds before a lookback's start its search begins: events logged out of publish order.
_REORDER = 1.0

#: When a message of a log stream was published (an event) or ended (an outcome).
_TimeOf = Callable[[Stored], float]


class Log:
    """The event log of one prefix."""

    def __init__(self, wire: Wire, layout: Layout) -> None:
        self._wire = wire
        self._layout = layout

    async def record(self, events: Sequence[PublishedRow], outcomes: Sequence[OutcomeRow]) -> None:
        layout = self._layout
        first = {EXPECTED_LAST: "0"}
        items: list[Request] = []
        for event, at in events:
            body = f"{at!r}\n{event.model_dump_json()}".encode()
            items.append((layout.event_subject(event.event_id), body, first))
            entry = json.dumps([at, event.event_id]).encode()
            if event.correlation_id != event.event_id:  # a root is found by its id
                items.append((layout.chain_subject(event.correlation_id), entry, None))
            items.append((layout.type_subject(event.event_type), entry, None))
        for row in outcomes:
            items.append((layout.outcome_subject(row[1]), json.dumps(row).encode(), None))
        for refusal in await self._wire.publish(items):
            # An event refused as a lost race was logged before: kept as first recorded.
            if refusal is not None and not refusal.lost_race:
                raise refusal

    async def trim(self, before: float) -> None:
        await self._trim(self._layout.log, before, _published_at)
        await self._trim(self._layout.log_index, before, _index_time)

    async def _trim(self, stream: str, before: float, time_of: _TimeOf) -> None:
        first, last, count = await self._wire.state(stream)
        if not count:
            return
        keep, start, size = last + 1, first, 1  # the first alone: most trims find it fresh
        while start <= last:
            found = await self._wire.at(stream, range(start, min(last, start + size - 1) + 1))
            fresh = [m.seq for m in found if m is not None and time_of(m) >= before]
            if fresh:
                keep = fresh[0]
                break
            start, size = start + size, _TRIM_PAGE
        if keep > first:
            await self._wire.api([(f"STREAM.PURGE.{stream}", {"seq": keep})])

    async def event(self, event_id: str) -> EventRecord | None:
        [found] = await self._wire.last([(self._layout.log, self._layout.event_subject(event_id))])
        records = await self._records([found])
        return records[0] if records else None

    async def chain(self, correlation_id: str) -> list[EventRecord]:
        layout = self._layout
        entries = await self._walk(layout.log_index, [layout.chain_subject(correlation_id)])
        ids = dict.fromkeys([correlation_id, *(json.loads(m.data)[1] for m in entries[0])])
        found = await self._wire.last([(layout.log, layout.event_subject(i)) for i in ids])
        records = [
            r for r in await self._records(found) if r.event.correlation_id == correlation_id
        ]
        return sorted(records, key=lambda r: int(r.cursor or 0))

    async def after(self, after: str | None, limit: int) -> tuple[list[EventRecord], str | None]:
        first, last, count = await self._wire.state(self._layout.log)
        if after is None:
            if not count:
                return [], None
            seqs = range(max(first, last - limit + 1), last + 1) if limit > 0 else range(0)
            cursor = str(last)
        else:
            start = max(int(after) + 1, first)
            seqs = range(start, min(last, start + limit - 1) + 1)
            cursor = str(seqs[-1]) if seqs else after
        return await self._records(await self._wire.at(self._layout.log, seqs)), cursor

    async def of_type(self, event_type: str, since: float, limit: int) -> list[EventRecord]:
        """Events of a type published at ``since`` or later, in logging order."""
        if limit <= 0:
            return []
        stream, subject = self._layout.log_index, self._layout.type_subject(event_type)
        seq = await self._search(stream, subject, since - _REORDER)
        ids: dict[str, None] = {}  # an event recorded twice has two entries
        while len(ids) < limit:
            [found] = await self._wire.next_after(stream, [(subject, seq)])
            if found is None:
                break
            at, event_id = json.loads(found.data)
            if at >= since:
                ids[event_id] = None
            seq = found.seq + 1
        layout = self._layout
        return await self._records(
            await self._wire.last([(layout.log, layout.event_subject(i)) for i in ids])
        )

    async def _search(self, stream: str, subject: str, since: float) -> int:
        """A sequence of ``stream`` from which ``subject``'s entries ([time, ...]) are at
        ``since`` or later, as their times grow with their sequences."""
        first, last, _count = await self._wire.state(stream)
        low, high = first, last + 1  # the answer is in [low, high]
        while low < high:
            step = max(1, (high - low) // _PROBES)
            probes = range(low, high, step)
            found = await self._wire.next_after(stream, [(subject, p) for p in probes])
            for probe, entry in zip(probes, found, strict=True):
                if entry is None or json.loads(entry.data)[0] >= since:
                    high = probe  # no entry after it is older
                    break
                low = entry.seq + 1
            if step == 1:
                break
        return min(low, high)

    async def _records(self, found: Sequence[Stored | None]) -> list[EventRecord]:
        """The records of the logged events ``found`` (None: not logged), with outcomes."""
        records = []
        for message in found:
            if message is not None:
                at, body = message.data.split(b"\n", 1)
                records.append(EventRecord.from_log(body, float(at), [], message.seq))
        subjects = [self._layout.outcome_subject(r.event.event_id) for r in records]
        rows = await self._walk(self._layout.log_index, subjects)
        return [
            record.model_copy(update={"outcomes": [_outcome(m) for m in messages]})
            for record, messages in zip(records, rows, strict=True)
        ]

    async def _walk(self, stream: str, subjects: Sequence[str]) -> list[list[Stored]]:
        """Every message of each subject, oldest first: one request per message, the
        subjects side by side."""
        found: list[list[Stored]] = [[] for _ in subjects]
        going = dict.fromkeys(range(len(subjects)), 1)  # subject index -> next sequence
        while going:
            queries = [(subjects[i], seq) for i, seq in going.items()]
            replies = await self._wire.next_after(stream, queries)
            going_next: dict[int, int] = {}
            for i, reply in zip(going, replies, strict=True):
                if reply is not None:
                    found[i].append(reply)
                    going_next[i] = reply.seq + 1
            going = going_next
        return found


def _outcome(found: Stored) -> Outcome:
    return Outcome.from_row(json.loads(found.data))


def _published_at(found: Stored) -> float:
    return float(found.data.split(b"\n", 1)[0])


def _index_time(found: Stored) -> float:
    """An outcome's end (an :data:`OutcomeRow`'s fifth field), a chain entry's publish."""
    row = json.loads(found.data)
    return float(row[4] if len(row) > 2 else row[0])
