"""Dead letters, step results and counters: what is kept per (subscription, event) pair.

Dead letters live in ``{prefix}_dead``, one key per pair, never expiring; their order is
their sequence in the bucket's stream, so a pair dead-lettered again moves to the end.
Taking one is a compare-and-delete (a purge below the next sequence): of two takers, one
gets it.

Step results and counters live in ``{prefix}_steps``, one key each per pair holding every
step (or every counter) of it with the time of the last write: kept a window after the
pair's last write (its steps and its counters apart), a value older than the window being
ignored before the server removes it. Writes are compare-and-set loops, so concurrent adds
are all counted. While the pair has a dead letter or a wait they live in ``{prefix}_kept``
instead, which never expires: dead-lettering copies them there, and every write finds the
dead letter (or the pair's wait ids, ``w.{event}.{subscription}``) and goes there. Taking
the dead letter moves the step results back (a window from now) and forgets every counter
of the pair; the pair's last wait removed moves both back, unless the pair has a dead
letter. A pair that waits keeps its step results when its dead letter is taken. (A write
to a pair while that very pair is being dead-lettered, or released, could miss the move:
the core dead-letters a pair after its handler ended, and removes a wait when its run
resumes.) A pair's step results together must fit in one message (the server's
``max_payload``, 1 MB by default).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any

from nerve import clock
from nerve.records import DeadLetter
from nerve.stores.nats.layout import Layout, token, untoken
from nerve.stores.nats.wire import EXPECTED_LAST, Stored, Wire, present

#: The kinds of keys in the steps and kept buckets, their first token.
STEPS, COUNTERS, WAITS = "s", "c", "w"

Values = dict[str, Any]


class Kept:
    """Dead letters, step results and counters of one prefix."""

    def __init__(self, wire: Wire, layout: Layout, window: float) -> None:
        self._wire = wire
        self._dead = layout.dead
        self._steps = layout.steps
        self._kept = layout.kept
        self.window = window

    # dead letters

    async def add_dead_letter(self, entry: DeadLetter) -> None:
        pair = (token(entry.event.event_id), token(entry.subscription))
        where = [
            (b.stream, b.subject(k, *pair))
            for b in (self._steps, self._kept)
            for k in (STEPS, COUNTERS)
        ]
        steps, counters, kept_steps, kept_counters = await self._wire.last(where)
        items = [(self._dead.subject(*pair), entry.model_dump_json().encode(), None)]
        # A pair already kept (dead-lettered again before it was taken) keeps its own.
        for kind, found, kept in ((STEPS, steps, kept_steps), (COUNTERS, counters, kept_counters)):
            fresh = self._fresh(found)
            if fresh is not None and present(kept) is None:
                items.append((self._kept.subject(kind, *pair), fresh.data, None))
        await self._wire.put(items)

    async def dead_letters(
        self, event_id: str | None, subscription: str | None, limit: int | None
    ) -> list[DeadLetter]:
        found = (await self._dead_entries(event_id, subscription))[::-1]  # newest first
        return [DeadLetter.model_validate_json(m.data) for m in found[:limit]]

    async def dead_subscriptions(self, event_id: str) -> set[str]:
        """The subscriptions holding a dead letter of ``event_id``."""
        found = await self._dead_entries(event_id, None)
        return {untoken(self._dead.tokens(m.subject)[1]) for m in found}

    async def take_dead_letters(
        self, event_id: str | None, subscription: str | None
    ) -> list[DeadLetter]:
        entries = await self._dead_entries(event_id, subscription)
        won = await self._wire.purge(self._dead.stream, [(m.subject, m.seq + 1) for m in entries])
        taken = [m for m, count in zip(entries, won, strict=True) if count]
        if taken:
            await self._release([tuple(self._dead.tokens(m.subject)) for m in taken])
        return [DeadLetter.model_validate_json(m.data) for m in taken]  # oldest first

    async def _dead_entries(self, event_id: str | None, subscription: str | None) -> list[Stored]:
        """The dead letters matching the filters, oldest first."""
        event = "*" if event_id is None else token(event_id)
        sub = "*" if subscription is None else token(subscription)
        if event_id is not None and subscription is not None:
            subjects = [self._dead.subject(event, sub)]
        else:
            subjects = await self._wire.subjects(self._dead.stream, self._dead.subject(event, sub))
        found = await self._wire.last([(self._dead.stream, s) for s in subjects])
        return sorted((m for m in map(present, found) if m is not None), key=lambda m: m.seq)

    async def _release(self, pairs: list[tuple[str, ...]]) -> None:
        """After dead letters were taken: their pairs' step results go back to the steps
        bucket for another window (unless the pair waits), and their counters are
        forgotten everywhere."""
        kept_steps = [(self._kept.stream, self._kept.subject(STEPS, *p)) for p in pairs]
        waits = [(self._kept.stream, self._kept.subject(WAITS, *p)) for p in pairs]
        found = await self._wire.last([*kept_steps, *waits])
        steps, pins = found[: len(pairs)], found[len(pairs) :]
        free = {p for p, pin in zip(pairs, pins, strict=True) if present(pin) is None}
        now = clock.time()
        kept = [(p, m) for p, m in zip(pairs, map(present, steps), strict=True) if m and p in free]
        await self._wire.put(
            [(self._steps.subject(STEPS, *p), _encode(now, _values(m)), None) for p, m in kept]
        )
        purged = [(self._kept, k, p) for p in pairs for k in (STEPS, COUNTERS) if p in free]
        purged += [(self._kept, COUNTERS, p) for p in pairs if p not in free]
        purged += [(self._steps, COUNTERS, p) for p in pairs]
        for bucket in (self._kept, self._steps):
            await self._wire.purge(
                bucket.stream, [(bucket.subject(k, *p), None) for b, k, p in purged if b is bucket]
            )

    # waits: a pair's wait ids keep its steps and counters

    async def pin(self, subscription: str, event_id: str, wait_id: str) -> None:
        """Note that the pair has the wait ``wait_id``: its steps and counters are kept
        (copied to the kept bucket unless they are there) until its last wait goes."""
        pair = (token(event_id), token(subscription))
        subject = self._kept.subject(WAITS, *pair)
        while True:
            [found] = await self._wire.last([(self._kept.stream, subject)])
            ids = _ids(found)
            if wait_id in ids:
                return
            if await self._wire.swap(subject, _dump([*ids, wait_id]), _seq(found)):
                break
        if ids:
            return  # kept already
        where = [(self._steps.stream, self._steps.subject(k, *pair)) for k in (STEPS, COUNTERS)]
        first = {EXPECTED_LAST: "0"}  # a write since the pin, or a dead letter's copy, wins
        steps, counters = map(self._fresh, await self._wire.last(where))
        copies = [
            (self._kept.subject(kind, *pair), fresh.data, first)
            for kind, fresh in ((STEPS, steps), (COUNTERS, counters))
            if fresh is not None
        ]
        for refusal in await self._wire.publish(copies):
            if refusal is not None and not refusal.lost_race:
                raise refusal

    async def unpin(self, subscription: str, event_id: str, wait_id: str) -> None:
        """The wait ``wait_id`` of the pair is gone: after its last wait, the pair's steps
        and counters go back to the steps bucket for another window, unless it has a
        dead letter."""
        pair = (token(event_id), token(subscription))
        subject = self._kept.subject(WAITS, *pair)
        while True:
            [found] = await self._wire.last([(self._kept.stream, subject)])
            ids = _ids(found)
            if found is None or wait_id not in ids:
                return
            rest = [i for i in ids if i != wait_id]
            if rest:
                if await self._wire.swap(subject, _dump(rest), found.seq):
                    return
            elif (await self._wire.purge(self._kept.stream, [(subject, found.seq + 1)]))[0]:
                break
        where = [(self._kept.stream, self._kept.subject(k, *pair)) for k in (STEPS, COUNTERS)]
        where.append((self._dead.stream, self._dead.subject(*pair)))
        steps, counters, dead = await self._wire.last(where)
        if present(dead) is not None:
            return
        now = clock.time()
        back = [
            (self._steps.subject(kind, *pair), _encode(now, _values(m)), None)
            for kind, m in ((STEPS, present(steps)), (COUNTERS, present(counters)))
            if m is not None
        ]
        await self._wire.put(back)
        await self._wire.purge(self._kept.stream, [(kept, None) for _stream, kept in where[:2]])

    async def waiting(self, event_id: str, subscription: str | None) -> list[str]:
        """The ids of the waits of ``event_id``'s pairs (of one subscription, or all)."""
        bucket = self._kept
        if subscription is None:
            pattern = bucket.subject(WAITS, token(event_id), "*")
            subjects = await self._wire.subjects(bucket.stream, pattern)
        else:
            subjects = [bucket.subject(WAITS, token(event_id), token(subscription))]
        found = await self._wire.last([(bucket.stream, s) for s in subjects])
        return [wait_id for m in found for wait_id in _ids(m)]

    # step results and counters

    async def step_result(self, subscription: str, event_id: str, step: str) -> str | None:
        pair = (token(event_id), token(subscription))
        steps, kept = await self._wire.last(
            [(b.stream, b.subject(STEPS, *pair)) for b in (self._steps, self._kept)]
        )
        found = present(kept) or self._fresh(steps)
        result = None if found is None else _values(found).get(step)
        return None if result is None else str(result)

    async def record_step(self, subscription: str, event_id: str, step: str, result: str) -> None:
        await self._change(STEPS, subscription, event_id, lambda steps: {**steps, step: result})

    async def add_to(
        self, subscription: str, event_id: str, counter: str, amounts: Mapping[str, float]
    ) -> dict[str, float]:
        def add(counters: Values) -> Values:
            totals = dict(counters.get(counter) or {})
            for name, amount in amounts.items():
                totals[name] = totals.get(name, 0.0) + float(amount)
            return {**counters, counter: totals}

        counters = await self._change(COUNTERS, subscription, event_id, add if amounts else None)
        return {name: float(total) for name, total in (counters.get(counter) or {}).items()}

    async def _change(
        self,
        kind: str,
        subscription: str,
        event_id: str,
        change: Callable[[Values], Values] | None,
    ) -> Values:
        """Read the pair's steps or counters and write ``change(values)`` back (None:
        only read), where they live: kept while the pair has a dead letter or a wait."""
        pair = (token(event_id), token(subscription))
        where = [(b.stream, b.subject(kind, *pair)) for b in (self._steps, self._kept)]
        where.append((self._dead.stream, self._dead.subject(*pair)))
        where.append((self._kept.stream, self._kept.subject(WAITS, *pair)))
        while True:
            steps, kept, dead, waits = await self._wire.last(where)
            pinned = present(dead) is not None or present(waits) is not None
            # A kept pair starts from its steps only if nothing was copied or written there.
            found = (present(kept) or self._fresh(steps)) if pinned else self._fresh(steps)
            values = {} if found is None else _values(found)
            if change is None:
                return values
            target, last = (where[1][1], kept) if pinned else (where[0][1], steps)
            changed = change(values)
            seq = 0 if last is None else last.seq
            if await self._wire.swap(target, _encode(clock.time(), changed), seq):
                return changed

    def _fresh(self, found: Stored | None) -> Stored | None:
        """The steps or counters message if it was written within the window."""
        value = present(found)
        if value is None or json.loads(value.data)["at"] < clock.time() - self.window:
            return None
        return value


def _values(found: Stored) -> Values:
    values: Values = json.loads(found.data)["v"]
    return values


def _encode(at: float, values: Values) -> bytes:
    return json.dumps({"at": at, "v": values}, separators=(",", ":")).encode()


def _ids(found: Stored | None) -> list[str]:
    """The wait ids of a pair's ``w.`` key (none when it has none)."""
    value = present(found)
    ids: list[str] = [] if value is None else json.loads(value.data)
    return ids


def _dump(ids: list[str]) -> bytes:
    return json.dumps(ids, separators=(",", ":")).encode()


def _seq(found: Stored | None) -> int:
    return 0 if found is None else found.seq
