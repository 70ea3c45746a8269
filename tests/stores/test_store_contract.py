"""Store contract, run against every store; the SQLite store survives a restart."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from nerve import AttemptError, DeadLetter, DeliveryState, Event, EventBus, Store
from nerve.stores.base import DEFAULT_WINDOW, Spend
from nerve.stores.memory import MemoryStore
from nerve.stores.postgres import PostgresStore
from nerve.stores.redis import RedisStore
from nerve.stores.sqlite import SQLiteStore
from tests.conftest import drop_redis_keys
from tests.stores.test_postgres_store import POSTGRES_URL, drop_schema, sql, unique_schema

StoreFactory = Callable[..., Store]


@pytest.fixture(params=["memory", "sqlite", "postgres", "redis"])
async def make_store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[StoreFactory]:
    """Stores of the parametrised kind; those of one test share a file or schema."""
    made: list[Store] = []
    redis_url = f"redis://127.0.0.1:6379/0?prefix=store-{uuid.uuid4().hex[:12]}"
    schema = unique_schema()  # postgres: this test's own, dropped at the end
    if request.param == "postgres":
        await sql("SELECT 1")  # fails the test clearly when the server is not there

    def factory(window: float = DEFAULT_WINDOW) -> Store:
        store: Store
        if request.param == "memory":
            store = MemoryStore(window=window)
        elif request.param == "sqlite":
            store = SQLiteStore(f"sqlite:///{tmp_path}/s.db", window=window)
        elif request.param == "redis":
            store = RedisStore(redis_url, window=window)
        else:
            store = PostgresStore(POSTGRES_URL, schema=schema, window=window)
        made.append(store)
        return store

    yield factory
    for store in made:
        await store.close()
    if request.param == "postgres":
        await drop_schema(schema)
    if request.param == "redis":
        drop_redis_keys(redis_url)


def error(attempt: int, message: str = "boom") -> AttemptError:
    try:
        raise RuntimeError(message)
    except RuntimeError as exc:
        return AttemptError.from_exception(exc, attempt)


async def test_done_marks(make_store: StoreFactory) -> None:
    store = make_store()
    await store.open()
    assert not await store.is_done("s", "e1")
    await store.add_failure("s", "e1", error(1))
    await store.mark_done("s", "e1")
    assert await store.is_done("s", "e1")
    assert not await store.is_done("other", "e1")
    assert await store.take_failures("s", "e1") == []  # success forgets the failures
    assert await store.states("e1") == {"s": DeliveryState.DONE}


async def test_failures_then_dead_letter(make_store: StoreFactory) -> None:
    store = make_store()
    await store.open()
    event = Event(event_type="a.b", payload={"k": [1, 2]})
    await store.record_published(event)
    assert await store.event_type(event.event_id) == "a.b"
    await store.add_failure("s", event.event_id, error(1, "one"))
    await store.add_failure("s", event.event_id, error(2, "two"))
    assert await store.states(event.event_id) == {"s": DeliveryState.FAILED}
    errors = await store.take_failures("s", event.event_id)
    assert [e.message for e in errors] == ["one", "two"]
    assert "RuntimeError: one" in errors[0].traceback
    entry = DeadLetter(event=event, subscription="s", attempts=3, errors=[*errors, error(3)])
    await store.add_dead_letter(entry)
    await store.add_dead_letter(DeadLetter(event=event, subscription="t", attempts=1, errors=[]))
    assert await store.states(event.event_id) == {
        "s": DeliveryState.DEAD_LETTERED,
        "t": DeliveryState.DEAD_LETTERED,
    }
    assert await store.dead_letters(event_id=event.event_id, subscription="s") == [entry]
    assert len(await store.dead_letters(limit=1)) == 1
    assert await store.take_dead_letters(subscription="s") == [entry]
    assert [e.subscription for e in await store.dead_letters()] == ["t"]
    assert await store.take_dead_letters() != []
    assert await store.dead_letters() == []


async def test_dead_letters_newest_first(make_store: StoreFactory) -> None:
    store = make_store()
    await store.open()
    events = [Event(event_type="a") for _ in range(3)]
    for event in events:
        await store.add_dead_letter(
            DeadLetter(event=event, subscription="s", attempts=1, errors=[])
        )
    assert [e.event.event_id for e in await store.dead_letters()] == [
        e.event_id for e in reversed(events)
    ]


async def test_step_results(make_store: StoreFactory) -> None:
    store = make_store()
    await store.open()
    assert await store.step_result("s", "e1", "classify") is None
    await store.record_step("s", "e1", "classify", '{"label": "bug"}')
    await store.record_step("s", "e1", "reply", '"hello \\u0000 \u00e9"')
    assert await store.step_result("s", "e1", "classify") == '{"label": "bug"}'
    assert await store.step_result("s", "e1", "reply") == '"hello \\u0000 \u00e9"'
    assert await store.step_result("other", "e1", "classify") is None
    assert await store.step_result("s", "e2", "classify") is None
    await store.record_step("s", "e1", "classify", '{"label": "outage"}')  # replaced
    assert await store.step_result("s", "e1", "classify") == '{"label": "outage"}'
    await store.mark_done("s", "e1")  # done marks leave steps alone
    assert await store.step_result("s", "e1", "reply") == '"hello \\u0000 \u00e9"'


async def test_spend_adds_up(make_store: StoreFactory) -> None:
    store = make_store()
    await store.open()
    assert await store.add_spend("s", "e1") == Spend(0, 0.0)
    assert await store.add_spend("s", "e1", tokens=100, seconds=0.5) == Spend(100, 0.5)
    await asyncio.gather(*(store.add_spend("s", "e1", tokens=10, seconds=0.25) for _ in range(8)))
    spend = await store.add_spend("s", "e1")
    assert spend.tokens == 180
    assert spend.seconds == pytest.approx(2.5)
    assert await store.add_spend("other", "e1") == Spend(0, 0.0)
    assert await store.add_spend("s", "e2") == Spend(0, 0.0)


async def test_taking_a_dead_letter_forgets_spend_and_keeps_steps(
    make_store: StoreFactory,
) -> None:
    store = make_store()
    await store.open()
    event = Event(event_type="a")
    await store.record_step("s", event.event_id, "classify", "1")
    await store.add_spend("s", event.event_id, tokens=50, seconds=1.0)
    await store.add_spend("t", event.event_id, tokens=7)
    await store.add_dead_letter(DeadLetter(event=event, subscription="s", attempts=1, errors=[]))
    assert await store.add_spend("s", event.event_id) == Spend(50, 1.0)
    assert len(await store.take_dead_letters(event_id=event.event_id)) == 1
    assert await store.add_spend("s", event.event_id) == Spend(0, 0.0)  # a fresh budget
    assert await store.add_spend("t", event.event_id) == Spend(7, 0.0)  # not its dead letter
    assert await store.step_result("s", event.event_id, "classify") == "1"


async def test_step_results_expire_unless_dead_lettered(make_store: StoreFactory) -> None:
    store = make_store(window=0.0)
    await store.open()
    dead = Event(event_type="a")
    await store.add_dead_letter(DeadLetter(event=dead, subscription="s", attempts=1, errors=[]))
    await store.record_step("s", dead.event_id, "classify", "1")
    await store.record_step("s", "gone", "classify", "2")
    for i in range(1001):  # past every store's pruning interval
        await store.add_spend("s", f"filler{i}", tokens=1)
    assert await store.step_result("s", "gone", "classify") is None
    assert await store.step_result("s", dead.event_id, "classify") == "1"  # a replay finds it


async def test_memory_store_window_and_bound() -> None:
    store = MemoryStore(window=3600, max_entries=1000)
    for i in range(2500):
        await store.mark_done("s", f"e{i}")
    assert not await store.is_done("s", "e0")
    assert await store.is_done("s", "e2499")
    assert await store.is_done("s", "e2000")  # the last max_entries // 2 are always kept
    assert len(store._done["s"]) <= 1000 + 64


async def test_memory_store_marks_expire_after_the_window() -> None:
    store = MemoryStore(window=0.0)
    await store.mark_done("s", "first")
    for i in range(200):  # two generations on, "first" is gone
        await store.mark_done("s", f"e{i}")
    assert not await store.is_done("s", "first")
    assert await store.is_done("s", "e199")


async def test_sqlite_store_survives_a_restart(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/nerve.db"

    def make() -> EventBus:
        bus = EventBus("memory://", store=url)

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

    again = make()  # a new process would see the same file
    entry = await again.dlq.get(event.event_id)
    assert entry is not None
    assert entry.errors[-1].message == "still broken"
    status = await again.status(event.event_id)
    assert status.subscriptions == {
        "fails": DeliveryState.DEAD_LETTERED,
        "works": DeliveryState.DONE,
    }
    await again.stop()


async def test_sqlite_url_forms(tmp_path: Path) -> None:
    from nerve.exceptions import ConfigurationError
    from nerve.sqlitedb import sqlite_path

    assert sqlite_path("sqlite:///rel/x.db") == "rel/x.db"
    assert sqlite_path("sqlite:////abs/x.db") == "/abs/x.db"
    with pytest.raises(ConfigurationError, match="sqlite:///relative"):
        sqlite_path("sqlite://x.db")


async def test_dead_letters_can_be_read_after_the_bus_stopped(tmp_path: Path) -> None:
    bus = EventBus(store=f"sqlite:///{tmp_path}/after.db")

    @bus.on("a.b", name="fails", retries=0)
    async def fails(event: Event) -> None:
        raise RuntimeError("no")

    async with bus:
        event = await bus.publish(Event(event_type="a.b"))
    entry = await bus.dlq.get(event.event_id)
    assert entry is not None
    assert entry.errors[0].message == "no"
    assert (await bus.status(event.event_id)).subscriptions == {
        "fails": DeliveryState.DEAD_LETTERED
    }
    await bus.stop()  # closes the store it reopened
