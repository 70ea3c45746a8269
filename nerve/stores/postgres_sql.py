"""The PostgreSQL store's SQL: its tables, and its statements with the schema filled in.

Only placeholders and the schema's quoted name, checked by :class:`Statements`, are ever
interpolated into a statement.
"""

from __future__ import annotations

import re

from nerve.exceptions import ConfigurationError
from nerve.stores.base import RATE_EPSILON

__all__ = ["MISSING", "TABLE_NAMES", "Statements", "filters"]

# ``{s}`` is the quoted schema. The entry and error columns are ``json``, not ``jsonb``:
# jsonb rejects ``\u0000`` (an event payload or an error message may hold one, and a dead
# letter must never be lost to its content) and reorders keys; json keeps pydantic's text
# as written and is still queryable with ``->`` / ``->>`` (but ``->>`` fails on a document
# holding ``\u0000`` anywhere: the log's backfill of event types reads nerve's own JSON,
# which starts with the type, by pattern first).
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
CREATE TABLE IF NOT EXISTS {s}.counters (
    subscription text NOT NULL, event_id text NOT NULL, counter text NOT NULL,
    name text NOT NULL, total float8 NOT NULL, at timestamptz NOT NULL,
    PRIMARY KEY (event_id, subscription, counter, name));
CREATE INDEX IF NOT EXISTS counters_at ON {s}.counters (at);
CREATE TABLE IF NOT EXISTS {s}.log_events (
    seq bigserial PRIMARY KEY, event_id text NOT NULL UNIQUE, correlation_id text NOT NULL,
    published_at float8 NOT NULL, event text NOT NULL, event_type text);
CREATE INDEX IF NOT EXISTS log_events_chain ON {s}.log_events (correlation_id);
CREATE INDEX IF NOT EXISTS log_events_at ON {s}.log_events (published_at);
ALTER TABLE {s}.log_events ADD COLUMN IF NOT EXISTS event_type text;
UPDATE {s}.log_events SET event_type = coalesce(
    substring(event from '^[{{]"event_type":"([^"\\\\]*)"'), event::json ->> 'event_type')
    WHERE event_type IS NULL;
CREATE INDEX IF NOT EXISTS log_events_type ON {s}.log_events (event_type, published_at);
CREATE TABLE IF NOT EXISTS {s}.log_outcomes (
    id bigserial PRIMARY KEY, subscription text NOT NULL, event_id text NOT NULL,
    attempt integer NOT NULL, state text NOT NULL, ended_at float8 NOT NULL,
    seconds float8 NOT NULL, error_type text, error_message text);
CREATE INDEX IF NOT EXISTS log_outcomes_event ON {s}.log_outcomes (event_id);
CREATE INDEX IF NOT EXISTS log_outcomes_at ON {s}.log_outcomes (ended_at);
CREATE TABLE IF NOT EXISTS {s}.declared (
    name text PRIMARY KEY, pattern text NOT NULL, declared_at timestamptz NOT NULL);
CREATE SEQUENCE IF NOT EXISTS {s}.timer_seq;
CREATE TABLE IF NOT EXISTS {s}.timers (
    timer_id text COLLATE "C" PRIMARY KEY, due float8 NOT NULL, body text NOT NULL,
    seq bigint NOT NULL DEFAULT nextval('{s}.timer_seq'));
CREATE INDEX IF NOT EXISTS timers_due ON {s}.timers (due, seq);
CREATE TABLE IF NOT EXISTS {s}.waits (
    wait_id text PRIMARY KEY, event_type text NOT NULL, match_key text NOT NULL,
    subscription text NOT NULL, event_id text NOT NULL, body json NOT NULL,
    created_at timestamptz NOT NULL);
CREATE INDEX IF NOT EXISTS waits_key ON {s}.waits (event_type, match_key);
CREATE INDEX IF NOT EXISTS waits_pair ON {s}.waits (event_id, subscription);
CREATE TABLE IF NOT EXISTS {s}.wait_shapes (
    event_type text NOT NULL, shape text NOT NULL, PRIMARY KEY (event_type, shape));
CREATE TABLE IF NOT EXISTS {s}.slots (
    limiter text NOT NULL, key text NOT NULL, holders jsonb NOT NULL,
    PRIMARY KEY (limiter, key));
CREATE TABLE IF NOT EXISTS {s}.rates (
    limiter text NOT NULL, key text NOT NULL, tat float8 NOT NULL, wait float8 NOT NULL,
    PRIMARY KEY (limiter, key));
"""

#: The tables of the schema: open() creates them when one is missing.
TABLE_NAMES = (
    "done",
    "published",
    "failures",
    "dead_letters",
    "steps",
    "counters",
    "log_events",
    "log_outcomes",
    "declared",
    "timers",
    "waits",
    "wait_shapes",
    "slots",
    "rates",
)

#: Whether a table of the schema ($1), or a column added since, is missing.
MISSING = (
    "SELECT count(*) < cardinality($2::text[]) OR NOT EXISTS (SELECT 1 FROM "
    "information_schema.columns WHERE table_schema = $1 AND table_name = 'log_events' "
    "AND column_name = 'event_type') FROM pg_tables WHERE schemaname = $1 "
    "AND tablename = ANY($2::text[])"
)

#: ``$n`` seconds before now: the oldest mark still within the window.
_HORIZON = "now() - {n}::float8 * interval '1 second'"


_SCHEMA_NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}")


class Statements:
    """The store's SQL, with the schema filled in once.

    Raises:
        ConfigurationError: ``schema`` is not a plain lower-case name.
    """

    def __init__(self, schema: str) -> None:
        if not _SCHEMA_NAME.fullmatch(schema):
            raise ConfigurationError(
                f"schema {schema!r}: use lower-case letters, digits and _ (at most 63)"
            )
        self.s = s = f'"{schema}"'
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
        self.counter = (
            f"SELECT name, total FROM {s}.counters "  # noqa: S608
            f"WHERE event_id = $2 AND subscription = $1 AND counter = $3"
        )
        # One statement, so atomic: each row is added to under its lock (names sorted by
        # the caller: no lock-order deadlocks); the names not added to are read as they are.
        self.add_to = (
            f"WITH added AS (INSERT INTO {s}.counters "  # noqa: S608
            f"SELECT $1, $2, $3, n, a, now() FROM unnest($4::text[], $5::float8[]) AS x(n, a) "
            f"ON CONFLICT (event_id, subscription, counter, name) DO UPDATE SET "
            f"total = counters.total + excluded.total, at = now() RETURNING name, total) "
            f"SELECT name, total FROM added UNION ALL SELECT name, total FROM {s}.counters "
            f"WHERE event_id = $2 AND subscription = $1 AND counter = $3 "
            f"AND name <> ALL($4::text[])"
        )
        # Older than the window, unless the pair has a dead letter or a wait (a replay, a
        # resumed run, needs them).
        kept = (
            "NOT EXISTS (SELECT 1 FROM {s}.dead_letters d "
            "WHERE d.event_id = {t}.event_id AND d.subscription = {t}.subscription) "
            "AND NOT EXISTS (SELECT 1 FROM {s}.waits w "
            "WHERE w.event_id = {t}.event_id AND w.subscription = {t}.subscription)"
        )
        self.prune_steps = (
            f"WITH gone AS (DELETE FROM {s}.steps "  # noqa: S608
            f"WHERE at < {_HORIZON.format(n='$1')} AND {kept.format(s=s, t='steps')}) "
            f"DELETE FROM {s}.counters "
            f"WHERE at < {_HORIZON.format(n='$1')} AND {kept.format(s=s, t='counters')}"
        )
        self.log_events = (
            f"INSERT INTO {s}.log_events "  # noqa: S608
            f"(event_id, correlation_id, published_at, event, event_type) SELECT e, c, a, b, t "
            f"FROM unnest($1::text[], $2::text[], $3::float8[], $4::text[], $5::text[]) "
            f"WITH ORDINALITY AS x(e, c, a, b, t, n) ORDER BY n ON CONFLICT (event_id) DO NOTHING"
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
        self._timers_and_waits(s)
        self._limits(s)
        self.last_seq = f"SELECT max(seq) FROM {s}.log_events"  # noqa: S608
        self.subscriptions = f"SELECT name, pattern FROM {s}.declared ORDER BY name"  # noqa: S608
        self.declare = (
            f"INSERT INTO {s}.declared "  # noqa: S608
            f"SELECT n, p, now() FROM unnest($1::text[], $2::text[]) AS x(n, p) "
            f"ON CONFLICT (name) DO UPDATE SET pattern = excluded.pattern, declared_at = now()"
        )
        self.prune = (
            f"WITH marks AS (DELETE FROM {s}.done WHERE at < {_HORIZON.format(n='$1')}) "  # noqa: S608
            f"DELETE FROM {s}.published WHERE at < {_HORIZON.format(n='$1')}"
        )

    def _timers_and_waits(self, s: str) -> None:
        columns = "timer_id, due, body"
        self.add_timer = (
            f"INSERT INTO {s}.timers ({columns}) VALUES ($1, $2, $3) "  # noqa: S608
            f"ON CONFLICT (timer_id) DO NOTHING RETURNING 1"
        )
        # A replaced timer is the newest of those due at its time.
        self.replace_timer = (
            f"INSERT INTO {s}.timers ({columns}) VALUES ($1, $2, $3) "  # noqa: S608
            f"ON CONFLICT (timer_id) DO UPDATE SET "
            f"due = excluded.due, body = excluded.body, seq = excluded.seq RETURNING 1"
        )
        # One statement: the due rows no other claim holds are locked, given new seqs in
        # their order (so they stay in it) and moved to $1 + $2; returned as they were.
        self.claim_timers = (
            f"WITH found AS (SELECT timer_id, due, seq FROM {s}.timers WHERE due <= $1 "  # noqa: S608
            f"ORDER BY due, seq LIMIT $3 FOR UPDATE SKIP LOCKED), "
            f"moved AS (SELECT timer_id, due, nextval('{s}.timer_seq') AS seq FROM found "
            f"ORDER BY found.due, found.seq) "
            f"UPDATE {s}.timers t SET due = $1 + $2, seq = moved.seq FROM moved "
            f"WHERE t.timer_id = moved.timer_id RETURNING t.timer_id, moved.due, t.body, moved.seq"
        )
        self.delete_timer = f"DELETE FROM {s}.timers WHERE timer_id = $1 RETURNING 1"  # noqa: S608
        self.timers = (
            f"SELECT {columns} FROM {s}.timers WHERE starts_with(timer_id, $1) "  # noqa: S608
            f"ORDER BY due, seq LIMIT $2"
        )
        self.timer = f"SELECT {columns} FROM {s}.timers WHERE timer_id = $1"  # noqa: S608
        # One statement: the shape is known before the wait can be found.
        self.add_wait = (
            f"WITH shape AS (INSERT INTO {s}.wait_shapes VALUES ($2, $7) "  # noqa: S608
            f"ON CONFLICT DO NOTHING) "
            f"INSERT INTO {s}.waits VALUES ($1, $2, $3, $4, $5, $6, clock_timestamp()) "
            f"ON CONFLICT (wait_id) DO UPDATE SET event_type = excluded.event_type, "
            f"match_key = excluded.match_key, subscription = excluded.subscription, "
            f"event_id = excluded.event_id, body = excluded.body, created_at = excluded.created_at"
        )
        self.wait_shapes = (
            f"SELECT event_type, shape FROM {s}.wait_shapes "  # noqa: S608
            f"WHERE event_type = ANY($1::text[])"
        )
        self.keyed_waits = (
            f"SELECT w.body, w.event_type, w.match_key "  # noqa: S608
            f"FROM unnest($1::text[], $2::text[]) AS k(t, m) JOIN {s}.waits w "
            f"ON w.event_type = k.t AND w.match_key = k.m ORDER BY w.created_at, w.wait_id"
        )
        # One statement: the pair's steps and counters are kept another window from now.
        self.remove_wait = (
            f"WITH gone AS (DELETE FROM {s}.waits WHERE wait_id = $1 "  # noqa: S608
            f"RETURNING event_id, subscription), "
            f"stepped AS (UPDATE {s}.steps t SET at = now() FROM gone "
            f"WHERE t.event_id = gone.event_id AND t.subscription = gone.subscription), "
            f"counted AS (UPDATE {s}.counters c SET at = now() FROM gone "
            f"WHERE c.event_id = gone.event_id AND c.subscription = gone.subscription) "
            f"SELECT count(*) FROM gone"
        )

    def _limits(self, s: str) -> None:
        # A key's holders are one row ({holder: lease end}), so a take is one upsert under
        # the row's lock (ON CONFLICT locks it and reads its latest version): the holders
        # whose lease ended are dropped and the holder added, when fewer than the limit
        # ($4) others hold a live lease at $5. A refused take returns no row.
        live = "(e)::float8 > $5::float8 AND h <> $3::text"
        self.take_slot = (
            f"INSERT INTO {s}.slots SELECT $1, $2, jsonb_build_object($3::text, $6::float8) "  # noqa: S608
            f"WHERE $4::int > 0 ON CONFLICT (limiter, key) DO UPDATE SET holders = ("
            f"SELECT coalesce(jsonb_object_agg(h, e), '{{}}') "
            f"FROM jsonb_each(slots.holders) AS x(h, e) WHERE {live}) "
            f"|| jsonb_build_object($3::text, $6::float8) "
            f"WHERE (SELECT count(*) FROM jsonb_each(slots.holders) AS x(h, e) "
            f"WHERE {live}) < $4::int RETURNING 1"
        )
        self.free_slot = (
            f"UPDATE {s}.slots SET holders = holders - $3::text "  # noqa: S608
            f"WHERE limiter = $1 AND key = $2 AND holders ? $3::text"
        )
        self.slots_taken = (
            f"SELECT count(*) FROM {s}.slots, jsonb_each(holders) AS x(h, e) "  # noqa: S608
            f"WHERE limiter = $1 AND key = $2 AND (e)::float8 > $3::float8"
        )

        # GCRA in one upsert under the row's lock: the new TAT is written when the units
        # conform (or are forced), and the wait always, which RETURNING gives back (a
        # refused take of a new key leaves a TAT of now: the same as none).
        def gcra(tat: str) -> str:
            return (
                f"SELECT CASE WHEN w <= {RATE_EPSILON!r} OR force THEN n ELSE {tat} END, w "  # noqa: S608  # constants only
                f"FROM (SELECT n, n - at - room AS w, force FROM (SELECT "
                f"greatest(at, greatest({tat}, at) + used) AS n, * FROM p) AS a) AS b"
            )

        self.take_rate = (
            f"WITH p AS (SELECT $3::float8 * $5::float8 AS used, "  # noqa: S608
            f"$4::float8 * $3::float8 AS room, $6::float8 AS at, $7::bool AS force) "
            f"INSERT INTO {s}.rates SELECT $1, $2, * FROM ({gcra('(SELECT at FROM p)')}) AS g "
            f"ON CONFLICT (limiter, key) DO UPDATE SET (tat, wait) = ({gcra('rates.tat')}) "
            f"RETURNING wait"
        )
        self.block_rate = (
            f"INSERT INTO {s}.rates VALUES ($1, $2, $3, 0) "  # noqa: S608
            f"ON CONFLICT (limiter, key) DO UPDATE SET tat = greatest(rates.tat, excluded.tat)"
        )
        # Holders and rate states past $1: every key's (a key without live holders too).
        self.prune_limits = (
            f"WITH rated AS (DELETE FROM {s}.rates WHERE tat < $1) "  # noqa: S608
            f"DELETE FROM {s}.slots WHERE NOT EXISTS (SELECT 1 FROM jsonb_each(holders) "
            f"AS x(h, e) WHERE (e)::float8 >= $1)"
        )

    def waits(self, where: str, limit: int) -> str:
        """The waits ``where`` selects, oldest first, at most ``$limit``."""
        return (
            f"SELECT body FROM {self.s}.waits {where} "  # noqa: S608
            f"ORDER BY created_at, wait_id LIMIT ${limit}"
        )

    def dead_letters(self, where: str, limit: int) -> str:
        """The dead letters ``where`` selects, newest first, at most ``$limit``."""
        return (
            f"SELECT entry FROM {self.s}.dead_letters {where} "  # noqa: S608
            f"ORDER BY dead_at DESC LIMIT ${limit}"  # LIMIT NULL is no limit
        )

    def take_dead_letters(self, where: str) -> str:
        """Delete and return the dead letters ``where`` selects (dead_at, entry).

        One statement: a replay starts its counts afresh (the pair's counters go: a fresh
        budget, fresh crash-loop counting) and its steps are kept a window from now.
        """
        s = self.s
        return (
            f"WITH taken AS (DELETE FROM {s}.dead_letters {where} "  # noqa: S608
            f"RETURNING dead_at, entry, event_id, subscription), "
            f"counted AS (DELETE FROM {s}.counters c USING taken "
            f"WHERE c.event_id = taken.event_id AND c.subscription = taken.subscription), "
            f"kept AS (UPDATE {s}.steps t SET at = now() FROM taken "
            f"WHERE t.event_id = taken.event_id AND t.subscription = taken.subscription) "
            f"SELECT dead_at, entry FROM taken"
        )

    def log_records(self, where: str) -> str:
        """The logged events ``where`` selects (seq, event_id, published_at, event)."""
        return f"SELECT seq, event_id, published_at, event FROM {self.s}.log_events {where}"  # noqa: S608


def filters(event_id: str | None, subscription: str | None) -> tuple[str, list[str]]:
    """A WHERE clause selecting dead letters by event id and subscription (either may
    be None: any), and its parameters ($1, $2)."""
    clauses, params = [], []
    if event_id is not None:
        params.append(event_id)
        clauses.append(f"event_id = ${len(params)}")
    if subscription is not None:
        params.append(subscription)
        clauses.append(f"subscription = ${len(params)}")
    return ("WHERE " + " AND ".join(clauses) if clauses else ""), params
