"""``postgresql://user@host:port/db``: a store in PostgreSQL, shared by every process.

Marks, failures, dead letters and publish records live in tables of one schema
(``nerve`` by default, or the URL's ``?schema=``), created by :meth:`PostgresStore.open`
if missing. A committed
write survives a crash of any process and of the server (PostgreSQL's own durability).
Time is the server's clock (``now()``), so processes with skewed clocks agree on the
window.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from contextlib import asynccontextmanager, contextmanager, suppress
from typing import TYPE_CHECKING, Any, TypeAlias
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
    Spend,
)
from nerve.stores.base import DEFAULT_WINDOW, Store

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

_SCHEMA_NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}")

# ``{s}`` is the quoted schema. The entry and error columns are ``json``, not ``jsonb``:
# jsonb rejects ``\u0000`` (an event payload or an error message may hold one, and a dead
# letter must never be lost to its content) and reorders keys; json keeps pydantic's text
# as written and is still queryable with ``->`` / ``->>``.
_TABLES = """
CREATE SCHEMA IF NOT EXISTS {s};
CREATE TABLE IF NOT EXISTS {s}.done (
    subscription text NOT NULL, event_id text NOT NULL, at timestamptz NOT NULL,
    PRIMARY KEY (event_id, subscription));
CREATE INDEX IF NOT EXISTS done_at ON {s}.done (at);
CREATE TABLE IF NOT EXISTS {s}.published (
    event_id text PRIMARY KEY, event_type text NOT NULL, at timestamptz NOT NULL);
CREATE INDEX IF NOT EXISTS published_at ON {s}.published (at);
CREATE TABLE IF NOT EXISTS {s}.failures (
    subscription text NOT NULL, event_id text NOT NULL, attempt integer NOT NULL,
    error json NOT NULL,
    PRIMARY KEY (event_id, subscription, attempt));
CREATE TABLE IF NOT EXISTS {s}.dead_letters (
    subscription text NOT NULL, event_id text NOT NULL, dead_at timestamptz NOT NULL,
    entry json NOT NULL,
    PRIMARY KEY (event_id, subscription));
CREATE INDEX IF NOT EXISTS dead_letters_at ON {s}.dead_letters (dead_at);
CREATE TABLE IF NOT EXISTS {s}.steps (
    subscription text NOT NULL, event_id text NOT NULL, step text NOT NULL,
    result text NOT NULL, at timestamptz NOT NULL,
    PRIMARY KEY (event_id, subscription, step));
CREATE INDEX IF NOT EXISTS steps_at ON {s}.steps (at);
CREATE TABLE IF NOT EXISTS {s}.spend (
    subscription text NOT NULL, event_id text NOT NULL, tokens bigint NOT NULL,
    seconds float8 NOT NULL, at timestamptz NOT NULL,
    PRIMARY KEY (event_id, subscription));
CREATE INDEX IF NOT EXISTS spend_at ON {s}.spend (at);
CREATE TABLE IF NOT EXISTS {s}.log_events (
    seq bigserial PRIMARY KEY, event_id text NOT NULL UNIQUE, correlation_id text NOT NULL,
    published_at float8 NOT NULL, event text NOT NULL);
CREATE INDEX IF NOT EXISTS log_events_chain ON {s}.log_events (correlation_id);
CREATE INDEX IF NOT EXISTS log_events_at ON {s}.log_events (published_at);
CREATE TABLE IF NOT EXISTS {s}.log_outcomes (
    id bigserial PRIMARY KEY, subscription text NOT NULL, event_id text NOT NULL,
    attempt integer NOT NULL, state text NOT NULL, ended_at float8 NOT NULL,
    seconds float8 NOT NULL, error_type text, error_message text);
CREATE INDEX IF NOT EXISTS log_outcomes_event ON {s}.log_outcomes (event_id);
CREATE INDEX IF NOT EXISTS log_outcomes_at ON {s}.log_outcomes (ended_at);
CREATE TABLE IF NOT EXISTS {s}.declared (
    name text PRIMARY KEY, pattern text NOT NULL, declared_at timestamptz NOT NULL);
"""

_TABLE_NAMES = (
    "done",
    "published",
    "failures",
    "dead_letters",
    "steps",
    "spend",
    "log_events",
    "log_outcomes",
    "declared",
)

#: ``$n`` seconds before now: the oldest mark still within the window.
_HORIZON = "now() - {n}::float8 * interval '1 second'"


class PostgresStore(Store):
    """Idempotency marks, failures and dead letters in PostgreSQL.

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
        if not _SCHEMA_NAME.fullmatch(schema):
            raise ConfigurationError(
                f"schema {schema!r}: use lower-case letters, digits and _ (at most 63)"
            )
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
        self._sql = _Statements(f'"{schema}"')

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
                    found = await conn.fetchval(
                        "SELECT count(*) FROM pg_tables WHERE schemaname = $1 "
                        "AND tablename = ANY($2::text[])",
                        self.schema,
                        list(_TABLE_NAMES),
                    )
                    if found < len(_TABLE_NAMES):
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
        where, params = _filters(event_id, subscription)
        n = len(params) + 1
        sql = (
            f"SELECT entry FROM {self._sql.s}.dead_letters {where} "  # noqa: S608  # placeholders and the checked schema only
            f"ORDER BY dead_at DESC LIMIT ${n}"  # LIMIT NULL is no limit
        )
        rows = await self._fetch(sql, *params, limit)
        return [DeadLetter.model_validate_json(row[0]) for row in rows]

    async def take_dead_letters(
        self, *, event_id: str | None = None, subscription: str | None = None
    ) -> list[DeadLetter]:
        where, params = _filters(event_id, subscription)
        s = self._sql.s
        # One statement: a replay starts with a fresh budget (the pair's spend goes) and
        # its steps are kept a window from now.
        sql = (
            f"WITH taken AS (DELETE FROM {s}.dead_letters {where} "  # noqa: S608  # placeholders and the checked schema only
            f"RETURNING dead_at, entry, event_id, subscription), "
            f"spent AS (DELETE FROM {s}.spend p USING taken "
            f"WHERE p.event_id = taken.event_id AND p.subscription = taken.subscription), "
            f"kept AS (UPDATE {s}.steps t SET at = now() FROM taken "
            f"WHERE t.event_id = taken.event_id AND t.subscription = taken.subscription) "
            f"SELECT dead_at, entry FROM taken"
        )
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

    async def add_spend(
        self, subscription: str, event_id: str, tokens: int = 0, seconds: float = 0.0
    ) -> Spend:
        if not tokens and not seconds:
            rows = await self._fetch(self._sql.spend, event_id, subscription)
        else:
            rows = await self._fetch(
                self._sql.add_spend, subscription, event_id, tokens, float(seconds)
            )
            await self._stepped()
        return Spend(int(rows[0][0]), float(rows[0][1])) if rows else Spend(0, 0.0)

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
        s = self._sql.s
        rows = await self._fetch(
            f"SELECT seq, event_id, published_at, event FROM {s}.log_events {where}",  # noqa: S608  # placeholders and the checked schema only
            *args,
        )
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

    async def history_after(
        self, after: str | None, limit: int
    ) -> tuple[list[EventRecord], str | None]:
        if after is None:
            last = await self._fetchval(f"SELECT max(seq) FROM {self._sql.s}.log_events")  # noqa: S608  # the checked schema only
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
        rows = await self._fetch(
            f"SELECT name, pattern FROM {self._sql.s}.declared ORDER BY name"  # noqa: S608  # the checked schema only
        )
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


class _Statements:
    """The store's SQL, with the schema filled in once."""

    def __init__(self, s: str) -> None:
        self.s = s
        self.tables = _TABLES.format(s=s)
        self.publish = (
            f"INSERT INTO {s}.published VALUES ($1, $2, now()) "  # noqa: S608  # schema checked
            f"ON CONFLICT (event_id) DO UPDATE SET event_type = $2, at = now() "
            f"WHERE published.at < {_HORIZON.format(n='$3')}"  # re-published after expiring
        )
        self.publish_many = (
            f"INSERT INTO {s}.published "  # noqa: S608
            f"SELECT e, t, now() FROM unnest($1::text[], $2::text[]) AS p(e, t) "
            f"ON CONFLICT (event_id) DO UPDATE SET event_type = excluded.event_type, at = now() "
            f"WHERE published.at < {_HORIZON.format(n='$3')}"
        )
        self.event_type = (
            f"SELECT event_type FROM {s}.published "  # noqa: S608
            f"WHERE event_id = $1 AND at >= {_HORIZON.format(n='$2')}"
        )
        self.is_done = (
            f"SELECT EXISTS (SELECT 1 FROM {s}.done "  # noqa: S608
            f"WHERE event_id = $1 AND subscription = $2 AND at >= {_HORIZON.format(n='$3')})"
        )
        self.done_among = (
            f"SELECT event_id FROM {s}.done "  # noqa: S608
            f"WHERE subscription = $1 AND event_id = ANY($2::text[]) "
            f"AND at >= {_HORIZON.format(n='$3')}"
        )
        # One statement, so atomic without a transaction: forget the failures, upsert marks.
        self.mark_done = (
            f"WITH pairs AS (SELECT * FROM unnest($1::text[], $2::text[]) AS p(s, e)), "  # noqa: S608
            f"forgot AS (DELETE FROM {s}.failures f USING pairs "
            f"WHERE f.event_id = pairs.e AND f.subscription = pairs.s) "
            f"INSERT INTO {s}.done SELECT s, e, now() FROM pairs "
            f"ON CONFLICT (event_id, subscription) DO UPDATE SET at = now()"
        )
        # The transaction's mark: inserted, or an expired one replaced; a live one (or one
        # committed meanwhile by a worker whose row lock this waited on) returns no row.
        self.claim = (
            f"WITH forgot AS (DELETE FROM {s}.failures "  # noqa: S608
            f"WHERE event_id = $2 AND subscription = $1) "
            f"INSERT INTO {s}.done VALUES ($1, $2, now()) "
            f"ON CONFLICT (event_id, subscription) DO UPDATE SET at = now() "
            f"WHERE done.at < {_HORIZON.format(n='$3')} RETURNING 1"
        )
        self.add_failure = (
            f"INSERT INTO {s}.failures VALUES ($1, $2, $3, $4) "  # noqa: S608
            f"ON CONFLICT (event_id, subscription, attempt) DO UPDATE SET error = $4"
        )
        self.take_failures = (
            f"DELETE FROM {s}.failures WHERE event_id = $1 AND subscription = $2 "  # noqa: S608
            f"RETURNING attempt, error::text"
        )
        # clock_timestamp(), not now(): newest-first must order entries written within
        # one transaction's time too.
        self.add_dead_letter = (
            f"INSERT INTO {s}.dead_letters VALUES ($1, $2, clock_timestamp(), $3) "  # noqa: S608
            f"ON CONFLICT (event_id, subscription) "
            f"DO UPDATE SET dead_at = excluded.dead_at, entry = excluded.entry"
        )
        self.states = (
            f"SELECT subscription, state FROM ("  # noqa: S608
            f"SELECT subscription, 'failed' AS state, 0 AS rank FROM {s}.failures "
            f"WHERE event_id = $1 "
            f"UNION ALL SELECT subscription, 'dead_lettered', 1 FROM {s}.dead_letters "
            f"WHERE event_id = $1 "
            f"UNION ALL SELECT subscription, 'done', 2 FROM {s}.done "
            f"WHERE event_id = $1 AND at >= {_HORIZON.format(n='$2')}) AS found ORDER BY rank"
        )
        self.step_result = (
            f"SELECT result FROM {s}.steps "  # noqa: S608
            f"WHERE event_id = $1 AND subscription = $2 AND step = $3"
        )
        self.record_step = (
            f"INSERT INTO {s}.steps VALUES ($1, $2, $3, $4, now()) "  # noqa: S608
            f"ON CONFLICT (event_id, subscription, step) DO UPDATE SET result = $4, at = now()"
        )
        self.spend = (
            f"SELECT tokens, seconds FROM {s}.spend "  # noqa: S608
            f"WHERE event_id = $1 AND subscription = $2"
        )
        self.add_spend = (
            f"INSERT INTO {s}.spend VALUES ($1, $2, $3, $4, now()) "  # noqa: S608
            f"ON CONFLICT (event_id, subscription) DO UPDATE SET "
            f"tokens = spend.tokens + excluded.tokens, "
            f"seconds = spend.seconds + excluded.seconds, at = now() "
            f"RETURNING tokens, seconds"
        )
        # Older than the window, unless the pair has a dead letter (a replay needs them).
        kept = (
            "NOT EXISTS (SELECT 1 FROM {s}.dead_letters d "
            "WHERE d.event_id = {t}.event_id AND d.subscription = {t}.subscription)"
        )
        self.prune_steps = (
            f"WITH gone AS (DELETE FROM {s}.steps "  # noqa: S608
            f"WHERE at < {_HORIZON.format(n='$1')} AND {kept.format(s=s, t='steps')}) "
            f"DELETE FROM {s}.spend "
            f"WHERE at < {_HORIZON.format(n='$1')} AND {kept.format(s=s, t='spend')}"
        )
        self.log_events = (
            f"INSERT INTO {s}.log_events (event_id, correlation_id, published_at, event) "  # noqa: S608
            f"SELECT e, c, a, b FROM unnest($1::text[], $2::text[], $3::float8[], $4::text[]) "
            f"WITH ORDINALITY AS x(e, c, a, b, n) ORDER BY n ON CONFLICT (event_id) DO NOTHING"
        )
        self.log_outcome = (
            f"INSERT INTO {s}.log_outcomes (subscription, event_id, attempt, state, ended_at, "  # noqa: S608
            f"seconds, error_type, error_message) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
        )
        self.log_outcomes = (
            f"SELECT subscription, event_id, attempt, state, ended_at, seconds, error_type, "  # noqa: S608
            f"error_message FROM {s}.log_outcomes WHERE event_id = ANY($1::text[]) "
            f"ORDER BY ended_at, id"
        )
        self.trim_history = (
            f"WITH gone AS (DELETE FROM {s}.log_events WHERE published_at < $1) "  # noqa: S608
            f"DELETE FROM {s}.log_outcomes WHERE ended_at < $1"
        )
        self.declare = (
            f"INSERT INTO {s}.declared "  # noqa: S608
            f"SELECT n, p, now() FROM unnest($1::text[], $2::text[]) AS x(n, p) "
            f"ON CONFLICT (name) DO UPDATE SET pattern = excluded.pattern, declared_at = now()"
        )
        self.prune = (
            f"WITH marks AS (DELETE FROM {s}.done WHERE at < {_HORIZON.format(n='$1')}) "  # noqa: S608
            f"DELETE FROM {s}.published WHERE at < {_HORIZON.format(n='$1')}"
        )


async def _rollback(tx: Transaction) -> None:
    # A failed rollback leaves the connection to release(), which rolls back or closes it.
    with suppress(*_VENDOR_ERRORS):
        await tx.rollback()


def _filters(event_id: str | None, subscription: str | None) -> tuple[str, list[str]]:
    clauses, params = [], []
    if event_id is not None:
        params.append(event_id)
        clauses.append(f"event_id = ${len(params)}")
    if subscription is not None:
        params.append(subscription)
        clauses.append(f"subscription = ${len(params)}")
    return ("WHERE " + " AND ".join(clauses) if clauses else ""), params
