"""The event log through ``bus.history``: events, outcomes, chains, the feed, status."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from nerve import Backoff, DeliveryState, Event, EventBus, Settings
from nerve.records import EventRecord, TraceNode
from tests.conftest import drop_redis_keys

FAST = Backoff(initial=0.01, maximum=0.02)


@pytest.fixture(params=["memory", "sqlite", "redis"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "memory":
        yield "memory://"
    elif request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/bus.db?lease=2&poll=0.01"
    else:
        found = f"redis://127.0.0.1:6379/0?prefix=hist-{uuid.uuid4().hex[:12]}&lease=2"
        yield found
        drop_redis_keys(found)


def make(url: str, **settings: object) -> EventBus:
    return EventBus(url, settings=Settings(history=True, shutdown_grace=5.0, **settings))  # type: ignore[arg-type]


def chain_bus(url: str) -> EventBus:
    bus = make(url)

    @bus.on("agent.a", name="a")
    async def a(event: Event) -> None:
        await bus.publish(Event(event_type="agent.b"))
        await bus.publish(Event(event_type="agent.b2"))

    @bus.on("agent.b", name="b")
    async def b(event: Event) -> None:
        await bus.publish(Event(event_type="agent.c"))

    @bus.on("agent.#", name="audit")
    async def audit(event: Event) -> None:
        return None

    return bus


def shape(nodes: list[TraceNode]) -> list[object]:
    return [(n.record.event.event_type, shape(n.children)) for n in nodes]


async def test_an_event_and_its_outcomes(url: str) -> None:
    bus = make(url)
    attempts = 0

    @bus.on("job.run", name="flaky", retries=2, backoff=FAST)
    async def flaky(event: Event) -> None:
        nonlocal attempts
        attempts += 1
        if attempts < 2:
            raise RuntimeError("first time")

    @bus.on("job.run", name="broken", retries=0)
    async def broken(event: Event) -> None:
        raise ValueError("never")

    async with bus:
        event = await bus.publish(Event(event_type="job.run", payload={"n": 1}))
        await bus.join(10)

        async def logged() -> EventRecord | None:
            return await bus.history.event(event.event_id)

        record = await logged()
        assert record is not None
        assert record.event == event
        flaky_outcomes = [
            (o.attempt, o.state, o.error_type, o.error_message)
            for o in record.outcomes
            if o.subscription == "flaky"
        ]
        assert flaky_outcomes == [
            (1, "retrying", "RuntimeError", "first time"),
            (2, "done", None, None),
        ]
        assert record.final_states() == {"flaky": "done", "broken": "dead_lettered"}
        assert all(o.seconds >= 0 for o in record.outcomes)
        assert record.outcomes[0].ended_at >= record.published_at
        assert await bus.history.event("nope") is None
        # pydantic all the way: the dashboard serialises it as is
        assert EventRecord.model_validate_json(record.model_dump_json()) == record


async def test_trace_is_the_chain_as_a_tree(url: str) -> None:
    bus = chain_bus(url)
    async with bus:
        root = await bus.publish(Event(event_type="agent.a"))
        await bus.join(10)
        trace = await bus.history.trace(root.correlation_id)
        assert await bus.history.trace("nope") == []
    assert shape(trace) == [("agent.a", [("agent.b", [("agent.c", [])]), ("agent.b2", [])])]
    leaf = trace[0].children[0].children[0].record
    assert leaf.final_states() == {"audit": "done"}
    assert trace[0].record.final_states() == {"a": "done", "audit": "done"}


async def test_recent_follows_a_cursor_with_a_pattern(url: str) -> None:
    bus = make(url)
    async with bus:
        assert await bus.history.recent() == ([], None)
        await bus.publish_many([Event(event_type=f"feed.{n % 2}.x") for n in range(6)])
        records, cursor = await bus.history.recent()
        assert [r.event.event_type for r in records] == ["feed.0.x", "feed.1.x"] * 3
        _, end = await bus.history.recent(limit=0)
        assert end == cursor
        assert await bus.history.recent(cursor) == ([], cursor)
        await bus.publish_many([Event(event_type=f"feed.{n % 2}.y") for n in range(6)])
        odd, nxt = await bus.history.recent(cursor, pattern="feed.1.*", limit=2)
        assert [r.event.event_type for r in odd] == ["feed.1.y"] * 2
        rest, last = await bus.history.recent(nxt, pattern="feed.1.*")
        assert [r.event.event_type for r in rest] == ["feed.1.y"]
        assert await bus.history.recent(last) == ([], last)


async def test_a_publisher_only_bus_knows_every_declared_subscription(url: str) -> None:
    if url == "memory://":
        pytest.skip("an in-process store is not shared")
    worker = make(url)

    @worker.on("order.placed", name="billing")
    async def billing(event: Event) -> None:
        return None

    @worker.on("order.#", name="audit")
    async def audit(event: Event) -> None:
        return None

    await worker.start()
    await worker.stop()  # declared, then gone: nothing handles what comes next

    publisher = make(url)
    event = await publisher.publish(Event(event_type="order.placed"))
    status = await publisher.status(event.event_id)
    assert status.subscriptions == {
        "billing": DeliveryState.PENDING,
        "audit": DeliveryState.PENDING,
    }
    assert await publisher.history.subscriptions() == {
        "audit": "order.#",
        "billing": "order.placed",
    }
    await publisher.stop()

    # A worker started later handles it; the publisher sees it done.
    later = make(url)
    later.subscribe("order.placed", billing, name="billing")
    later.subscribe("order.#", audit, name="audit")
    async with later:
        await later.join(10)
    status = await publisher.status(event.event_id)
    assert status.subscriptions == {"billing": DeliveryState.DONE, "audit": DeliveryState.DONE}
    assert status.settled
    record = await publisher.history.event(event.event_id)
    assert record is not None
    assert record.final_states() == {"billing": "done", "audit": "done"}
    await publisher.stop()  # closes the store that status() reopened


async def test_history_can_be_turned_off(url: str) -> None:
    bus = EventBus(url, settings=Settings(history=False))
    event = await bus.publish(Event(event_type="quiet.please"))
    assert await bus.history.event(event.event_id) is None
    await bus.stop()


async def test_history_is_off_by_default_in_process_only(tmp_path: Path) -> None:
    memory = EventBus("memory://")
    event = await memory.publish(Event(event_type="a.b"))
    assert await memory.history.event(event.event_id) is None
    await memory.stop()
    sqlite = EventBus(f"sqlite:///{tmp_path}/x.db")
    event = await sqlite.publish(Event(event_type="a.b"))
    await sqlite.stop()  # the log's buffer is written at stop
    reopened = EventBus(f"sqlite:///{tmp_path}/x.db")
    assert await reopened.history.event(event.event_id) is not None
    await reopened.stop()
