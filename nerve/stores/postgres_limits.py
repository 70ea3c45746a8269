"""The PostgreSQL store's flow control (:class:`Limits`; its SQL is in
:mod:`nerve.stores.postgres_sql`).

``slots`` holds a row per ``(limiter, key)`` with its holders and their lease ends (a
``jsonb`` object), ``rates`` a row per GCRA state: its theoretical arrival time (TAT) and
the wait its last take was told. Every take is one upsert statement that reads and writes
the key's row under its row lock, so concurrent takes on any number of connections take
turns and never both see room for one more. The times are the callers' (``now``), not
the server's. Holders whose lease ended are dropped by the next take of their key; every
so often a take also drops, for every key, the holders and rate states more than
:data:`_STALE` seconds past (the margin spares a process whose clock is a little behind).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from nerve.exceptions import StoreError
from nerve.stores.base import RATE_EPSILON, Limits

if TYPE_CHECKING:
    from nerve.stores.postgres_sql import Statements

__all__ = ["PostgresLimits"]

log = logging.getLogger(__name__)

#: Stale holders and rate states of every key are dropped once every this many takes.
_PRUNE_EVERY = 1000
#: Seconds past their end before stale rows are dropped by the pruning.
_STALE = 60.0


class PostgresLimits(Limits):
    """:class:`Limits` on the store's pool (one round trip per call)."""

    _limit_takes = 0

    if TYPE_CHECKING:  # the store's
        _sql: Statements

        async def _fetchval(self, sql: str, *args: Any) -> Any: ...

        async def _execute(self, sql: str, *args: Any) -> None: ...

    async def take_slot(
        self, limiter: str, key: str, holder: str, *, limit: int, lease: float, now: float
    ) -> bool:
        taken = await self._fetchval(
            self._sql.take_slot, limiter, key, holder, limit, now, now + lease
        )
        if taken is not None:
            await self._limits_pruned(now)
        return taken is not None

    async def free_slot(self, limiter: str, key: str, holder: str) -> None:
        await self._execute(self._sql.free_slot, limiter, key, holder)

    async def slots_taken(self, limiter: str, key: str, now: float) -> int:
        return int(await self._fetchval(self._sql.slots_taken, limiter, key, now))

    async def take_rate(
        self,
        limiter: str,
        key: str,
        *,
        interval: float,
        burst: float,
        cost: float,
        now: float,
        force: bool = False,
    ) -> float:
        wait = float(
            await self._fetchval(
                self._sql.take_rate, limiter, key, interval, burst, cost, now, force
            )
        )
        if wait <= RATE_EPSILON or force:
            await self._limits_pruned(now)
        return 0.0 if wait <= RATE_EPSILON else wait

    async def block_rate(
        self, limiter: str, key: str, *, until: float, burst: float, interval: float
    ) -> None:
        await self._execute(self._sql.block_rate, limiter, key, until + burst * interval)

    async def _limits_pruned(self, now: float) -> None:
        """Count a take; every so often, drop the stale holders and rate states."""
        self._limit_takes += 1
        if self._limit_takes < _PRUNE_EVERY:
            return
        self._limit_takes = 0
        try:
            await self._execute(self._sql.prune_limits, now - _STALE)
        except StoreError:  # housekeeping: the take was made; prune next time
            log.warning("%r: could not prune stale limits", self, exc_info=True)
