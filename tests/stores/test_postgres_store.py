"""The PostgreSQL store on a real server: restarts, transactions, errors.

The store contracts themselves run in ``tests/contracts/stores/`` (their ``postgres`` param).
Each test works in a schema of its own, dropped afterwards, so runs can overlap and repeat.
``scripts/brokers`` starts the server and creates the role and database; these tests never
skip: without a server they fail, saying so.
"""

from __future__ import annotations

import asyncio
import os
import sys
import uuid
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest

import nerve
from nerve import (
    AlreadyHandled,
    ConfigurationError,
    DeliveryState,
    Event,
    EventBus,
    MissingDependency,
    StoreError,
)
from nerve.records import AttemptError, DeadLetter, Timer
from nerve.stores import postgres as postgres_module
from nerve.stores import store_from_url
from nerve.stores.postgres import PostgresStore

#: The server the tests use; NERVE_TEST_POSTGRES_URL points them elsewhere.
POSTGRES_URL = os.environ.get(
    "NERVE_TEST_POSTGRES_URL", "postgresql://nerve:nerve@127.0.0.1:5432/nerve_test"
)


def unique_schema() -> str:
    return f"nerve_test_{uuid.uuid4().hex[:12]}"


async def connect() -> asyncpg.Connection[asyncpg.Record]:
    """A connection to the test server, or a failed test that says what to do."""
    try:
        return await asyncpg.connect(POSTGRES_URL, timeout=10)
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        pytest.fail(
            f"PostgreSQL is unreachable at {POSTGRES_URL}: {type(exc).__name__}: {exc}. "
            "Run scripts/brokers (it starts the server, creates role and database), "
            "or point NERVE_TEST_POSTGRES_URL at a server.",
            pytrace=False,
        )


async def sql(query: str, *args: object) -> list[asyncpg.Record]:
    conn = await connect()
    try:
        return await conn.fetch(query, *args)
    finally:
        await conn.close()


async def drop_schema(name: str) -> None:
    await sql(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')


@pytest.fixture
async def schema() -> AsyncIterator[str]:
    """A schema name of this test's own (checking first that the server is there)."""
    name = unique_schema()
    await sql("SELECT 1")
    yield name
    await drop_schema(name)


@pytest.fixture
async def store(schema: str) -> AsyncIterator[PostgresStore]:
    store = PostgresStore(POSTGRES_URL, schema=schema)
    await store.open()
    yield store
    await store.close()


async def rows_of(schema: str, table: str, columns: str = "*") -> list[tuple[Any, ...]]:
    """The rows of one of the store's tables, sorted."""
    found = await sql(f'SELECT {columns} FROM "{schema}".{table} ORDER BY 1')  # noqa: S608
    return [tuple(row) for row in found]


async def expire(schema: str, table: str) -> None:
    """Age every row of ``done`` or ``published`` past the window (a day by default)."""
    await sql(f"UPDATE \"{schema}\".{table} SET at = now() - interval '2 days'")  # noqa: S608


async def make_ledger(schema: str) -> str:
    table = f'"{schema}".ledger'
    await sql(f"CREATE TABLE {table} (event_id text, amount integer)")  # no unique key
    return table


async def ledger(table: str) -> list[tuple[str, int]]:
    rows = await sql(f"SELECT event_id, amount FROM {table} ORDER BY event_id")  # noqa: S608
    return [(row[0], row[1]) for row in rows]


def error(attempt: int, message: str = "boom") -> AttemptError:
    try:
        raise RuntimeError(message)
    except RuntimeError as exc:
        return AttemptError.from_exception(exc, attempt)


# restarts and the tables


async def test_a_second_store_on_the_schema_sees_what_the_first_wrote(schema: str) -> None:
    first = PostgresStore(POSTGRES_URL, schema=schema)
    await first.open()
    event = Event(event_type="a.b", payload={"k": 1})
    await first.record_published(event)
    await first.mark_done("s", event.event_id)
    await first.add_failure("t", event.event_id, error(1))
    entry = DeadLetter(event=event, subscription="u", attempts=1, errors=[error(1)])
    await first.add_dead_letter(entry)
    await first.close()

    second = PostgresStore(POSTGRES_URL, schema=schema)  # another process, or a restart
    await second.open()
    try:
        assert await second.is_done("s", event.event_id)
        assert await second.event_type(event.event_id) == "a.b"
        assert await second.dead_letters() == [entry]
        assert await second.states(event.event_id) == {
            "s": DeliveryState.DONE,
            "t": DeliveryState.FAILED,
            "u": DeliveryState.DEAD_LETTERED,
        }
    finally:
        await second.close()


async def test_a_bus_restarted_on_the_schema_keeps_marks_and_dead_letters(schema: str) -> None:
    def make() -> EventBus:
        bus = EventBus("memory://", store=PostgresStore(POSTGRES_URL, schema=schema))

        @bus.on("a.b", name="fails", retries=0)
        async def fails(event: Event) -> None:
            raise RuntimeError("still broken")

        @bus.on("a.b", name="works")
        async def works(event: Event) -> None:
            pass

        return bus

    bus = make()
    async with bus:
        event = await bus.publish(Event(event_type="a.b"))

    again = make()
    entry = await again.dlq.get(event.event_id)
    assert entry is not None
    assert entry.errors[-1].message == "still broken"
    assert (await again.status(event.event_id)).subscriptions == {
        "fails": DeliveryState.DEAD_LETTERED,
        "works": DeliveryState.DONE,
    }
    await again.stop()


async def test_two_stores_opening_a_new_schema_at_once_both_succeed(schema: str) -> None:
    stores = [PostgresStore(POSTGRES_URL, schema=schema) for _ in range(4)]
    await asyncio.gather(*(s.open() for s in stores))
    await stores[0].mark_done("s", "e")
    assert all([await s.is_done("s", "e") for s in stores])
    await asyncio.gather(*(s.close() for s in stores))


async def test_a_schema_from_before_timers_and_waits_is_brought_up_to_date(
    schema: str,
) -> None:
    first = PostgresStore(POSTGRES_URL, schema=schema)
    await first.open()
    await first.close()
    # as an older nerve left it: no timers or waits, a log without event types
    await sql(f'DROP TABLE "{schema}".timers, "{schema}".waits, "{schema}".wait_shapes')
    await sql(f'ALTER TABLE "{schema}".log_events DROP COLUMN event_type')
    old = Event(event_type="refund.approval.decided", payload={"note": "nul\x00here"})
    await sql(
        f'INSERT INTO "{schema}".log_events (event_id, correlation_id, published_at, event) '  # noqa: S608
        "VALUES ($1, $2, $3, $4)",
        old.event_id,
        old.correlation_id,
        100.0,
        old.model_dump_json(),
    )
    new = Event(event_type="refund.approval.decided", payload={})
    store = PostgresStore(POSTGRES_URL, schema=schema)
    await store.open()
    try:
        await store.record_history([(new, 200.0)], [])
        found = await store.history_of_type("refund.approval.decided", 0, 10)
        assert [r.event for r in found] == [old, new]
        assert await store.history_of_type("refund.approval.decided", 150, 10) == found[1:]
        assert await store.add_timer(Timer(timer_id="t", due=1.0, body="{}"))
        assert [t.timer_id for t in await store.claim_timers(2.0, 30, 10)] == ["t"]
    finally:
        await store.close()


async def test_open_and_close_are_idempotent(schema: str) -> None:
    store = PostgresStore(POSTGRES_URL, schema=schema)
    await store.open()
    await store.open()
    await store.close()
    await store.close()
    await store.open()  # reopened after a close
    assert not await store.is_done("s", "e")
    await store.close()


async def test_dead_letters_keep_nul_characters_and_key_order(store: PostgresStore) -> None:
    event = Event(event_type="a", payload={"z": "nul\x00here", "a": 1})
    entry = DeadLetter(event=event, subscription="s", attempts=1, errors=[error(1, "x\x00y")])
    await store.add_dead_letter(entry)
    [found] = await store.dead_letters()
    assert found == entry
    assert list(found.event.payload) == ["z", "a"]
    assert await store.take_dead_letters() == [entry]


async def test_batches(store: PostgresStore) -> None:
    await store.add_failure("s", "e1", error(1))
    await store.add_failure("s", "e1", error(2))
    await store.mark_done_many({"s": ["e1", "e2", "e1"], "t": ["e1"], "empty": []})
    await store.mark_done_many({})
    await store.mark_done_many({"s": ["e2"]})  # marked again: refreshed, no conflict
    assert await store.done_among("s", ["e1", "e2", "e3"]) == {"e1", "e2"}
    assert await store.done_among("t", ["e1", "e2"]) == {"e1"}
    assert await store.done_among("s", []) == set()
    assert await store.take_failures("s", "e1") == []  # forgotten with the mark


async def test_publish_records_in_a_batch(store: PostgresStore, schema: str) -> None:
    first, second = Event(event_type="a.one"), Event(event_type="a.two")
    await store.record_published_many([first, second, first])  # twice in one batch
    await store.record_published_many([])
    assert await store.event_type(first.event_id) == "a.one"
    assert await store.event_type(second.event_id) == "a.two"
    await expire(schema, "published")
    await store.record_published_many([first])  # expired: recorded anew
    assert await store.event_type(first.event_id) == "a.one"
    assert await store.event_type(second.event_id) is None


async def test_failures_come_back_oldest_first(store: PostgresStore) -> None:
    for attempt in (3, 1, 2):
        await store.add_failure("s", "e", error(attempt, f"#{attempt}"))
    assert [e.message for e in await store.take_failures("s", "e")] == ["#1", "#2", "#3"]
    assert await store.take_failures("s", "e") == []


async def test_expired_marks_are_pruned(
    store: PostgresStore, schema: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(postgres_module, "_PRUNE_EVERY", 2)
    event = Event(event_type="a")
    await store.record_published(event)
    await store.mark_done("s", "old")
    await expire(schema, "done")
    await expire(schema, "published")
    assert not await store.is_done("s", "old")  # expired, though still in the table
    assert await store.event_type(event.event_id) is None
    await store.mark_done("s", "new")  # the second mark: prunes
    assert await rows_of(schema, "done", "event_id") == [("new",)]
    assert await rows_of(schema, "published") == []
    await store.record_published(event)  # re-published after expiring: known again
    assert await store.event_type(event.event_id) == "a"


# transactions


async def test_the_transaction_commits_the_writes_and_the_mark_together(
    store: PostgresStore, schema: str
) -> None:
    table = await make_ledger(schema)
    await store.add_failure("book", "e1", error(1))
    async with store.transaction("book", "e1") as conn:
        await conn.execute(f"INSERT INTO {table} VALUES ($1, $2)", "e1", 42)  # noqa: S608
    assert await ledger(table) == [("e1", 42)]
    assert await store.is_done("book", "e1")
    assert await store.take_failures("book", "e1") == []


async def test_an_error_inside_rolls_back_the_writes_and_the_mark(
    store: PostgresStore, schema: str
) -> None:
    table = await make_ledger(schema)

    async def fail_midway() -> None:
        async with store.transaction("book", "e2") as conn:
            await conn.execute(f"INSERT INTO {table} VALUES ($1, $2)", "e2", 7)  # noqa: S608
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        await fail_midway()
    # The handler's own SQL error propagates as asyncpg's, not as a StoreError.
    with pytest.raises(asyncpg.UndefinedTableError):
        async with store.transaction("book", "e2") as conn:
            await conn.execute("INSERT INTO no_such_table VALUES (1)")
    assert await ledger(table) == []
    assert not await store.is_done("book", "e2")
    async with store.transaction("book", "e2") as conn:  # the retry then commits
        await conn.execute(f"INSERT INTO {table} VALUES ($1, $2)", "e2", 7)  # noqa: S608
    assert await ledger(table) == [("e2", 7)]


async def test_an_sql_error_caught_inside_needs_a_savepoint(
    store: PostgresStore, schema: str
) -> None:
    table = await make_ledger(schema)
    insert = f"INSERT INTO {table} VALUES ($1, $2)"  # noqa: S608
    async with store.transaction("book", "e1") as conn:
        with pytest.raises(asyncpg.UndefinedTableError):
            async with conn.transaction():  # a savepoint: only it rolls back
                await conn.execute("INSERT INTO no_such_table VALUES (1)")
        await conn.execute(insert, "e1", 1)
    assert await ledger(table) == [("e1", 1)]

    async def swallow_an_error() -> None:
        async with store.transaction("book", "e2") as conn:
            await conn.execute(insert, "e2", 2)
            with pytest.raises(asyncpg.UndefinedTableError):
                await conn.execute("INSERT INTO no_such_table VALUES (1)")

    with pytest.raises(StoreError, match="could not mark book e2 done") as caught:
        await swallow_an_error()
    assert isinstance(caught.value.__cause__, asyncpg.InFailedSQLTransactionError)
    assert await ledger(table) == [("e1", 1)]
    assert not await store.is_done("book", "e2")


async def test_a_second_transaction_for_the_pair_is_already_handled(
    store: PostgresStore, schema: str
) -> None:
    table = await make_ledger(schema)
    async with store.transaction("book", "e1") as conn:
        await conn.execute(f"INSERT INTO {table} VALUES ($1, $2)", "e1", 42)  # noqa: S608
    with pytest.raises(AlreadyHandled, match="book already handled e1"):
        async with store.transaction("book", "e1") as conn:
            await conn.execute(f"INSERT INTO {table} VALUES ($1, $2)", "e1-again", 1)  # noqa: S608
    assert await ledger(table) == [("e1", 42)]
    async with store.transaction("other", "e1"):  # another subscription is not a duplicate
        pass


async def test_of_two_open_transactions_the_first_to_commit_wins(
    store: PostgresStore, schema: str
) -> None:
    table = await make_ledger(schema)
    insert = f"INSERT INTO {table} VALUES ($1, $2)"  # noqa: S608
    first = store.transaction("book", "e1")
    second = store.transaction("book", "e1")
    conn1 = await first.__aenter__()
    conn2 = await second.__aenter__()
    await conn1.execute(insert, "first", 1)
    await conn2.execute(insert, "second", 2)
    await second.__aexit__(None, None, None)  # the second worker commits first
    with pytest.raises(AlreadyHandled):
        await first.__aexit__(None, None, None)
    assert await ledger(table) == [("second", 2)]


async def test_of_many_concurrent_transactions_exactly_one_commits(
    store: PostgresStore, schema: str
) -> None:
    table = await make_ledger(schema)
    workers = 8  # under the pool's 10 connections
    all_open = asyncio.Barrier(workers)

    async def worker(n: int) -> None:
        async with store.transaction("book", "e1") as conn:
            await conn.execute(f"INSERT INTO {table} VALUES ($1, $2)", f"w{n}", n)  # noqa: S608
            await all_open.wait()  # then all commit at once: the row lock decides

    results = await asyncio.gather(*(worker(n) for n in range(workers)), return_exceptions=True)
    assert sum(r is None for r in results) == 1
    assert all(isinstance(r, AlreadyHandled) for r in results if r is not None)
    [(winner, amount)] = await ledger(table)
    assert results[amount] is None
    assert winner == f"w{amount}"


async def test_a_cancelled_transaction_rolls_back_and_frees_its_connection(schema: str) -> None:
    store = PostgresStore(POSTGRES_URL, schema=schema, max_connections=1)
    await store.open()
    table = await make_ledger(schema)
    inside = asyncio.Event()

    async def handler() -> None:
        async with store.transaction("book", "e1") as conn:
            await conn.execute(f"INSERT INTO {table} VALUES ($1, $2)", "e1", 1)  # noqa: S608
            inside.set()
            await asyncio.Event().wait()  # a long call, cancelled at shutdown

    task = asyncio.create_task(handler())
    await asyncio.wait_for(inside.wait(), 10)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert not await store.is_done("book", "e1")
    assert await ledger(table) == []
    # The transactions' pool has one connection: it must be back (or this would wait).
    async with asyncio.timeout(10), store.transaction("book", "e1") as conn:
        await conn.execute(f"INSERT INTO {table} VALUES ($1, $2)", "e1", 2)  # noqa: S608
    assert await ledger(table) == [("e1", 2)]
    await store.close()


async def test_a_connection_lost_before_the_commit_is_a_store_error_and_commits_nothing(
    schema: str,
) -> None:
    store = PostgresStore(POSTGRES_URL, schema=schema, max_connections=1)
    await store.open()
    table = await make_ledger(schema)

    async def lose_the_connection() -> None:
        async with store.transaction("book", "e1") as conn:
            await conn.execute(f"INSERT INTO {table} VALUES ($1, $2)", "e1", 1)  # noqa: S608
            # The server (or the network) drops this connection before the commit; the
            # timeout makes pg_terminate_backend wait until the backend has exited.
            pid = conn.get_server_pid()
            [[killed]] = await sql("SELECT pg_terminate_backend($1, 10000)", pid)
            assert killed

    with pytest.raises(StoreError, match="could not mark book e1 done") as caught:
        await lose_the_connection()
    cause = caught.value.__cause__  # which asyncpg error depends on when it notices
    assert cause is not None
    assert type(cause).__module__.startswith("asyncpg")
    assert await ledger(table) == []
    assert not await store.is_done("book", "e1")
    # The pool replaced its one, dead, connection.
    async with asyncio.timeout(10), store.transaction("book", "e1") as conn:
        await conn.execute(f"INSERT INTO {table} VALUES ($1, $2)", "e1", 2)  # noqa: S608
    assert await ledger(table) == [("e1", 2)]
    await store.close()


async def test_an_expired_mark_is_replaced(store: PostgresStore, schema: str) -> None:
    await store.mark_done("book", "e1")
    await expire(schema, "done")
    async with store.transaction("book", "e1"):
        pass
    assert await store.is_done("book", "e1")


async def test_a_handler_books_each_event_exactly_once(store: PostgresStore, schema: str) -> None:
    table = await make_ledger(schema)
    bus = EventBus("memory://", store=store)
    calls = 0

    @bus.on("payment.received", name="book")
    async def book(event: Event) -> None:
        nonlocal calls
        calls += 1
        async with nerve.transaction() as conn:
            await conn.execute(
                f"INSERT INTO {table} VALUES ($1, $2)",  # noqa: S608
                event.event_id,
                event.payload["amount"],
            )

    payment = Event(event_type="payment.received", payload={"amount": 42})
    async with bus:
        await bus.publish(payment)
        await bus.join(10)
        await bus.publish(payment)  # the same event again, after it was handled
    assert await ledger(table) == [(payment.event_id, 42)]
    assert calls == 1


async def test_a_handler_that_loses_the_race_is_acked_not_retried(
    store: PostgresStore, schema: str
) -> None:
    table = await make_ledger(schema)
    insert = f"INSERT INTO {table} VALUES ($1, $2)"  # noqa: S608
    bus = EventBus("memory://", store=store)
    calls = 0

    @bus.on("payment.received", name="book")
    async def book(event: Event) -> None:
        nonlocal calls
        calls += 1
        # Another worker, given the same event, commits while this one runs.
        async with store.transaction("book", event.event_id) as other:
            await other.execute(insert, "other worker", 1)
        async with nerve.transaction() as conn:
            await conn.execute(insert, "this worker", 1)

    async with bus:
        payment = await bus.publish(Event(event_type="payment.received"))
        await bus.join(10)
    assert await ledger(table) == [("other worker", 1)]
    assert calls == 1
    assert await bus.dlq.list() == []
    assert (await bus.status(payment.event_id)).subscriptions == {"book": DeliveryState.DONE}
    await bus.stop()


async def test_handlers_holding_every_transaction_can_still_publish(schema: str) -> None:
    # Transactions have a pool of their own: handlers that hold all of them and publish
    # (which records the publish through the store) must not wait on each other forever.
    store = PostgresStore(POSTGRES_URL, schema=schema, max_connections=2)
    await store.open()
    table = await make_ledger(schema)
    bus = EventBus("memory://", store=store)
    all_inside = asyncio.Barrier(2)

    @bus.on("payment.received", name="book", concurrency=4)
    async def book(event: Event) -> None:
        async with nerve.transaction() as conn:
            await conn.execute(f"INSERT INTO {table} VALUES ($1, 1)", event.event_id)  # noqa: S608
            await asyncio.wait_for(all_inside.wait(), 10)  # both pooled connections held
            await bus.publish(Event(event_type="payment.booked", payload={"id": event.event_id}))

    @bus.on("payment.booked", name="notify")
    async def notify(event: Event) -> None:
        pass

    async with bus:
        payments = [await bus.publish(Event(event_type="payment.received")) for _ in range(4)]
        await bus.join(10)
    assert sorted(row[0] for row in await ledger(table)) == sorted(p.event_id for p in payments)
    assert await bus.dlq.list() == []
    await bus.stop()


# errors and configuration


async def test_an_unreachable_server_is_a_clear_store_error() -> None:
    store = PostgresStore("postgresql://app:secret@127.0.0.1:1/db", schema="x")
    with pytest.raises(StoreError, match=r"127\.0\.0\.1:1/db.*could not connect") as caught:
        await store.open()
    assert "secret" not in str(caught.value)
    assert isinstance(caught.value.__cause__, OSError)
    await store.close()


async def test_server_errors_are_store_errors(store: PostgresStore, schema: str) -> None:
    await drop_schema(schema)  # the tables vanish under the open store
    with pytest.raises(StoreError, match="UndefinedTableError") as caught:
        await store.is_done("s", "e")
    assert isinstance(caught.value.__cause__, asyncpg.PostgresError)
    with pytest.raises(StoreError):
        async with store.transaction("s", "e"):
            pass


async def test_a_closed_store_says_so() -> None:
    store = PostgresStore(POSTGRES_URL)
    with pytest.raises(StoreError, match="not open"):
        await store.mark_done("s", "e")
    with pytest.raises(StoreError, match="not open"):
        async with store.transaction("s", "e"):
            pass


async def test_store_from_url_takes_the_schema_and_passes_the_rest_to_asyncpg(
    schema: str,
) -> None:
    url = f"{POSTGRES_URL}?schema={schema}&application_name=nerve_{schema}"
    store = store_from_url(url)
    assert isinstance(store, PostgresStore)
    assert store.schema == schema
    assert isinstance(store_from_url(url.replace("postgresql://", "postgres://")), PostgresStore)
    await store.open()
    try:
        async with store.transaction("s", "e") as conn:
            assert await conn.fetchval("SELECT current_setting('application_name')") == (
                f"nerve_{schema}"
            )
        assert await rows_of(schema, "done", "subscription, event_id") == [("s", "e")]
    finally:
        await store.close()
    bus = EventBus("memory://", store=url)  # a bus takes the URL as well
    await bus.status("e")  # opens the store
    assert (await bus.status("e")).subscriptions == {"s": DeliveryState.DONE}
    await bus.stop()


def test_the_postgres_store_without_asyncpg_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "asyncpg", None)  # as if it were not installed
    monkeypatch.delitem(sys.modules, "nerve.stores.postgres")
    with pytest.raises(MissingDependency, match=r"asyncpg: pip install 'nerve\[postgres\]'"):
        store_from_url(POSTGRES_URL)


def test_configuration_errors() -> None:
    assert PostgresStore("postgres://u@h/db").url == "postgres://u@h/db"
    with pytest.raises(ConfigurationError, match="not a PostgreSQL URL"):
        PostgresStore("mysql://u@h/db")
    with pytest.raises(ConfigurationError, match="schema"):
        PostgresStore(POSTGRES_URL, schema='x"; DROP TABLE y; --')
    with pytest.raises(ConfigurationError, match="max_connections"):
        PostgresStore(POSTGRES_URL, max_connections=0)
    with pytest.raises(ConfigurationError, match="two schemas given: a, b"):
        PostgresStore("postgresql://u@h/db?schema=a", schema="b")
    with pytest.raises(ConfigurationError, match="schema ''"):
        PostgresStore("postgresql://u@h/db?schema=")
    assert PostgresStore("postgresql://u@h/db?schema=a", schema="a").schema == "a"
    assert repr(PostgresStore("postgresql://u:pw@h:5/db")) == (
        "PostgresStore(postgresql://u@h:5/db, schema=nerve)"
    )
