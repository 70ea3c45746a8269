"""Store contract, run against every store; the SQLite store survives a restart."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from nerve import AttemptError, DeadLetter, DeliveryState, Event, EventBus, Store
from nerve.records import Spend
from nerve.stores.base import DEFAULT_HISTORY_RETENTION, DEFAULT_WINDOW
from nerve.stores.memory import MemoryStore
from nerve.stores.postgres import PostgresStore
from nerve.stores.redis import LOG_EVENT_KEY, RedisStore
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
    from nerve.connections.sqlite import sqlite_path
    from nerve.exceptions import ConfigurationError

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


# the event log (nerve.history)


def chain_of_three() -> list[Event]:
    root = Event(event_type="agent.a", payload={"step": 1})
    middle = Event(
        event_type="agent.b",
        payload={"step": 2, "nul": "a\x00b"},
        causation_id=root.event_id,
        correlation_id=root.correlation_id,
    )
    leaf = Event(
        event_type="agent.c",
        payload={"step": 3},
        causation_id=middle.event_id,
        correlation_id=root.correlation_id,
    )
    return [root, middle, leaf]


async def test_history_records_events_in_full_with_their_outcomes(
    make_store: StoreFactory,
) -> None:
    store = make_store()
    await store.open()
    root, middle, leaf = chain_of_three()
    other = Event(event_type="other.x")
    await store.record_history([(root, 100.0), (middle, 100.5)], [])
    await store.record_history(
        [(leaf, 101.0), (other, 101.5), (root, 999.0)],  # root again: kept as first logged
        [
            ("s1", root.event_id, 1, "retrying", 100.2, 0.01, "RuntimeError", "boom\x00"),
            ("s1", root.event_id, 2, "done", 100.4, 0.02, None, None),
            ("s2", middle.event_id, 1, "dead_lettered", 100.9, 0.5, "x.Reject", "no"),
        ],
    )
    record = await store.history_event(root.event_id)
    assert record is not None
    assert record.event == root
    assert record.published_at.timestamp() == 100.0
    assert [(o.subscription, o.attempt, o.state) for o in record.outcomes] == [
        ("s1", 1, "retrying"),
        ("s1", 2, "done"),
    ]
    first = record.outcomes[0]
    assert (first.error_type, first.error_message.replace("\ufffd", "\x00")) == (  # type: ignore[union-attr]
        "RuntimeError",
        "boom\x00",
    )
    assert first.seconds == 0.01
    assert first.ended_at.timestamp() == 100.2
    assert record.outcomes[1].error_type is None
    assert record.final_states() == {"s1": "done"}
    found = await store.history_event(middle.event_id)
    assert found is not None
    assert found.event.payload == {"step": 2, "nul": "a\x00b"}
    assert found.final_states() == {"s2": "dead_lettered"}
    assert await store.history_event("nope") is None

    chain = await store.history_chain(root.correlation_id)
    assert [r.event.event_id for r in chain] == [root.event_id, middle.event_id, leaf.event_id]
    assert await store.history_chain("nope") == []


async def test_history_feed_follows_a_cursor(make_store: StoreFactory) -> None:
    store = make_store()
    await store.open()
    assert await store.history_after(None, 10) == ([], None)
    events = [Event(event_type=f"feed.{n}") for n in range(5)]
    await store.record_history([(e, 100.0 + n) for n, e in enumerate(events)], [])

    newest, cursor = await store.history_after(None, 2)
    assert [r.event.event_type for r in newest] == ["feed.3", "feed.4"]
    assert cursor is not None
    assert cursor == newest[-1].cursor
    assert await store.history_after(cursor, 10) == ([], cursor)  # nothing new
    _, end = await store.history_after(None, 0)  # no records: only where the log ends
    assert end == cursor

    first, after_two = await store.history_after(None, 5)
    assert [r.event.event_type for r in first] == [f"feed.{n}" for n in range(5)]
    page, nxt = await store.history_after(first[1].cursor, 2)
    assert [r.event.event_type for r in page] == ["feed.2", "feed.3"]
    assert nxt == page[-1].cursor

    later = Event(event_type="feed.later")
    await store.record_history(
        [(later, 200.0)], [("s", later.event_id, 1, "done", 200.1, 0.0, None, None)]
    )
    new, end2 = await store.history_after(end, 10)
    assert [(r.event.event_type, r.final_states()) for r in new] == [("feed.later", {"s": "done"})]
    assert end2 == new[0].cursor
    assert after_two == end


async def test_history_is_trimmed_by_age(make_store: StoreFactory) -> None:
    store = make_store()
    await store.open()
    old, new = Event(event_type="t.old"), Event(event_type="t.new")
    now = time.time()
    await store.record_history(
        [(old, now - 3600), (new, now)],
        [("s", old.event_id, 1, "done", now - 3599, 0.0, None, None)],
    )
    await store.trim_history(now - 60)
    if isinstance(store, RedisStore):
        # Keys expire by TTL (a retention from their write); the feed is trimmed by the
        # time of logging (its ids), which for both events here is now.
        key = LOG_EVENT_KEY.format(prefix=store.prefix, event_id=old.event_id)
        assert 0 < await store._client().pttl(key) <= DEFAULT_HISTORY_RETENTION * 1000
        await store.trim_history(now + 60)
        assert await store.history_after(None, 10) == ([], None)
        return
    assert await store.history_event(old.event_id) is None
    assert await store.history_event(new.event_id) is not None
    records, _ = await store.history_after(None, 10)
    assert [r.event.event_type for r in records] == ["t.new"]


async def test_the_memory_store_keeps_a_bounded_history() -> None:
    store = MemoryStore(max_history=3)
    events = [Event(event_type=f"m.{n}") for n in range(5)]
    await store.record_history([(e, 1.0) for e in events], [])
    records, _ = await store.history_after(None, 10)
    assert [r.event.event_type for r in records] == ["m.2", "m.3", "m.4"]


async def test_declared_subscriptions_are_shared(make_store: StoreFactory) -> None:
    first, second = make_store(), make_store()
    await first.open()
    await second.open()
    assert await first.subscriptions() == {}
    await first.declare_subscriptions({"b": "x.*", "a": "y.#"})
    await first.declare_subscriptions({"b": "x.z"})  # re-declared with a new pattern
    if isinstance(first, MemoryStore):  # in-process: each store is its own
        assert await first.subscriptions() == {"a": "y.#", "b": "x.z"}
        return
    assert await second.subscriptions() == {"a": "y.#", "b": "x.z"}
