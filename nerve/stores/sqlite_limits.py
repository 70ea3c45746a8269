"""The SQLite store's flow control (:class:`Limits`): its tables and the methods that use them.

``nerve_slots`` holds a row per holder of a slot, with the end of its lease;
``nerve_rates`` a row per GCRA state, its theoretical arrival time (TAT). A take reads and
writes its ``(limiter, key)`` in one ``BEGIN IMMEDIATE`` transaction, so two processes on
the file take turns and never both see room for one more. Holders whose lease ended are
dropped by the next take of their key; every so often a take also drops, for every key,
the holders and rate states more than :data:`_STALE` seconds past (the margin spares a
process whose clock is a little behind).
"""

from __future__ import annotations

import sqlite3

from nerve.connections.sqlite import SQLiteDatabase
from nerve.stores.base import RATE_EPSILON, Limits

__all__ = ["SCHEMA", "SQLiteLimits", "gcra"]

SCHEMA = """
CREATE TABLE IF NOT EXISTS nerve_slots (
    limiter TEXT NOT NULL, key TEXT NOT NULL, holder TEXT NOT NULL, lease_end REAL NOT NULL,
    PRIMARY KEY (limiter, key, holder)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS nerve_rates (
    limiter TEXT NOT NULL, key TEXT NOT NULL, tat REAL NOT NULL,
    PRIMARY KEY (limiter, key)) WITHOUT ROWID;
"""

#: Stale holders and rate states of every key are dropped once every this many takes.
_PRUNE_EVERY = 1000
#: Seconds past their end before stale rows are dropped by the pruning.
_STALE = 60.0


def gcra(
    stored: float | None, *, interval: float, burst: float, cost: float, now: float
) -> tuple[float, float]:
    """The TAT after taking ``cost`` units on ``stored`` (None: a fresh state), and the
    seconds until they would conform (at most :data:`RATE_EPSILON` when they do)."""
    tat = now if stored is None else max(stored, now)
    new = max(now, tat + cost * interval)
    return new, new - now - burst * interval


class SQLiteLimits(Limits):
    """:class:`Limits` on the store's SQLite database (one transaction per call)."""

    _db: SQLiteDatabase
    _limit_takes = 0

    async def take_slot(
        self, limiter: str, key: str, holder: str, *, limit: int, lease: float, now: float
    ) -> bool:
        return await self._db.run(self._take_slot, limiter, key, holder, limit, now + lease, now)

    def _take_slot(
        self, limiter: str, key: str, holder: str, limit: int, end: float, now: float
    ) -> bool:
        with self._db.transaction() as db:  # BEGIN IMMEDIATE: one taker at a time
            db.execute(
                "DELETE FROM nerve_slots WHERE limiter = ? AND key = ? AND lease_end <= ?",
                (limiter, key, now),
            )
            others = db.execute(
                "SELECT count(*) FROM nerve_slots WHERE limiter = ? AND key = ? AND holder <> ?",
                (limiter, key, holder),
            ).fetchone()[0]
            if others >= limit:
                return False
            db.execute(
                "INSERT OR REPLACE INTO nerve_slots VALUES (?, ?, ?, ?)",
                (limiter, key, holder, end),
            )
            self._limits_pruned(db, now)
        return True

    async def free_slot(self, limiter: str, key: str, holder: str) -> None:
        await self._db.run(
            self._db.execute,
            "DELETE FROM nerve_slots WHERE limiter = ? AND key = ? AND holder = ?",
            (limiter, key, holder),
        )

    async def slots_taken(self, limiter: str, key: str, now: float) -> int:
        rows = await self._db.run(
            self._db.execute,
            "SELECT count(*) FROM nerve_slots WHERE limiter = ? AND key = ? AND lease_end > ?",
            (limiter, key, now),
        )
        return int(rows[0][0])

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
        return await self._db.run(self._take_rate, limiter, key, interval, burst, cost, now, force)

    def _take_rate(
        self,
        limiter: str,
        key: str,
        interval: float,
        burst: float,
        cost: float,
        now: float,
        force: bool,
    ) -> float:
        with self._db.transaction() as db:  # BEGIN IMMEDIATE: read and write at once
            row = db.execute(
                "SELECT tat FROM nerve_rates WHERE limiter = ? AND key = ?", (limiter, key)
            ).fetchone()
            new, wait = gcra(
                None if row is None else row[0],
                interval=interval,
                burst=burst,
                cost=cost,
                now=now,
            )
            if wait <= RATE_EPSILON or force:
                db.execute(
                    "INSERT OR REPLACE INTO nerve_rates VALUES (?, ?, ?)", (limiter, key, new)
                )
                self._limits_pruned(db, now)
        return 0.0 if wait <= RATE_EPSILON else wait

    async def block_rate(
        self, limiter: str, key: str, *, until: float, burst: float, interval: float
    ) -> None:
        # One statement: atomic by itself.
        await self._db.run(
            self._db.execute,
            "INSERT INTO nerve_rates VALUES (?, ?, ?) ON CONFLICT (limiter, key) "
            "DO UPDATE SET tat = max(tat, excluded.tat)",
            (limiter, key, until + burst * interval),
        )

    def _limits_pruned(self, db: sqlite3.Connection, now: float) -> None:
        """Count a take; every so often, drop the stale holders and rate states."""
        self._limit_takes += 1
        if self._limit_takes >= _PRUNE_EVERY:
            self._limit_takes = 0
            db.execute("DELETE FROM nerve_slots WHERE lease_end < ?", (now - _STALE,))
            db.execute("DELETE FROM nerve_rates WHERE tat < ?", (now - _STALE,))
