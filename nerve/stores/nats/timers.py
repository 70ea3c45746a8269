"""Timers on the ``{prefix}_timers`` bucket: the timers, an index of them by the minute
they are due in, and the floor of that index.

A timer is the key ``t.{timer}`` holding ``{"due": ..., "body": ...}``. Adding one without
``replace`` is a compare-and-set on an absent key (of two adders, one wins); every write of
a timer is followed, in the same batch on the same stream (stored in the order sent), by
its index entry ``d.{minute}.{timer}`` (empty), so an entry never points to a timer not
written yet. Entries are not updated when a timer moves or goes: an entry is *stale* when
its timer is gone or due in another minute, and stale entries are purged by the claimers
that come across them.

Claiming lists the entries of the due minutes, one listing per minute (nats-server 2.9
answers a listing by scanning the bucket's subject index, about 30 ms for 100,000 keys,
but sends back only the matching keys), reads those entries, then the timers they point
to: the values read are those of the due minutes only, never the timers due later. Due
timers are moved to ``now + lease`` by compare-and-set on the sequence read (their new
entry written first): a lost race means another claimer has it, and the claim goes on to
the next due timer. Ties of due times go in the order written.

Which minutes: the key ``floor`` holds a minute no entry is below. A claim walks from the
floor to ``now``, then raises the floor to its first minute with a live entry, at most
:data:`MARGIN` minutes before the clock. A timer added due more than a minute ago (by the
adder's clock) lowers the floor first: adders of timers due later never read it, as long
as clocks disagree by less than a minute. A claimer raising the floor lists the minutes it
passed once more and lowers it again if an adder wrote there meanwhile. A floor more than
:data:`WALK` minutes behind (a claimer down for hours) is caught up with one listing of
the whole index.
"""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import Sequence
from typing import Final

from nerve import clock
from nerve.records import Timer
from nerve.stores.nats.layout import Layout, token, untoken
from nerve.stores.nats.wire import EXPECTED_LAST, Request, Stored, Wire, present

#: The kinds of keys, their first token.
TIMER, DUE = "t", "d"
#: Minutes the floor stays behind the claimer's clock at the least.
MARGIN: Final = 2
#: Minutes a claim walks one listing each; further behind, one listing of every entry.
WALK: Final = 60
#: The floor before any claim: below every minute.
_BOTTOM: Final = -(2**62)


def minute(at: float) -> int:
    """The index's minute of a unix time."""
    return math.floor(at / 60.0)


class Timers:
    """The timers of one prefix."""

    def __init__(self, wire: Wire, layout: Layout) -> None:
        self._wire = wire
        self._bucket = layout.timers
        self._stream = layout.timers.stream
        self._floor = layout.timers.subject("floor")

    def _timer(self, timer_id: str) -> str:
        return self._bucket.subject(TIMER, token(timer_id))

    def _entry(self, due_minute: int, timer_id: str) -> str:
        return self._bucket.subject(DUE, str(due_minute), token(timer_id))

    def _minute_of(self, entry_subject: str) -> int:
        return int(self._bucket.tokens(entry_subject)[1])

    def _id_of(self, entry: Stored) -> str:
        return untoken(self._bucket.tokens(entry.subject)[2])

    async def add(self, timer: Timer, replace: bool) -> bool:
        headers = None if replace else {EXPECTED_LAST: "0"}
        due_minute = minute(timer.due)
        refused, entry = await self._wire.publish(
            [
                (self._timer(timer.timer_id), _encode(timer.due, timer.body), headers),
                (self._entry(due_minute, timer.timer_id), b"", None),
            ]
        )
        if refused is not None:
            if refused.lost_race:
                return False  # exists (the entry written is stale or the same)
            raise refused
        if entry is not None:
            raise entry
        if due_minute < minute(clock.time()) - 1:
            await self._lower_floor(due_minute)
        return True

    async def get(self, timer_id: str) -> Timer | None:
        [found] = await self._wire.last([(self._stream, self._timer(timer_id))])
        value = present(found)
        return None if value is None else _decode(timer_id, value)

    async def delete(self, timer_id: str) -> bool:
        """A compare-and-delete: of two deleters, one gets True. Its entry goes stale."""
        subject = self._timer(timer_id)
        while True:
            [found] = await self._wire.last([(self._stream, subject)])
            if present(found) is None or found is None:
                return False
            [gone] = await self._wire.purge(self._stream, [(subject, found.seq + 1)])
            if gone:
                return True

    async def listed(self, prefix: str, limit: int) -> list[Timer]:
        """Timers by id prefix, earliest first: a listing of every timer's key."""
        subjects = await self._wire.subjects(self._stream, self._bucket.subject(TIMER, "*"))
        ids = [untoken(self._bucket.tokens(s)[1]) for s in subjects]
        ids = [i for i in ids if i.startswith(prefix)]
        found = await self._wire.last([(self._stream, self._timer(i)) for i in ids])
        timers = [
            (_decode(i, m), m.seq) for i, m in zip(ids, map(present, found), strict=True) if m
        ]
        timers.sort(key=lambda pair: (pair[0].due, pair[1]))
        return [t for t, _seq in timers[:limit]]

    # claiming

    async def claim(self, now: float, lease: float, limit: int) -> list[Timer]:
        if limit <= 0:
            return []
        now_minute = minute(now)
        cap = minute(min(now, clock.time())) - MARGIN
        [floor_found] = await self._wire.last([(self._stream, self._floor)])
        floor_value = present(floor_found)
        # No floor yet (no claim ever): every entry is looked at, once.
        floor = _BOTTOM if floor_value is None else int(floor_value.data)
        entries = await self._entries(min(floor, now_minute), now_minute)
        # The entries first, then their timers: a timer written after an entry was read
        # has a newer entry, which the compare-and-delete of a stale one leaves.
        read = [m for m in await self._wire.last([(self._stream, s) for s in entries]) if m]
        found = await self._wire.last([(self._stream, self._timer(self._id_of(m))) for m in read])
        stale: list[tuple[str, int | None]] = []
        live: list[tuple[int, str]] = []  # (minute, timer id)
        due: dict[str, tuple[Timer, Stored, Stored]] = {}  # id -> (timer, value, entry)
        for entry, value in zip(read, map(present, found), strict=True):
            entry_minute, timer_id = self._minute_of(entry.subject), self._id_of(entry)
            timer = None if value is None else _decode(timer_id, value)
            if timer is None or value is None or minute(timer.due) != entry_minute:
                stale.append((entry.subject, entry.seq + 1))
                continue
            live.append((entry_minute, timer_id))
            if timer.due <= now:
                due[timer_id] = (timer, value, entry)
        candidates = sorted(due.values(), key=lambda found: (found[0].due, found[1].seq))
        claimed, moved = await self._move(candidates, now + lease, limit)
        await self._wire.purge(self._stream, [*stale, *moved])
        taken = {t.timer_id for t in claimed}
        rest = [m for m, timer_id in live if timer_id not in taken]
        await self._raise_floor(floor_found, floor, min([*rest, cap]))
        return claimed

    async def _move(
        self, candidates: Sequence[tuple[Timer, Stored, Stored]], until: float, limit: int
    ) -> tuple[list[Timer], list[tuple[str, int | None]]]:
        """Move due timers to ``until`` by compare-and-set, earliest first, until
        ``limit`` are claimed: the claimed timers, and their entries to purge."""
        claimed: list[Timer] = []
        moved: list[tuple[str, int | None]] = []
        start = 0
        while len(claimed) < limit and start < len(candidates):
            batch = candidates[start : start + limit - len(claimed)]
            start += len(batch)
            # The new entry first: a timer never waits in a minute without its entry.
            await self._wire.put(
                [(self._entry(minute(until), t.timer_id), b"", None) for t, *_ in batch]
            )
            swaps: list[Request] = [
                (self._timer(t.timer_id), _encode(until, t.body), {EXPECTED_LAST: str(v.seq)})
                for t, v, _entry in batch
            ]
            for (timer, _value, entry), refused in zip(
                batch, await self._wire.publish(swaps), strict=True
            ):
                if refused is None:
                    claimed.append(timer)
                    moved.append((entry.subject, entry.seq + 1))
                elif not refused.lost_race:
                    raise refused
        return claimed, moved

    async def _entries(self, first: int, last: int) -> list[str]:
        """The subjects of the index entries of the minutes ``first`` to ``last``."""
        if last - first + 1 > WALK:
            everything = await self._wire.subjects(self._stream, self._bucket.subject(DUE, ">"))
            return [s for s in everything if first <= self._minute_of(s) <= last]
        listings = await asyncio.gather(
            *(
                self._wire.subjects(self._stream, self._bucket.subject(DUE, str(m), "*"))
                for m in range(first, last + 1)
            )
        )
        return [s for listing in listings for s in listing]

    async def _raise_floor(self, found: Stored | None, floor: int, to: int) -> None:
        """Set the floor (read as ``found``: ``floor``) to ``to`` if that raises it; then,
        if an adder wrote below it meanwhile, lower it again. (Of a first floor and an
        adder's, one is refused: the adder's lowering then reads the claimer's.)"""
        if present(found) is not None and to <= floor:
            return
        if not await self._wire.swap(self._floor, str(to).encode(), _seq(found)):
            return  # another claimer or adder moved it
        if present(found) is not None:
            passed = await self._entries(floor, to - 1)
            if passed:
                await self._lower_floor(min(self._minute_of(s) for s in passed))

    async def _lower_floor(self, to: int) -> None:
        while True:
            [found] = await self._wire.last([(self._stream, self._floor)])
            value = present(found)
            if value is not None and int(value.data) <= to:
                return
            if await self._wire.swap(self._floor, str(to).encode(), _seq(found)):
                return


def _seq(found: Stored | None) -> int:
    return 0 if found is None else found.seq


def _encode(due: float, body: str) -> bytes:
    return json.dumps({"due": due, "body": body}, separators=(",", ":")).encode()


def _decode(timer_id: str, found: Stored) -> Timer:
    value = json.loads(found.data)
    return Timer(timer_id=timer_id, due=float(value["due"]), body=value["body"])
