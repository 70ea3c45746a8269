"""Flow control on the ``{prefix}_limits`` bucket: keyed slots with leases, GCRA rates.

Slots: ``s.{limiter}.{key}`` holds ``{holder: lease end}`` (JSON, unix times). A take
reads it, drops the holders whose lease ended, and writes it back with the holder (its
lease renewed) by compare-and-set on the sequence read; a lost race reads again. A take
refused (the limit reached) writes nothing. Freeing the last holder deletes the key by
compare-and-delete (a purge below the next sequence), so a key nobody holds takes no room.

Rates: ``r.{limiter}.{key}`` holds the theoretical arrival time (a float as text), moved
by compare-and-set the same way; a take that does not conform (and is not forced) writes
nothing.

Every call is a read and, when it changes something, a compare-and-set: two round trips,
one more read and write per lost race. nats-server 2.9 has no per-key TTL and the bucket
no max age (a lease or a pause may be long), so a rate state whose TAT is past (it equals
a fresh one), or a slot key left by holders that crashed (their leases ended, dropped by
the next take), stays until written again: one small message per (limiter, key) used.
"""

from __future__ import annotations

import json

from nerve.stores.base import RATE_EPSILON
from nerve.stores.nats.layout import Layout, token
from nerve.stores.nats.wire import Stored, Wire, present

#: The kinds of keys, their first token.
SLOTS, RATES = "s", "r"


class Limits:
    """The slots and rate states of one prefix."""

    def __init__(self, wire: Wire, layout: Layout) -> None:
        self._wire = wire
        self._bucket = layout.limits
        self._stream = layout.limits.stream

    def _subject(self, kind: str, limiter: str, key: str) -> str:
        return self._bucket.subject(kind, token(limiter), token(key))

    async def _read(self, subject: str) -> Stored | None:
        [found] = await self._wire.last([(self._stream, subject)])
        return found

    # slots

    async def take_slot(
        self, limiter: str, key: str, holder: str, *, limit: int, lease: float, now: float
    ) -> bool:
        subject = self._subject(SLOTS, limiter, key)
        while True:
            found = await self._read(subject)
            holders = {h: end for h, end in _holders(found).items() if end > now}
            if holder not in holders and len(holders) >= limit:
                return False
            holders[holder] = now + lease
            if await self._wire.swap(subject, _dump(holders), _seq(found)):
                return True

    async def free_slot(self, limiter: str, key: str, holder: str) -> None:
        subject = self._subject(SLOTS, limiter, key)
        while True:
            found = await self._read(subject)
            holders = _holders(found)
            if found is None or holders.pop(holder, None) is None:
                return
            if holders:
                if await self._wire.swap(subject, _dump(holders), found.seq):
                    return
            else:
                [gone] = await self._wire.purge(self._stream, [(subject, found.seq + 1)])
                if gone:
                    return

    async def slots_taken(self, limiter: str, key: str, now: float) -> int:
        holders = _holders(await self._read(self._subject(SLOTS, limiter, key)))
        return sum(1 for end in holders.values() if end > now)

    # rates

    async def take_rate(
        self,
        limiter: str,
        key: str,
        *,
        interval: float,
        burst: float,
        cost: float,
        now: float,
        force: bool,
    ) -> float:
        subject = self._subject(RATES, limiter, key)
        while True:
            found = await self._read(subject)
            tat = max(_tat(found, now), now)
            new = max(now, tat + cost * interval)
            wait = new - now - burst * interval
            conforms = wait <= RATE_EPSILON
            if not (conforms or force) or await self._wire.swap(
                subject, repr(new).encode(), _seq(found)
            ):
                return 0.0 if conforms else wait

    async def block_rate(
        self, limiter: str, key: str, *, until: float, burst: float, interval: float
    ) -> None:
        subject = self._subject(RATES, limiter, key)
        blocked = until + burst * interval
        while True:
            found = await self._read(subject)
            if _tat(found, 0.0) >= blocked:
                return
            if await self._wire.swap(subject, repr(blocked).encode(), _seq(found)):
                return


def _seq(found: Stored | None) -> int:
    """The sequence a compare-and-set expects (a delete marker's too; 0: no message)."""
    return 0 if found is None else found.seq


def _holders(found: Stored | None) -> dict[str, float]:
    value = present(found)
    holders: dict[str, float] = {} if value is None else json.loads(value.data)
    return holders


def _dump(holders: dict[str, float]) -> bytes:
    return json.dumps(holders, separators=(",", ":")).encode()


def _tat(found: Stored | None, default: float) -> float:
    value = present(found)
    return default if value is None else float(value.data)
