"""``postgresql://user@host:port/db``: a store in PostgreSQL, shared by every process.

Marks, failures, dead letters, publish records, step results, counters, the event log
(events, with their type for lookbacks by type, and outcomes), declared subscriptions,
the timers and waits of :mod:`nerve.stores.postgres_waits`, and the slots and rate
states of :mod:`nerve.stores.postgres_limits` live in tables of one schema (``nerve`` by
default, or the URL's ``?schema=``), created by :meth:`PostgresStore.open` if missing; a
schema made by an older nerve is brought up to date. A committed write survives a crash
of any process and of the server (PostgreSQL's own durability). Time is the server's
clock (``now()``), so processes with skewed clocks agree on the window (flow control
takes the callers' times, as its contract has them).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from contextlib import asynccontextmanager, contextmanager, suppress
from typing import TYPE_CHECKING, Any, Self, TypeAlias
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import asyncpg

from nerve.events import Event
from nerve.exceptions import AlreadyHandled, ConfigurationError, StoreError
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
from nerve.stores.postgres_limits import PostgresLimits
from nerve.stores.postgres_sql import MISSING, TABLE_NAMES, Statements, filters
from nerve.stores.postgres_waits import PostgresTimersAndWaits

if TYPE_CHECKING:
    from asyncpg.pool import PoolConnectionProxy
    from asyncpg.transaction import Transaction

log = logging.getLogger(__name__)

#: Expired marks and publish records are deleted once every this many done marks.
_PRUNE_EVERY = 1000

#: What asyncpg and the network raise; translated to StoreError at this module's edge.
#: (A connect timeout is a TimeoutError, an OSError.)
_VENDOR_ERRORS = (
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    asyncpg.InternalClientError,
    OSError,
)

_Pool: TypeAlias = "asyncpg.Pool[asyncpg.Record]"


class PostgresStore(PostgresTimersAndWaits, PostgresLimits, Store):
    """Idempotency marks, failures, dead letters, steps, the event log, timers, waits and
    flow control in PostgreSQL.

    Every method is one round trip on a pooled connection; :meth:`transaction` commits a
    handler's own writes together with its done mark, for exactly-once effects.

    Example:
        ```python
        bus = EventBus("redis://localhost", store=PostgresStore("postgresql://app@db/app"))

        @bus.on("payment.received")
        async def book(event: Event) -> None:
            async with nerve.transaction() as conn:  # an asyncpg connection
                await conn.execute("INSERT INTO ledger VALUES ($1, $2)", event.event_id, 42)
        ```

    Args:
        url: ``postgresql://user:password@host:port/db`` (``postgres://`` too). The query
            parameter ``schema`` is nerve's (as the ``schema`` argument); the others are
            asyncpg's (``?sslmode=require``).
        window: seconds an idempotency mark (and publish record) is kept.
        schema: the schema holding nerve's tables (default ``nerve``); two buses that share
            it share marks and dead letters.
        max_connections: the size of each of the store's two pools: one for its own
            reads and writes, one (opened lazily) for :meth:`transaction`, where a handler
            holds a connection until it commits. Kept apart, handlers holding every
            transaction connection can still publish and be marked done.
    """

    def __init__(
        self,
        url: str,
        *,
        window: float = DEFAULT_WINDOW,
        schema: str | None = None,
        max_connections: int = 10,
    ) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("postgresql", "postgres"):
            raise ConfigurationError(
                f"not a PostgreSQL URL: {parts.scheme}:// (use postgresql://user@host:port/db)"
            )
        query = parse_qsl(parts.query, keep_blank_values=True)
        schemas = {value for key, value in query if key == "schema"}
        if schema is not None:
            schemas.add(schema)
        if len(schemas) > 1:
            raise ConfigurationError(f"two schemas given: {', '.join(sorted(schemas))}")
        schema = schemas.pop() if schemas else "nerve"
        self._sql = Statements(schema)  # checks the name
        if max_connections < 1:
            raise ConfigurationError(f"max_connections must be at least 1, not {max_connections}")
        self.url = url
        # What asyncpg gets: the URL without nerve's own option.
        self._dsn = urlunsplit(
            parts._replace(query=urlencode([(k, v) for k, v in query if k != "schema"]))
        )
        self.window = window
        self.schema = schema
        self.max_connections = max_connections
        # For messages: never echo the password.
        host = parts.hostname or "localhost"
        netloc = f"{parts.username}@{host}" if parts.username else host
        if parts.port:
            netloc += f":{parts.port}"
        self._where = urlunsplit((parts.scheme, netloc, parts.path, "", ""))
        # The store's own pool, and the transactions' pool; None while closed.
        self._pools: tuple[_Pool, _Pool] | None = None
        self._opening = asyncio.Lock()
        self._marks = 0
        self._step_writes = 0

    @classmethod
    def from_url(cls, url: str, settings: Settings) -> Self:
        return cls(url, window=settings.idempotency_window)

    def __repr__(self) -> str:
        return f"PostgresStore({self._where}, schema={self.schema})"

    # lifecycle

    async def open(self) -> None:
        async with self._opening:  # two callers at once must not make two pools
            if self._pools is None:
                pool = await self._connect()
                # Connects on first use (min_size=0): nothing to fail here.
                tx_pool = await asyncpg.create_pool(
                    self._dsn, min_size=0, max_size=self.max_connections
                )
                self._pools = (pool, tx_pool)

    async def _connect(self) -> _Pool:
        with self._translated("could not connect"):
            pool = await asyncpg.create_pool(self._dsn, min_size=1, max_size=self.max_connections)
        try:
            with self._translated("could not create its tables"):
                async with pool.acquire() as conn, conn.transaction():
                    # CREATE ... IF NOT EXISTS races with itself (two processes opening at
                    # once can both miss the table and one fails on the catalog's unique
                    # index), so creators take turns under a lock held until commit.
                    await conn.execute("SELECT pg_advisory_xact_lock(hashtext($1))", self.schema)
                    # Only when something is missing: CREATE ... IF NOT EXISTS needs the
                    # right to create even when all exists, and a role that may only use
                    # tables made for it beforehand must still be able to open the store.
                    # (A schema made by an older nerve misses tables: the script adds
                    # them, and the columns added since.)
                    if await conn.fetchval(MISSING, self.schema, list(TABLE_NAMES)):
                        await conn.execute(self._sql.tables)
        except BaseException:
            pool.terminate()
            raise
        return pool

    async def close(self) -> None:
        pools, self._pools = self._pools or (), None
        for pool in reversed(pools):  # the transactions' first
            try:
                await pool.close()  # waits for connections in use to be released
            except BaseException:
                pool.terminate()
                raise

    # the contract

    async def record_published(self, event: Event[Any]) -> None:
        await self._execute(self._sql.publish, event.event_id, event.event_type, self.window)

    async def record_published_many(self, events: Sequence[Event[Any]]) -> None:
        # Unique (a statement may upsert a row once) and sorted (no lock-order deadlocks).
        types = dict(sorted({e.event_id: e.event_type for e in events}.items()))
        if types:
            await self._execute(
                self._sql.publish_many, list(types), list(types.values()), self.window
            )

    async def event_type(self, event_id: str) -> str | None:
        found: str | None = await self._fetchval(self._sql.event_type, event_id, self.window)
        return found

    async def is_done(self, subscription: str, event_id: str) -> bool:
        return bool(await self._fetchval(self._sql.is_done, event_id, subscription, self.window))

    async def mark_done(self, subscription: str, event_id: str) -> None:
        await self.mark_done_many({subscription: (event_id,)})

    async def mark_done_many(self, done: Mapping[str, Sequence[str]]) -> None:
        # Sorted and unique: ON CONFLICT DO UPDATE may touch a row once per statement,
        # and two batches that lock their rows in the same order cannot deadlock.
        pairs = sorted({(eid, sub) for sub, eids in done.items() for eid in eids})
        if not pairs:
            return
        event_ids, subscriptions = [p[0] for p in pairs], [p[1] for p in pairs]
        await self._execute(self._sql.mark_done, subscriptions, event_ids)
        await self._counted(len(pairs))

    async def done_among(self, subscription: str, event_ids: Sequence[str]) -> set[str]:
        if not event_ids:
            return set()
        rows = await self._fetch(self._sql.done_among, subscription, list(event_ids), self.window)
        return {row[0] for row in rows}

    async def add_failure(self, subscription: str, event_id: str, error: AttemptError) -> None:
        await self._execute(
            self._sql.add_failure, subscription, event_id, error.attempt, error.model_dump_json()
        )

    async def take_failures(self, subscription: str, event_id: str) -> list[AttemptError]:
        rows = await self._fetch(self._sql.take_failures, event_id, subscription)
        # RETURNING has no ORDER BY: sort the taken rows here.
        return [
            AttemptError.model_validate_json(row[1]) for row in sorted(rows, key=lambda r: r[0])
        ]

    async def add_dead_letter(self, entry: DeadLetter) -> None:
        await self._execute(
            self._sql.add_dead_letter,
            entry.subscription,
            entry.event.event_id,
            entry.model_dump_json(),
        )

    async def dead_letters(
        self,
        *,
        event_id: str | None = None,
        subscription: str | None = None,
        limit: int | None = None,
    ) -> list[DeadLetter]:
        where, params = filters(event_id, subscription)
        sql = self._sql.dead_letters(where, len(params) + 1)
        rows = await self._fetch(sql, *params, limit)
        return [DeadLetter.model_validate_json(row[0]) for row in rows]

    async def take_dead_letters(
        self, *, event_id: str | None = None, subscription: str | None = None
    ) -> list[DeadLetter]:
        where, params = filters(event_id, subscription)
        sql = self._sql.take_dead_letters(where)
        rows = sorted(await self._fetch(sql, *params), key=lambda row: row[0])  # oldest first
        return [DeadLetter.model_validate_json(row[1]) for row in rows]

    async def states(self, event_id: str) -> dict[str, DeliveryState]:
        rows = await self._fetch(self._sql.states, event_id, self.window)
        found: dict[str, DeliveryState] = {}
        for subscription, state in rows:  # ordered by rank: done > dead > failed wins
            found[subscription] = DeliveryState(state)
        return found

    async def step_result(self, subscription: str, event_id: str, step: str) -> str | None:
        found: str | None = await self._fetchval(
            self._sql.step_result, event_id, subscription, step
        )
        return found

    async def record_step(self, subscription: str, event_id: str, step: str, result: str) -> None:
        await self._execute(self._sql.record_step, subscription, event_id, step, result)
        await self._stepped()

    async def add_to(
        self, subscription: str, event_id: str, counter: str, amounts: Mapping[str, float]
    ) -> dict[str, float]:
        if not amounts:
            rows = await self._fetch(self._sql.counter, subscription, event_id, counter)
        else:
            names = sorted(amounts)  # rows locked in one order: no deadlocks
            rows = await self._fetch(
                self._sql.add_to,
                subscription,
                event_id,
                counter,
                names,
                [float(amounts[n]) for n in names],
            )
            await self._stepped()
        return {row[0]: float(row[1]) for row in rows}

    async def _stepped(self) -> None:
        self._step_writes += 1
        if self._step_writes < _PRUNE_EVERY:
            return
        self._step_writes = 0
        try:
            await self._execute(self._sql.prune_steps, self.window)
        except StoreError:  # housekeeping: the write was made; prune next time
            log.warning("%r: could not prune expired step results", self, exc_info=True)

    @asynccontextmanager
    async def transaction(
        self, subscription: str, event_id: str
    ) -> AsyncIterator[PoolConnectionProxy[asyncpg.Record]]:
        """A transaction on a pooled connection, committed with the done mark.

        Yields the asyncpg connection (``await conn.execute(sql, *args)``, ``$1``
        placeholders) for the handler's own writes. At the end of the block the mark is
        inserted in the same transaction and everything commits at once. The connection
        is the pool's: do not close it, and do not keep it past the block.

        Raises:
            AlreadyHandled: a mark within the window exists (another worker committed
                first, or is committing: this one waits on its row lock); rolled back.
            StoreError: PostgreSQL failed to begin, mark or commit (an error of the
                handler's own statements propagates as it is, and rolls back).
        """
        pool = self._open_pools()[1]
        with self._translated("could not begin a transaction"):
            conn = await pool.acquire()
        try:
            tx = conn.transaction()
            with self._translated("could not begin a transaction"):
                await tx.start()
            try:
                yield conn
                with self._translated(f"could not mark {subscription} {event_id} done"):
                    claimed = await conn.fetchval(
                        self._sql.claim, subscription, event_id, self.window
                    )
            except BaseException:
                await _rollback(tx)
                raise
            if claimed is None:
                await _rollback(tx)
                raise AlreadyHandled(f"{subscription} already handled {event_id}; rolled back")
            with self._translated(f"could not commit {subscription} {event_id}"):
                await tx.commit()
        finally:
            # release() resets the connection, or closes it if that fails: a failure here
            # loses nothing, and must not hide the exception on its way out.
            try:
                await pool.release(conn)
            except _VENDOR_ERRORS:
                log.warning("%r: could not release a connection", self, exc_info=True)
        await self._counted(1)

    # plumbing

    def _ready(self) -> _Pool:
        return self._open_pools()[0]

    def _open_pools(self) -> tuple[_Pool, _Pool]:
        if self._pools is None:
            raise StoreError(f"{self!r} is not open: await store.open() first")
        return self._pools

    @contextmanager
    def _translated(self, what: str) -> Iterator[None]:
        try:
            yield
        except _VENDOR_ERRORS as exc:
            detail = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            raise StoreError(f"{self!r}: {what}: {detail}") from exc

    # the event log (the feed's cursor is the bigserial seq: rows committed out of order
    # by concurrent writers may be passed by a reader already past them)

    async def record_history(
        self, events: Sequence[PublishedRow], outcomes: Sequence[OutcomeRow]
    ) -> None:
        pool = self._ready()
        with self._translated("recording history failed"):
            async with pool.acquire() as conn, conn.transaction():
                if events:
                    await conn.execute(
                        self._sql.log_events,
                        [e.event_id for e, _ in events],
                        [e.correlation_id for e, _ in events],
                        [at for _, at in events],
                        [e.model_dump_json() for e, _ in events],
                        [e.event_type for e, _ in events],
                    )
                if outcomes:
                    await conn.executemany(
                        self._sql.log_outcome,
                        [
                            (*row[:7], None if row[7] is None else row[7].replace("\x00", "\ufffd"))
                            for row in outcomes
                        ],
                    )

    async def trim_history(self, before: float) -> None:
        await self._execute(self._sql.trim_history, before)

    async def _log_records(self, where: str, *args: Any) -> list[EventRecord]:
        rows = await self._fetch(self._sql.log_records(where), *args)
        if not rows:
            return []
        outcomes: dict[str, list[Outcome]] = {}
        for row in await self._fetch(self._sql.log_outcomes, [r[1] for r in rows]):
            outcomes.setdefault(row[1], []).append(Outcome.from_row(tuple(row)))
        return [
            EventRecord.from_log(body, at, outcomes.get(event_id, []), seq)
            for seq, event_id, at, body in rows
        ]

    async def history_event(self, event_id: str) -> EventRecord | None:
        found = await self._log_records("WHERE event_id = $1", event_id)
        return found[0] if found else None

    async def history_chain(self, correlation_id: str) -> list[EventRecord]:
        return await self._log_records("WHERE correlation_id = $1 ORDER BY seq", correlation_id)

    async def history_of_type(self, event_type: str, since: float, limit: int) -> list[EventRecord]:
        return await self._log_records(
            "WHERE event_type = $1 AND published_at >= $2 ORDER BY published_at, seq LIMIT $3",
            event_type,
            since,
            limit,
        )

    async def history_after(
        self, after: str | None, limit: int
    ) -> tuple[list[EventRecord], str | None]:
        if after is None:
            last = await self._fetchval(self._sql.last_seq)
            if last is None:
                return [], None
            newest = await self._log_records("ORDER BY seq DESC LIMIT $1", limit)
            newest.reverse()
            return newest, str(last)
        found = await self._log_records("WHERE seq > $1 ORDER BY seq LIMIT $2", int(after), limit)
        return found, (found[-1].cursor if found else after)

    async def declare_subscriptions(self, subscriptions: Mapping[str, str]) -> None:
        names = sorted(subscriptions)
        if names:
            await self._execute(self._sql.declare, names, [subscriptions[n] for n in names])

    async def subscriptions(self) -> dict[str, str]:
        rows = await self._fetch(self._sql.subscriptions)
        return {row[0]: row[1] for row in rows}

    async def _execute(self, sql: str, *args: Any) -> None:
        pool = self._ready()
        with self._translated("a write failed"):
            await pool.execute(sql, *args)

    async def _fetch(self, sql: str, *args: Any) -> list[asyncpg.Record]:
        pool = self._ready()
        with self._translated("a read failed"):
            return await pool.fetch(sql, *args)

    async def _fetchval(self, sql: str, *args: Any) -> Any:
        pool = self._ready()
        with self._translated("a read failed"):
            return await pool.fetchval(sql, *args)

    async def _counted(self, marks: int) -> None:
        self._marks += marks
        if self._marks < _PRUNE_EVERY:
            return
        self._marks = 0
        try:
            await self._execute(self._sql.prune, self.window)
        except StoreError:  # housekeeping: the marks were written; prune next time
            log.warning("%r: could not prune expired marks", self, exc_info=True)


async def _rollback(tx: Transaction) -> None:
    # A failed rollback leaves the connection to release(), which rolls back or closes it.
    with suppress(*_VENDOR_ERRORS):
        await tx.rollback()
