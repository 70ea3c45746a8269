"""The SQLite store's timers and waits: their tables and the methods that use them.

``nerve_timers`` holds a row per timer, indexed by when it is due and then by its
``seq``, the order of writing (timers due at once come in the order they were written or
claimed); a claim selects the due rows and moves them past their lease in one
``BEGIN IMMEDIATE`` transaction, so two processes on the file never claim the same timer.
``nerve_waits`` holds a row per wait (its record as JSON), indexed by awaited type and
match key, and by the suspended pair; ``nerve_wait_shapes`` the shapes of match in use per
awaited type, so a batch of published events costs one read of their types' shapes and
one indexed lookup of their keys.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from nerve import clock
from nerve.connections.sqlite import SQLiteDatabase
from nerve.events import Event
from nerve.matching import event_key
from nerve.records import Timer, WaitRecord
from nerve.stores.base import Timers, WaitStore

__all__ = ["SCHEMA", "SQLiteTimersAndWaits"]

SCHEMA = """
CREATE TABLE IF NOT EXISTS nerve_timers (
    seq INTEGER PRIMARY KEY, timer_id TEXT NOT NULL UNIQUE, due REAL NOT NULL,
    body TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS nerve_timers_due ON nerve_timers (due);
CREATE TABLE IF NOT EXISTS nerve_waits (
    wait_id TEXT PRIMARY KEY, event_type TEXT NOT NULL, match_key TEXT NOT NULL,
    subscription TEXT NOT NULL, event_id TEXT NOT NULL, body TEXT NOT NULL,
    created_at REAL NOT NULL);
CREATE INDEX IF NOT EXISTS nerve_waits_key ON nerve_waits (event_type, match_key);
CREATE INDEX IF NOT EXISTS nerve_waits_pair ON nerve_waits (event_id, subscription);
CREATE TABLE IF NOT EXISTS nerve_wait_shapes (
    event_type TEXT NOT NULL, shape TEXT NOT NULL,
    PRIMARY KEY (event_type, shape)) WITHOUT ROWID;
"""

#: Pairs of (type, key) looked up per statement (SQLite caps bound parameters).
_CHUNK = 400


class SQLiteTimersAndWaits(Timers, WaitStore):
    """:class:`Timers` and :class:`WaitStore` on the store's SQLite database."""

    _db: SQLiteDatabase

    # timers

    async def add_timer(self, timer: Timer, *, replace: bool = False) -> bool:
        # A new row's seq is the largest + 1 (REPLACE deletes the old row first: a replaced
        # timer is the newest). Without replace, the first insert wins; the others change
        # no row (rowcount 0).
        sql = (
            "INSERT OR REPLACE INTO nerve_timers (timer_id, due, body) VALUES (?, ?, ?)"
            if replace
            else "INSERT INTO nerve_timers (timer_id, due, body) VALUES (?, ?, ?) "
            "ON CONFLICT (timer_id) DO NOTHING"
        )
        return await self._db.run(self._changed, sql, (timer.timer_id, timer.due, timer.body))

    def _changed(self, sql: str, params: tuple[Any, ...]) -> bool:
        return bool(self._db.conn.execute(sql, params).rowcount)

    async def claim_timers(self, now: float, lease: float, limit: int) -> list[Timer]:
        # Every running bus asks several times a second; a plain read first, so a poll
        # that finds nothing due takes no write lock from the file's other writers.
        due = await self._db.run(
            self._db.execute, "SELECT 1 FROM nerve_timers WHERE due <= ? LIMIT 1", (now,)
        )
        if not due:
            return []
        rows = await self._db.run(self._claim_timers, now, lease, limit)
        return [Timer(timer_id=i, due=due, body=body) for i, due, body in rows]

    def _claim_timers(self, now: float, lease: float, limit: int) -> list[Any]:
        with self._db.transaction() as db:  # BEGIN IMMEDIATE: one claimer at a time
            rows = db.execute(
                "SELECT timer_id, due, body FROM nerve_timers WHERE due <= ? "
                "ORDER BY due, seq LIMIT ?",
                (now, limit),
            ).fetchall()
            db.executemany(  # one by one, each the newest: they stay in this order
                "UPDATE nerve_timers SET due = ?, seq = (SELECT max(seq) + 1 FROM nerve_timers) "
                "WHERE timer_id = ?",
                [(now + lease, row[0]) for row in rows],
            )
        return rows

    async def delete_timer(self, timer_id: str) -> bool:
        return await self._db.run(
            self._changed, "DELETE FROM nerve_timers WHERE timer_id = ?", (timer_id,)
        )

    async def timers(self, prefix: str = "", limit: int = 100) -> list[Timer]:
        rows = await self._db.run(
            self._db.execute,
            "SELECT timer_id, due, body FROM nerve_timers WHERE substr(timer_id, 1, ?) = ? "
            "ORDER BY due, seq LIMIT ?",
            (len(prefix), prefix, limit),
        )
        return [Timer(timer_id=i, due=due, body=body) for i, due, body in rows]

    async def timer(self, timer_id: str) -> Timer | None:
        rows = await self._db.run(
            self._db.execute,
            "SELECT timer_id, due, body FROM nerve_timers WHERE timer_id = ?",
            (timer_id,),
        )
        return Timer(timer_id=rows[0][0], due=rows[0][1], body=rows[0][2]) if rows else None

    # waits

    async def add_wait(self, wait: WaitRecord) -> None:
        row = (
            wait.wait_id,
            wait.event_type,
            wait.key,
            wait.subscription,
            wait.event.event_id,
            wait.model_dump_json(),
            clock.time(),
        )
        await self._db.run(self._add_wait, row, (wait.event_type, json.dumps(wait.shape)))

    def _add_wait(self, row: tuple[Any, ...], shape: tuple[str, str]) -> None:
        with self._db.transaction() as db:
            db.execute("INSERT OR IGNORE INTO nerve_wait_shapes VALUES (?, ?)", shape)
            # REPLACE deletes the old row first: a replaced wait is the newest.
            db.execute("INSERT OR REPLACE INTO nerve_waits VALUES (?, ?, ?, ?, ?, ?, ?)", row)

    async def waits_for(self, events: Sequence[Event[Any]]) -> list[tuple[WaitRecord, Event[Any]]]:
        if not events:
            return []
        return await self._db.run(self._waits_for, events)

    def _waits_for(self, events: Sequence[Event[Any]]) -> list[tuple[WaitRecord, Event[Any]]]:
        conn = self._db.conn
        types = sorted({e.event_type for e in events})
        shapes: dict[str, list[list[str]]] = {}
        for start in range(0, len(types), _CHUNK):
            chunk = types[start : start + _CHUNK]
            for event_type, shape in conn.execute(
                "SELECT event_type, shape FROM nerve_wait_shapes WHERE event_type IN "  # noqa: S608  # placeholders only
                f"({','.join('?' * len(chunk))})",
                chunk,
            ):
                shapes.setdefault(event_type, []).append(json.loads(shape))
        # each event's keys, one per shape of its type that it has every path of
        keys: list[list[str]] = []
        for event in events:
            found = (event_key(event, shape) for shape in shapes.get(event.event_type, ()))
            keys.append([k for k in found if k is not None])
        wanted = sorted({(e.event_type, k) for e, ks in zip(events, keys, strict=True) for k in ks})
        waits: dict[tuple[str, str], list[WaitRecord]] = {}
        for start in range(0, len(wanted), _CHUNK):
            batch = wanted[start : start + _CHUNK]
            pairs = ",".join(["(?, ?)"] * len(batch))
            for body, event_type, key in conn.execute(
                f"SELECT w.body, w.event_type, w.match_key FROM (VALUES {pairs}) AS k "  # noqa: S608  # placeholders only
                "JOIN nerve_waits w ON w.event_type = k.column1 AND w.match_key = k.column2 "
                "ORDER BY w.created_at, w.rowid",
                [v for pair in batch for v in pair],
            ):
                waits.setdefault((event_type, key), []).append(WaitRecord.model_validate_json(body))
        return [
            (wait, event)
            for event, event_keys in zip(events, keys, strict=True)
            for key in event_keys
            for wait in waits.get((event.event_type, key), ())
        ]

    async def remove_wait(self, wait_id: str) -> bool:
        return await self._db.run(self._remove_wait, wait_id)

    def _remove_wait(self, wait_id: str) -> bool:
        with self._db.transaction() as db:
            row = db.execute(
                "SELECT event_id, subscription FROM nerve_waits WHERE wait_id = ?", (wait_id,)
            ).fetchone()
            if row is None:
                return False
            db.execute("DELETE FROM nerve_waits WHERE wait_id = ?", (wait_id,))
            # The pair's steps and counters: kept another window from now.
            for table in ("nerve_steps", "nerve_counters"):
                db.execute(
                    f"UPDATE {table} SET at = ? WHERE event_id = ? AND subscription = ?",  # noqa: S608  # constant names
                    (clock.time(), *row),
                )
        return True

    async def waits(
        self,
        *,
        subscription: str | None = None,
        event_id: str | None = None,
        event_type: str | None = None,
        limit: int | None = None,
    ) -> list[WaitRecord]:
        clauses: list[str] = []
        params: list[Any] = []
        for column, value in (
            ("subscription", subscription),
            ("event_id", event_id),
            ("event_type", event_type),
        ):
            if value is not None:
                clauses.append(f"{column} = ?")
                params.append(value)
        where = "WHERE " + " AND ".join(clauses) if clauses else ""
        rows = await self._db.run(
            self._db.execute,
            f"SELECT body FROM nerve_waits {where} ORDER BY created_at, rowid LIMIT ?",  # noqa: S608  # placeholders only
            (*params, -1 if limit is None else limit),
        )
        return [WaitRecord.model_validate_json(row[0]) for row in rows]
