"""``sqlite:///path.db``: a store in one SQLite file that survives restarts.

A committed write survives a crash of the process (see ``nerve.sqlitedb`` for the
connection's settings); a power loss may take the last few transactions.

A table per kind of record: done marks, publish records, failures, dead letters, step
results, counters, the event log (events, with their type for lookbacks by type, and
outcomes), declared subscriptions; the timers and waits of
:mod:`nerve.stores.sqlite_waits`; the slots and rate states of
:mod:`nerve.stores.sqlite_limits`. A file made by an older nerve is brought up to date
when opened.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any, Self, TypeVar

from nerve import clock
from nerve.connections.sqlite import SQLiteDatabase, sqlite_path
from nerve.events import Event
from nerve.exceptions import AlreadyHandled, StoreError
from nerve.records import (
    AttemptError,
    DeadLetter,
    DeliveryState,
    EventRecord,
    Outcome,
    OutcomeRow,
    PublishedRow,
)
from nerve.settings import Settings
from nerve.stores.base import DEFAULT_WINDOW, Store
from nerve.stores.sqlite_limits import SCHEMA as LIMITS_SCHEMA
from nerve.stores.sqlite_limits import SQLiteLimits
from nerve.stores.sqlite_waits import SCHEMA as WAITS_SCHEMA
from nerve.stores.sqlite_waits import SQLiteTimersAndWaits

T = TypeVar("T")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS nerve_done (
    subscription TEXT NOT NULL, event_id TEXT NOT NULL, at REAL NOT NULL,
    PRIMARY KEY (event_id, subscription)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS nerve_done_at ON nerve_done (at);
CREATE TABLE IF NOT EXISTS nerve_published (
    event_id TEXT PRIMARY KEY, event_type TEXT NOT NULL, at REAL NOT NULL) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS nerve_published_at ON nerve_published (at);
CREATE TABLE IF NOT EXISTS nerve_failures (
    subscription TEXT NOT NULL, event_id TEXT NOT NULL, attempt INTEGER NOT NULL,
    error TEXT NOT NULL,
    PRIMARY KEY (event_id, subscription, attempt)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS nerve_dead_letters (
    subscription TEXT NOT NULL, event_id TEXT NOT NULL, dead_at REAL NOT NULL,
    entry TEXT NOT NULL,
    PRIMARY KEY (event_id, subscription)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS nerve_dead_letters_at ON nerve_dead_letters (dead_at);
CREATE TABLE IF NOT EXISTS nerve_steps (
    subscription TEXT NOT NULL, event_id TEXT NOT NULL, step TEXT NOT NULL,
    result TEXT NOT NULL, at REAL NOT NULL,
    PRIMARY KEY (event_id, subscription, step)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS nerve_steps_at ON nerve_steps (at);
CREATE TABLE IF NOT EXISTS nerve_counters (
    subscription TEXT NOT NULL, event_id TEXT NOT NULL, counter TEXT NOT NULL,
    name TEXT NOT NULL, total REAL NOT NULL, at REAL NOT NULL,
    PRIMARY KEY (event_id, subscription, counter, name)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS nerve_counters_at ON nerve_counters (at);
CREATE TABLE IF NOT EXISTS nerve_log_events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, event_id TEXT NOT NULL UNIQUE,
    correlation_id TEXT NOT NULL, published_at REAL NOT NULL, event TEXT NOT NULL,
    event_type TEXT);
CREATE INDEX IF NOT EXISTS nerve_log_events_chain ON nerve_log_events (correlation_id);
CREATE INDEX IF NOT EXISTS nerve_log_events_at ON nerve_log_events (published_at);
CREATE TABLE IF NOT EXISTS nerve_log_outcomes (
    subscription TEXT NOT NULL, event_id TEXT NOT NULL, attempt INTEGER NOT NULL,
    state TEXT NOT NULL, ended_at REAL NOT NULL, seconds REAL NOT NULL,
    error_type TEXT, error_message TEXT);
CREATE INDEX IF NOT EXISTS nerve_log_outcomes_event ON nerve_log_outcomes (event_id);
CREATE INDEX IF NOT EXISTS nerve_log_outcomes_at ON nerve_log_outcomes (ended_at);
CREATE TABLE IF NOT EXISTS nerve_declared (
    name TEXT PRIMARY KEY, pattern TEXT NOT NULL, declared_at REAL NOT NULL) WITHOUT ROWID;
"""

# Step results and counters older than the window, unless their pair has a dead letter
# or a wait (a replay, a resumed run, needs them).
_PRUNE_STEPS = """
DELETE FROM {table} WHERE at < ? AND NOT EXISTS (
    SELECT 1 FROM nerve_dead_letters d
    WHERE d.event_id = {table}.event_id AND d.subscription = {table}.subscription)
AND NOT EXISTS (
    SELECT 1 FROM nerve_waits w
    WHERE w.event_id = {table}.event_id AND w.subscription = {table}.subscription)
"""

#: Expired marks are deleted once every this many done marks.
_PRUNE_EVERY = 1000


class SQLiteStore(SQLiteTimersAndWaits, SQLiteLimits, Store):
    """Idempotency marks, failures, dead letters, steps, the event log, timers, waits and
    flow control in a SQLite file.

    Args:
        url: ``sqlite:///path.db``.
        window: seconds an idempotency mark (and publish record) is kept.
    """

    def __init__(self, url: str, *, window: float = DEFAULT_WINDOW) -> None:
        self.path = sqlite_path(url)
        self.window = window
        self._db = SQLiteDatabase(self.path, _SCHEMA + WAITS_SCHEMA + LIMITS_SCHEMA, StoreError)
        self._writes = 0
        self._step_writes = 0

    @classmethod
    def from_url(cls, url: str, settings: Settings) -> Self:
        return cls(url, window=settings.idempotency_window)

    async def open(self) -> None:
        if not self._db.is_open:
            await self._db.open()
            await self._run(self._upgrade)

    def _upgrade(self) -> None:
        """Bring a file made by an older nerve up to date: its log gets the event type."""
        conn = self._db.conn
        if not _has_event_type(conn):
            with self._db.transaction() as db:
                if not _has_event_type(db):  # not added meanwhile by another process
                    db.execute("ALTER TABLE nerve_log_events ADD COLUMN event_type TEXT")
                    db.execute(
                        "UPDATE nerve_log_events "
                        "SET event_type = json_extract(event, '$.event_type')"
                    )
        conn.execute(
            "CREATE INDEX IF NOT EXISTS nerve_log_events_type "
            "ON nerve_log_events (event_type, published_at)"
        )

    async def close(self) -> None:
        await self._db.close()

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        return await self._db.run(fn, *args)

    def _execute(self, sql: str, params: tuple[Any, ...] = ()) -> list[Any]:
        return self._db.execute(sql, params)

    def _write(self, sql: str, params: tuple[Any, ...]) -> None:
        self._db.conn.execute(sql, params)

    async def record_published(self, event: Event[Any]) -> None:
        await self._run(
            self._write,
            "INSERT OR IGNORE INTO nerve_published VALUES (?, ?, ?)",
            (event.event_id, event.event_type, clock.time()),
        )

    async def record_published_many(self, events: Sequence[Event[Any]]) -> None:
        now = clock.time()
        rows = [(e.event_id, e.event_type, now) for e in events]
        await self._run(
            self._write_many, "INSERT OR IGNORE INTO nerve_published VALUES (?, ?, ?)", rows
        )

    def _write_many(self, sql: str, rows: list[tuple[Any, ...]]) -> None:
        with self._db.transaction() as db:
            db.executemany(sql, rows)

    async def event_type(self, event_id: str) -> str | None:
        rows = await self._run(
            self._execute,
            "SELECT event_type FROM nerve_published WHERE event_id = ? AND at >= ?",
            (event_id, clock.time() - self.window),
        )
        return rows[0][0] if rows else None

    async def is_done(self, subscription: str, event_id: str) -> bool:
        rows = await self._run(
            self._execute,
            "SELECT 1 FROM nerve_done WHERE event_id = ? AND subscription = ? AND at >= ?",
            (event_id, subscription, clock.time() - self.window),
        )
        return bool(rows)

    async def mark_done(self, subscription: str, event_id: str) -> None:
        await self.mark_done_many({subscription: (event_id,)})

    async def mark_done_many(self, done: Mapping[str, Sequence[str]]) -> None:
        rows = [(sub, eid) for sub, eids in done.items() for eid in eids]
        await self._run(self._mark_done, rows)

    def _mark_done(self, rows: list[tuple[str, str]]) -> None:
        now = clock.time()
        with self._db.transaction() as db:
            db.executemany(
                "INSERT OR REPLACE INTO nerve_done VALUES (?, ?, ?)",
                [(sub, eid, now) for sub, eid in rows],
            )
            db.executemany(
                "DELETE FROM nerve_failures WHERE event_id = ? AND subscription = ?",
                [(eid, sub) for sub, eid in rows],
            )
            self._writes += len(rows)
            if self._writes >= _PRUNE_EVERY:
                self._writes = 0
                horizon = now - self.window
                db.execute("DELETE FROM nerve_done WHERE at < ?", (horizon,))
                db.execute("DELETE FROM nerve_published WHERE at < ?", (horizon,))

    async def done_among(self, subscription: str, event_ids: Sequence[str]) -> set[str]:
        return await self._run(self._done_among, subscription, list(event_ids))

    def _done_among(self, subscription: str, event_ids: list[str]) -> set[str]:
        found: set[str] = set()
        horizon = clock.time() - self.window
        for start in range(0, len(event_ids), 500):  # SQLite caps bound parameters
            chunk = event_ids[start : start + 500]
            marks = ",".join("?" * len(chunk))
            found.update(
                row[0]
                for row in self._db.conn.execute(
                    f"SELECT event_id FROM nerve_done WHERE subscription = ? AND at >= ? "  # noqa: S608  # placeholders only
                    f"AND event_id IN ({marks})",
                    (subscription, horizon, *chunk),
                )
            )
        return found

    async def add_failure(self, subscription: str, event_id: str, error: AttemptError) -> None:
        await self._run(
            self._execute,
            "INSERT OR REPLACE INTO nerve_failures VALUES (?, ?, ?, ?)",
            (subscription, event_id, error.attempt, error.model_dump_json()),
        )

    async def take_failures(self, subscription: str, event_id: str) -> list[AttemptError]:
        rows = await self._run(
            self._take,
            "SELECT error FROM nerve_failures WHERE event_id = ? AND subscription = ? "
            "ORDER BY attempt",
            "DELETE FROM nerve_failures WHERE event_id = ? AND subscription = ?",
            (event_id, subscription),
        )
        return [AttemptError.model_validate_json(row[0]) for row in rows]

    def _take(self, select: str, delete: str, params: tuple[Any, ...]) -> list[Any]:
        with self._db.transaction() as db:
            rows = db.execute(select, params).fetchall()
            db.execute(delete, params)
        return rows

    async def add_dead_letter(self, entry: DeadLetter) -> None:
        await self._run(
            self._execute,
            "INSERT OR REPLACE INTO nerve_dead_letters VALUES (?, ?, ?, ?)",
            (entry.subscription, entry.event.event_id, clock.time(), entry.model_dump_json()),
        )

    async def dead_letters(
        self,
        *,
        event_id: str | None = None,
        subscription: str | None = None,
        limit: int | None = None,
    ) -> list[DeadLetter]:
        where, params = _filters(event_id, subscription)
        sql = f"SELECT entry FROM nerve_dead_letters {where} ORDER BY dead_at DESC"  # noqa: S608  # only placeholders are interpolated
        if limit is not None:
            sql += " LIMIT ?"
            params += (limit,)
        rows = await self._run(self._execute, sql, params)
        return [DeadLetter.model_validate_json(row[0]) for row in rows]

    async def take_dead_letters(
        self, *, event_id: str | None = None, subscription: str | None = None
    ) -> list[DeadLetter]:
        where, params = _filters(event_id, subscription)
        rows = await self._run(self._take_dead, where, params)
        return [DeadLetter.model_validate_json(row[0]) for row in rows]

    def _take_dead(self, where: str, params: tuple[Any, ...]) -> list[Any]:
        with self._db.transaction() as db:
            rows = db.execute(
                f"SELECT entry, subscription, event_id FROM nerve_dead_letters {where} "  # noqa: S608  # placeholders only
                "ORDER BY dead_at",
                params,
            ).fetchall()
            db.execute(f"DELETE FROM nerve_dead_letters {where}", params)  # noqa: S608
            pairs = [(row[2], row[1]) for row in rows]
            # A replay starts its counts afresh; its steps are kept a window from now.
            db.executemany(
                "DELETE FROM nerve_counters WHERE event_id = ? AND subscription = ?", pairs
            )
            now = clock.time()
            db.executemany(
                "UPDATE nerve_steps SET at = ? WHERE event_id = ? AND subscription = ?",
                [(now, *pair) for pair in pairs],
            )
        return rows

    async def states(self, event_id: str) -> dict[str, DeliveryState]:
        rows = await self._run(
            self._execute,
            """
            SELECT subscription, 'failed' FROM nerve_failures WHERE event_id = ?1
            UNION ALL
            SELECT subscription, 'dead_lettered' FROM nerve_dead_letters WHERE event_id = ?1
            UNION ALL
            SELECT subscription, 'done' FROM nerve_done WHERE event_id = ?1 AND at >= ?2
            """,
            (event_id, clock.time() - self.window),
        )
        found: dict[str, DeliveryState] = {}
        for subscription, state in rows:  # later kinds win: done > dead > failed
            found[subscription] = DeliveryState(state)
        return found

    async def step_result(self, subscription: str, event_id: str, step: str) -> str | None:
        rows = await self._run(
            self._execute,
            "SELECT result FROM nerve_steps WHERE event_id = ? AND subscription = ? AND step = ?",
            (event_id, subscription, step),
        )
        return str(rows[0][0]) if rows else None

    async def record_step(self, subscription: str, event_id: str, step: str, result: str) -> None:
        await self._run(
            self._step_write,
            "INSERT OR REPLACE INTO nerve_steps VALUES (?, ?, ?, ?, ?)",
            (subscription, event_id, step, result, clock.time()),
        )

    async def add_to(
        self, subscription: str, event_id: str, counter: str, amounts: Mapping[str, float]
    ) -> dict[str, float]:
        return await self._run(self._add_to, subscription, event_id, counter, dict(amounts))

    def _add_to(
        self, subscription: str, event_id: str, counter: str, amounts: dict[str, float]
    ) -> dict[str, float]:
        select = (
            "SELECT name, total FROM nerve_counters "
            "WHERE event_id = ? AND subscription = ? AND counter = ?"
        )
        if not amounts:
            rows = self._db.conn.execute(select, (event_id, subscription, counter)).fetchall()
            return {name: float(total) for name, total in rows}
        now = clock.time()
        with self._db.transaction() as db:
            db.executemany(
                "INSERT INTO nerve_counters VALUES (?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (event_id, subscription, counter, name) DO UPDATE SET "
                "total = total + excluded.total, at = excluded.at",
                [
                    (subscription, event_id, counter, name, float(amount), now)
                    for name, amount in amounts.items()
                ],
            )
            rows = db.execute(select, (event_id, subscription, counter)).fetchall()
            self._pruned(db)
        return {name: float(total) for name, total in rows}

    def _step_write(self, sql: str, params: tuple[Any, ...]) -> None:
        with self._db.transaction() as db:
            db.execute(sql, params)
            self._pruned(db)

    def _pruned(self, db: sqlite3.Connection) -> None:
        """Count a write of steps or counters; every so often, forget the expired ones."""
        self._step_writes += 1
        if self._step_writes >= _PRUNE_EVERY:
            self._step_writes = 0
            horizon = clock.time() - self.window
            for table in ("nerve_steps", "nerve_counters"):
                db.execute(_PRUNE_STEPS.format(table=table), (horizon,))

    # the event log

    async def record_history(
        self, events: Sequence[PublishedRow], outcomes: Sequence[OutcomeRow]
    ) -> None:
        rows = [
            (e.event_id, e.correlation_id, at, e.model_dump_json(), e.event_type)
            for e, at in events
        ]
        await self._run(self._record_history, rows, list(outcomes))

    def _record_history(self, rows: list[tuple[Any, ...]], outcomes: list[OutcomeRow]) -> None:
        with self._db.transaction() as db:
            db.executemany(
                "INSERT OR IGNORE INTO nerve_log_events "
                "(event_id, correlation_id, published_at, event, event_type) "
                "VALUES (?, ?, ?, ?, ?)",
                rows,
            )
            db.executemany(
                "INSERT INTO nerve_log_outcomes VALUES (?, ?, ?, ?, ?, ?, ?, ?)", outcomes
            )

    async def trim_history(self, before: float) -> None:
        await self._run(self._trim_history, before)

    def _trim_history(self, before: float) -> None:
        with self._db.transaction() as db:
            db.execute("DELETE FROM nerve_log_events WHERE published_at < ?", (before,))
            db.execute("DELETE FROM nerve_log_outcomes WHERE ended_at < ?", (before,))

    async def history_event(self, event_id: str) -> EventRecord | None:
        found = await self._run(self._log_records, "WHERE event_id = ?", (event_id,))
        return found[0] if found else None

    async def history_chain(self, correlation_id: str) -> list[EventRecord]:
        return await self._run(
            self._log_records, "WHERE correlation_id = ? ORDER BY seq", (correlation_id,)
        )

    async def history_after(
        self, after: str | None, limit: int
    ) -> tuple[list[EventRecord], str | None]:
        return await self._run(self._history_after, after, limit)

    def _history_after(self, after: str | None, limit: int) -> tuple[list[EventRecord], str | None]:
        if after is None:
            last = self._db.conn.execute("SELECT max(seq) FROM nerve_log_events").fetchone()[0]
            if last is None:
                return [], None
            newest = self._log_records("ORDER BY seq DESC LIMIT ?", (limit,))
            newest.reverse()
            return newest, str(last)
        found = self._log_records("WHERE seq > ? ORDER BY seq LIMIT ?", (int(after), limit))
        return found, (found[-1].cursor if found else after)

    async def history_of_type(self, event_type: str, since: float, limit: int) -> list[EventRecord]:
        return await self._run(
            self._log_records,
            "WHERE event_type = ? AND published_at >= ? ORDER BY published_at, seq LIMIT ?",
            (event_type, since, limit),
        )

    def _log_records(self, where: str, params: tuple[Any, ...]) -> list[EventRecord]:
        conn = self._db.conn
        rows = conn.execute(
            f"SELECT seq, event_id, published_at, event FROM nerve_log_events {where}",  # noqa: S608  # placeholders only
            params,
        ).fetchall()
        outcomes: dict[str, list[Outcome]] = {}
        ids = [row[1] for row in rows]
        for start in range(0, len(ids), 500):  # SQLite caps bound parameters
            chunk = ids[start : start + 500]
            for row in conn.execute(
                "SELECT * FROM nerve_log_outcomes WHERE event_id IN "  # noqa: S608  # placeholders only
                f"({','.join('?' * len(chunk))}) ORDER BY ended_at, rowid",
                chunk,
            ):
                outcomes.setdefault(row[1], []).append(Outcome.from_row(row))
        return [
            EventRecord.from_log(body, at, outcomes.get(event_id, []), seq)
            for seq, event_id, at, body in rows
        ]

    async def declare_subscriptions(self, subscriptions: Mapping[str, str]) -> None:
        now = clock.time()
        await self._run(
            self._write_many,
            "INSERT OR REPLACE INTO nerve_declared VALUES (?, ?, ?)",
            [(name, pattern, now) for name, pattern in subscriptions.items()],
        )

    async def subscriptions(self) -> dict[str, str]:
        rows = await self._run(
            self._execute, "SELECT name, pattern FROM nerve_declared ORDER BY name"
        )
        return dict(rows)

    @asynccontextmanager
    async def transaction(
        self, subscription: str, event_id: str
    ) -> AsyncIterator[SQLiteTransaction]:
        """A transaction on a connection of its own, committed with the done mark.

        Yields a :class:`SQLiteTransaction` (``await tx.execute(sql, params)``). SQLite
        has one writer at a time: from the first write to the commit every other writer
        of the file waits, so keep the block short (call the LLM before it, not in it).
        """
        db = SQLiteDatabase(self.path, "", StoreError)
        await db.open()
        try:
            await db.run(db.conn.execute, "BEGIN")
            try:
                yield SQLiteTransaction(db)
                await db.run(self._commit_with_mark, db, subscription, event_id)
            except BaseException:
                if db.conn.in_transaction:
                    await asyncio.shield(db.run(db.conn.execute, "ROLLBACK"))
                raise
        finally:
            await asyncio.shield(db.close())

    def _commit_with_mark(self, db: SQLiteDatabase, subscription: str, event_id: str) -> None:
        conn = db.conn
        now = clock.time()
        live = conn.execute(
            "SELECT 1 FROM nerve_done WHERE event_id = ? AND subscription = ? AND at >= ?",
            (event_id, subscription, now - self.window),
        ).fetchone()
        if live:
            conn.execute("ROLLBACK")
            raise AlreadyHandled(f"{subscription} already handled {event_id}; rolled back")
        conn.execute(
            "INSERT OR REPLACE INTO nerve_done VALUES (?, ?, ?)", (subscription, event_id, now)
        )
        conn.execute(
            "DELETE FROM nerve_failures WHERE event_id = ? AND subscription = ?",
            (event_id, subscription),
        )
        conn.execute("COMMIT")


class SQLiteTransaction:
    """A handler's writes inside :meth:`SQLiteStore.transaction`."""

    def __init__(self, db: SQLiteDatabase) -> None:
        self._db = db

    async def execute(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        """Run one statement in the transaction; return its rows."""
        return await self._db.run(self._db.execute, sql, tuple(params))

    async def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        """Run one statement for each of ``rows`` in the transaction."""
        await self._db.run(self._db.conn.executemany, sql, rows)


def _has_event_type(conn: sqlite3.Connection) -> bool:
    columns = conn.execute("PRAGMA table_info(nerve_log_events)").fetchall()
    return any(column[1] == "event_type" for column in columns)


def _filters(event_id: str | None, subscription: str | None) -> tuple[str, tuple[Any, ...]]:
    clauses, params = [], []
    if event_id is not None:
        clauses.append("event_id = ?")
        params.append(event_id)
    if subscription is not None:
        clauses.append("subscription = ?")
        params.append(subscription)
    return ("WHERE " + " AND ".join(clauses) if clauses else ""), tuple(params)
