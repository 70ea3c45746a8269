"""``sqlite:///path.db``: durable and embedded; processes on one host share the file.

Layout, in the same file as the SQLite store:

- ``nerve_events``: the log, one row per published event, in ``seq`` order. A row with a
  ``target`` (a dead letter replayed) is for that subscription only.
- ``nerve_subscriptions``: each subscription's pattern and ``cursor``, the last ``seq`` it
  has routed. A new subscription starts at 0 ("earliest": every event still retained) or
  at the end of the log ("latest").
- ``nerve_deliveries``: one row per (subscription, event) to handle, with its attempt,
  when it is due (retries wait here) and its lease (owner, expiry).

A consumer routes lazily: under the write lock it reads the log past its subscription's
cursor, inserts a delivery for each matching event and moves the cursor, so patterns see
event types first published after the worker started, and routing happens once however
many processes share the subscription. It then leases due deliveries to itself. A lease
that expires (its process died) is taken over by the next consumer, with the attempt
counted; leases of deliveries still being handled are extended in the background, so a
long LLM call is never handed to a second worker while it runs. Acknowledging deletes the
delivery; events are pruned once every subscription has routed them and ``retention``
has passed.

Publishes waiting at the same time share one transaction (group commit): a committed
publish survives a crash of the process.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import uuid
from collections.abc import Sequence
from typing import Any, Self
from urllib.parse import parse_qs, urlsplit

from nerve import clock
from nerve.connections.sqlite import SQLiteDatabase, sqlite_path
from nerve.events import Event
from nerve.exceptions import ConfigurationError, SubscriptionError, TransportError
from nerve.routing import compile_pattern
from nerve.settings import Settings
from nerve.subscription import StartFrom
from nerve.transports.base import Delivery, Transport

log = logging.getLogger("nerve")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS nerve_events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    event_type TEXT NOT NULL,
    target TEXT,
    body TEXT NOT NULL,
    published_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS nerve_subscriptions (
    name TEXT PRIMARY KEY, pattern TEXT NOT NULL, cursor INTEGER NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS nerve_deliveries (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    subscription TEXT NOT NULL,
    seq INTEGER NOT NULL,
    attempt INTEGER NOT NULL,
    due_at REAL NOT NULL,
    owner TEXT,
    lease_until REAL);
CREATE INDEX IF NOT EXISTS nerve_deliveries_due ON nerve_deliveries (subscription, due_at);
"""

#: Events routed per subscription per pass.
_ROUTE_BATCH = 1000


class SQLiteDelivery(Delivery):
    __slots__ = ("_id", "_transport")

    def __init__(
        self,
        transport: SQLiteTransport,
        row_id: int,
        event: Event[Any],
        subscription: str,
        attempt: int,
    ) -> None:
        super().__init__(event, subscription, attempt)
        self._transport = transport
        self._id = row_id

    async def _ack(self) -> None:
        await self._transport._delete([self])

    async def _reject(self) -> None:
        await self._transport._delete([self])

    async def _nack(self, delay: float) -> None:
        await self._transport._release(self, delay)

    async def _release(self) -> None:
        await self._transport._release(self, 0.0, tried=False)


class SQLiteTransport(Transport):
    """Durable transport in a SQLite file.

    Args:
        url: ``sqlite:///path.db``; options
            ``?lease=30&poll=0.05&retention=604800&synchronous=NORMAL``.
        lease: seconds a consumer holds a delivery before another may take it over
            (extended while the handler runs).
        poll: seconds between looks at the file when idle (publishes from this process
            wake consumers at once; other processes' within ``poll``).
        retention: seconds events are kept once every subscription has routed them.
        synchronous: SQLite's ``synchronous`` pragma: ``FULL`` survives a power loss at
            the cost of a sync per commit; ``NORMAL`` (default) survives a process crash.
    """

    durable = True
    name = "SQLite"

    def __init__(
        self,
        url: str,
        *,
        lease: float = 30.0,
        poll: float = 0.05,
        retention: float = 7 * 24 * 3600.0,
        synchronous: str = "NORMAL",
    ) -> None:
        if lease <= 0 or poll <= 0 or retention < 0:
            raise ConfigurationError(f"{url}: lease and poll must be > 0, retention >= 0")
        self.url = url
        self.lease = lease
        self.poll = poll
        self.retention = retention
        self._db = SQLiteDatabase(
            sqlite_path(url), _SCHEMA, TransportError, synchronous=synchronous
        )
        self._owner = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self._patterns: dict[str, Any] = {}
        self._in_flight: dict[int, SQLiteDelivery] = {}
        self._pending_publishes: list[tuple[Event[Any], str | None, asyncio.Future[None]]] = []
        self._flushing = False
        self._wakeup = asyncio.Event()
        self._renewer: asyncio.Task[None] | None = None
        self._closed = False
        self._last_prune = 0.0

    @classmethod
    def from_url(cls, url: str, settings: Settings) -> Self:
        options = {k: v[-1] for k, v in parse_qs(urlsplit(url).query).items()}
        unknown = set(options) - {"lease", "poll", "retention", "synchronous"}
        if unknown:
            raise ConfigurationError(f"{url}: unknown option(s) {', '.join(sorted(unknown))}")
        synchronous = options.pop("synchronous", "NORMAL")
        try:
            numbers = {k: float(v) for k, v in options.items()}
        except ValueError as exc:
            raise ConfigurationError(f"{url}: options must be numbers ({exc})") from exc
        return cls(url, synchronous=synchronous, **numbers)

    def own_store_url(self) -> str:
        return self.url.split("?", 1)[0]  # the store lives in the same file

    async def connect(self) -> None:
        self._closed = False
        await self._db.open()
        if self._renewer is None:
            self._renewer = asyncio.create_task(self._renew_leases(), name="nerve-sqlite-leases")

    async def ping(self) -> None:
        await self._db.run(self._db.execute, "SELECT 1")

    async def declare(self, subscription: str, pattern: str, *, start_from: StartFrom) -> None:
        self._patterns[subscription] = compile_pattern(pattern)
        await self._db.run(self._declare, subscription, pattern, start_from)

    def _declare(self, name: str, pattern: str, start_from: StartFrom) -> None:
        with self._db.transaction() as db:
            start = 0
            if start_from == "latest":
                start = db.execute("SELECT COALESCE(MAX(seq), 0) FROM nerve_events").fetchone()[0]
            db.execute(
                "INSERT INTO nerve_subscriptions VALUES (?, ?, ?) "
                "ON CONFLICT (name) DO UPDATE SET pattern = excluded.pattern",
                (name, pattern, start),
            )

    # publishing: group commit

    async def publish(
        self,
        event: Event[Any],
        *,
        subscription: str | None = None,
        timeout: float | None = None,
        bounded: bool = True,
    ) -> None:
        self._check_open()
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending_publishes.append((event, subscription, fut))
        if not self._flushing:
            self._flushing = True
            try:
                while self._pending_publishes:
                    batch, self._pending_publishes = self._pending_publishes, []
                    try:
                        await self._db.run(self._insert_events, batch)
                    except Exception as exc:  # noqa: BLE001  # handed to every waiting publisher
                        for *_, waiter in batch:
                            if not waiter.done():
                                waiter.set_exception(exc)
                    else:
                        for *_, waiter in batch:
                            if not waiter.done():
                                waiter.set_result(None)
            finally:
                self._flushing = False
            self._wakeup.set()
        await fut

    def _insert_events(self, batch: list[tuple[Event[Any], str | None, Any]]) -> None:
        now = clock.time()
        with self._db.transaction() as db:
            for event, target, _ in batch:
                if (
                    target is not None
                    and not db.execute(
                        "SELECT 1 FROM nerve_subscriptions WHERE name = ?", (target,)
                    ).fetchone()
                ):
                    raise SubscriptionError(f"no subscription named {target!r}")
                db.execute(
                    "INSERT INTO nerve_events (event_type, target, body, published_at) "
                    "VALUES (?, ?, ?, ?)",
                    (event.event_type, target, event.model_dump_json(), now),
                )

    # consuming

    async def receive(self, subscription: str, max_items: int) -> Sequence[Delivery]:
        while not self._closed:
            rows = await self._db.run(self._lease, subscription, max_items)
            if rows:
                deliveries = [
                    SQLiteDelivery(self, row_id, Event.model_validate_json(body), subscription, n)
                    for row_id, body, n in rows
                ]
                for delivery in deliveries:
                    self._in_flight[delivery._id] = delivery
                return deliveries
            self._wakeup.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wakeup.wait(), self.poll)
        return ()

    def _lease(self, subscription: str, max_items: int) -> list[tuple[int, str, int]]:
        now = clock.time()
        with self._db.transaction() as db:
            self._route(db, subscription)
            rows = db.execute(
                "SELECT d.id, e.body, d.attempt, d.owner FROM nerve_deliveries d "
                "JOIN nerve_events e ON e.seq = d.seq "
                "WHERE d.subscription = ? AND d.due_at <= ? "
                "AND (d.lease_until IS NULL OR d.lease_until < ?) ORDER BY d.id LIMIT ?",
                (subscription, now, now, max_items),
            ).fetchall()
            leased = []
            for row_id, body, attempt, owner in rows:
                if owner is not None:
                    attempt += 1  # its lease expired: the consumer that held it died
                leased.append((row_id, body, attempt))
            db.executemany(
                "UPDATE nerve_deliveries SET owner = ?, lease_until = ?, attempt = ? WHERE id = ?",
                [(self._owner, now + self.lease, attempt, row_id) for row_id, _, attempt in leased],
            )
        if now - self._last_prune > 60:
            self._last_prune = now
            self._prune()
        return leased

    def _route(self, db: Any, subscription: str) -> None:
        """Turn events past the subscription's cursor into its deliveries (in the txn)."""
        cursor = db.execute(
            "SELECT cursor FROM nerve_subscriptions WHERE name = ?", (subscription,)
        ).fetchone()[0]
        pattern = self._patterns[subscription]
        now = clock.time()
        while True:
            events = db.execute(
                "SELECT seq, event_type, target FROM nerve_events WHERE seq > ? ORDER BY seq "
                "LIMIT ?",
                (cursor, _ROUTE_BATCH),
            ).fetchall()
            if not events:
                break
            db.executemany(
                "INSERT INTO nerve_deliveries (subscription, seq, attempt, due_at) "
                "VALUES (?, ?, 1, ?)",
                [
                    (subscription, seq, now)
                    for seq, event_type, target in events
                    if (target == subscription)
                    or (target is None and pattern.fullmatch("." + event_type))
                ],
            )
            cursor = events[-1][0]
            if len(events) < _ROUTE_BATCH:
                break
        db.execute(
            "UPDATE nerve_subscriptions SET cursor = ? WHERE name = ?", (cursor, subscription)
        )

    def _prune(self) -> None:
        horizon = clock.time() - self.retention
        with self._db.transaction() as db:
            db.execute(
                "DELETE FROM nerve_events WHERE published_at < ? "
                "AND seq <= (SELECT COALESCE(MIN(cursor), 0) FROM nerve_subscriptions) "
                "AND seq NOT IN (SELECT seq FROM nerve_deliveries)",
                (horizon,),
            )

    # settling

    async def ack_many(self, deliveries: Sequence[Delivery]) -> None:
        mine = [d for d in deliveries if isinstance(d, SQLiteDelivery) and d.claim()]
        if mine:
            await self._delete(mine)

    async def _delete(self, deliveries: Sequence[SQLiteDelivery]) -> None:
        for delivery in deliveries:
            self._in_flight.pop(delivery._id, None)
        await self._db.run(self._delete_rows, [d._id for d in deliveries])

    def _delete_rows(self, ids: list[int]) -> None:
        with self._db.transaction() as db:
            db.executemany("DELETE FROM nerve_deliveries WHERE id = ?", [(i,) for i in ids])

    async def _release(self, delivery: SQLiteDelivery, delay: float, *, tried: bool = True) -> None:
        self._in_flight.pop(delivery._id, None)
        attempt = delivery.attempt + 1 if tried else delivery.attempt
        await self._db.run(self._release_row, delivery._id, attempt, delay)
        if delay <= 0:
            self._wakeup.set()

    def _release_row(self, row_id: int, attempt: int, delay: float) -> None:
        with self._db.transaction() as db:
            db.execute(
                "UPDATE nerve_deliveries SET attempt = ?, due_at = ?, owner = NULL, "
                "lease_until = NULL WHERE id = ?",
                (attempt, clock.time() + delay, row_id),
            )

    async def _renew_leases(self) -> None:
        """Extend the leases of deliveries being handled, every third of a lease."""
        while True:
            await clock.sleep(self.lease / 3)
            ids = list(self._in_flight)
            if not ids or not self._db.is_open:
                continue
            try:
                await self._db.run(self._extend, ids)
            except TransportError:
                log.exception("could not extend %d leases", len(ids))

    def _extend(self, ids: list[int]) -> None:
        until = clock.time() + self.lease
        with self._db.transaction() as db:
            db.executemany(
                "UPDATE nerve_deliveries SET lease_until = ? WHERE id = ? AND owner = ?",
                [(until, i, self._owner) for i in ids],
            )

    # the rest of the lifecycle

    async def lag(self, subscription: str) -> int | None:
        """Its deliveries (due, leased or waiting to retry) plus the events past its
        cursor that it will route: every process's, as the file holds them all."""
        return await self._db.run(self._lag, subscription)

    def _lag(self, subscription: str) -> int | None:
        with self._db.transaction("DEFERRED") as db:  # one snapshot of both tables
            row = db.execute(
                "SELECT pattern, cursor FROM nerve_subscriptions WHERE name = ?", (subscription,)
            ).fetchone()
            if row is None:
                return None
            pattern = self._patterns.get(subscription) or compile_pattern(row[0])
            count: int = db.execute(
                "SELECT COUNT(*) FROM nerve_deliveries WHERE subscription = ?", (subscription,)
            ).fetchone()[0]
            for event_type, target, n in db.execute(
                "SELECT event_type, target, COUNT(*) FROM nerve_events WHERE seq > ? "
                "GROUP BY event_type, target",
                (row[1],),
            ):
                if target == subscription or (
                    target is None and pattern.fullmatch("." + event_type)
                ):
                    count += n
        return count

    async def wait_idle(self) -> None:
        # Other processes may publish and settle: only the file knows, so poll it.
        while await self._db.run(self._busy):
            await clock.sleep(min(self.poll, 0.02))

    def _busy(self) -> bool:
        names = list(self._patterns)
        if not names:
            return False
        marks = ",".join("?" * len(names))
        db = self._db.conn
        pending = db.execute(
            f"SELECT 1 FROM nerve_deliveries WHERE subscription IN ({marks}) LIMIT 1",  # noqa: S608  # placeholders only
            names,
        ).fetchone()
        if pending:
            return True
        behind = db.execute(
            f"SELECT 1 FROM nerve_subscriptions WHERE name IN ({marks}) "  # noqa: S608
            "AND cursor < (SELECT COALESCE(MAX(seq), 0) FROM nerve_events) LIMIT 1",
            names,
        ).fetchone()
        return behind is not None

    async def close(self) -> list[Delivery]:
        self._closed = True
        self._wakeup.set()
        if self._renewer is not None:
            self._renewer.cancel()
            await asyncio.gather(self._renewer, return_exceptions=True)
            self._renewer = None
        unsettled = [d for d in self._in_flight.values() if not d.settled]
        if unsettled and self._db.is_open:
            # Cancelled at shutdown: hand them back now rather than after the lease.
            # Not an ack; the attempt is not counted against the retries.
            await self._db.run(self._give_back, [d._id for d in unsettled])
        self._in_flight.clear()
        await self._db.close()
        return []

    def _give_back(self, ids: list[int]) -> None:
        with self._db.transaction() as db:
            db.executemany(
                "UPDATE nerve_deliveries SET owner = NULL, lease_until = NULL "
                "WHERE id = ? AND owner = ?",
                [(i, self._owner) for i in ids],
            )
