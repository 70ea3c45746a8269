"""Contract ``StepStore``: step results and counters, kept a window after their last
write and while the pair has a dead letter; taking the dead letter forgets the counters."""

from __future__ import annotations

import asyncio

import pytest

from nerve import DeadLetter, Event
from nerve.stores.memory import MemoryStore
from tests.contracts.stores import StoreFactory


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


async def test_counters_add_up(make_store: StoreFactory) -> None:
    store = make_store()
    await store.open()
    assert await store.add_to("s", "e1", "spend", {}) == {}
    assert await store.add_to("s", "e1", "spend", {"tokens": 100, "seconds": 0.5}) == {
        "tokens": 100.0,
        "seconds": 0.5,
    }
    await asyncio.gather(
        *(store.add_to("s", "e1", "spend", {"tokens": 10, "seconds": 0.25}) for _ in range(8))
    )
    spend = await store.add_to("s", "e1", "spend", {})
    assert spend["tokens"] == 180
    assert spend["seconds"] == pytest.approx(2.5)
    assert await store.add_to("other", "e1", "spend", {}) == {}
    assert await store.add_to("s", "e2", "spend", {}) == {}
    assert await store.add_to("s", "e1", "starts", {}) == {}  # counters are apart


async def test_a_counter_returns_all_its_totals(make_store: StoreFactory) -> None:
    store = make_store()
    await store.open()
    assert await store.add_to("s", "e1", "c", {"a": 1}) == {"a": 1.0}
    assert await store.add_to("s", "e1", "c", {"b": 2.5}) == {"a": 1.0, "b": 2.5}
    assert await store.add_to("s", "e1", "c", {"a": -1, "b": 0}) == {"a": 0.0, "b": 2.5}
    assert await store.add_to("s", "e1", "c", {}) == {"a": 0.0, "b": 2.5}
    assert await store.add_to("s", "e1", "d", {"a": 7}) == {"a": 7.0}
    assert await store.add_to("s", "e1", "c", {}) == {"a": 0.0, "b": 2.5}


async def test_concurrent_adds_are_all_counted(make_store: StoreFactory) -> None:
    first = make_store()
    # Two stores on one database stand for two processes (in memory, one store is all).
    second = first if isinstance(first, MemoryStore) else make_store()
    await first.open()
    await second.open()
    adds = [
        store.add_to("s", "e1", "nerve.starts", {"starts": 1, "half": 0.5})
        for _ in range(25)
        for store in (first, second)
    ]
    totals = await asyncio.gather(*adds)
    assert sorted(t["starts"] for t in totals) == [float(n) for n in range(1, 51)]
    assert await second.add_to("s", "e1", "nerve.starts", {}) == {"starts": 50.0, "half": 25.0}


async def test_reading_a_counter_changes_nothing(make_store: StoreFactory) -> None:
    store = make_store()
    await store.open()
    assert await store.add_to("s", "e1", "c", {}) == {}
    assert await store.add_to("s", "e1", "c", {}) == {}
    assert await store.add_to("s", "e1", "c", {"a": 1}) == {"a": 1.0}
    for _ in range(3):
        assert await store.add_to("s", "e1", "c", {}) == {"a": 1.0}


async def test_taking_a_dead_letter_forgets_counters_and_keeps_steps(
    make_store: StoreFactory,
) -> None:
    store = make_store()
    await store.open()
    event = Event(event_type="a")
    await store.record_step("s", event.event_id, "classify", "1")
    await store.add_to("s", event.event_id, "spend", {"tokens": 50, "seconds": 1.0})
    await store.add_to("s", event.event_id, "starts", {"starts": 2})
    await store.add_to("t", event.event_id, "spend", {"tokens": 7})
    await store.add_dead_letter(DeadLetter(event=event, subscription="s", attempts=1, errors=[]))
    assert await store.add_to("s", event.event_id, "spend", {}) == {
        "tokens": 50.0,
        "seconds": 1.0,
    }
    assert len(await store.take_dead_letters(event_id=event.event_id)) == 1
    assert await store.add_to("s", event.event_id, "spend", {}) == {}  # a fresh budget
    assert await store.add_to("s", event.event_id, "starts", {}) == {}  # every counter
    assert await store.add_to("t", event.event_id, "spend", {}) == {"tokens": 7.0}  # not its
    assert await store.step_result("s", event.event_id, "classify") == "1"


async def test_purging_by_subscription_forgets_only_its_counters(
    make_store: StoreFactory,
) -> None:
    store = make_store()
    await store.open()
    event = Event(event_type="a")
    for sub in ("s", "t"):
        await store.add_dead_letter(
            DeadLetter(event=event, subscription=sub, attempts=1, errors=[])
        )
        await store.add_to(sub, event.event_id, "starts", {"starts": 3})
    assert [e.subscription for e in await store.take_dead_letters(subscription="t")] == ["t"]
    assert await store.add_to("t", event.event_id, "starts", {}) == {}
    assert await store.add_to("s", event.event_id, "starts", {}) == {"starts": 3.0}


async def test_step_results_expire_unless_dead_lettered(make_store: StoreFactory) -> None:
    store = make_store(window=0.0)
    await store.open()
    dead = Event(event_type="a")
    await store.add_dead_letter(DeadLetter(event=dead, subscription="s", attempts=1, errors=[]))
    await store.record_step("s", dead.event_id, "classify", "1")
    await store.record_step("s", "gone", "classify", "2")
    for i in range(1001):  # past every store's pruning interval
        await store.add_to("s", f"filler{i}", "spend", {"tokens": 1})
    assert await store.step_result("s", "gone", "classify") is None
    assert await store.step_result("s", dead.event_id, "classify") == "1"  # a replay finds it


async def test_counters_expire_unless_dead_lettered(make_store: StoreFactory) -> None:
    store = make_store(window=0.0)
    await store.open()
    dead = Event(event_type="a")
    await store.add_dead_letter(DeadLetter(event=dead, subscription="s", attempts=1, errors=[]))
    await store.add_to("s", dead.event_id, "starts", {"starts": 1})
    await store.add_to("s", "gone", "starts", {"starts": 1})
    for i in range(1001):  # past every store's pruning interval
        await store.record_step("s", f"filler{i}", "classify", "0")
    assert await store.add_to("s", "gone", "starts", {}) == {}
    assert await store.add_to("s", dead.event_id, "starts", {}) == {"starts": 1.0}  # kept
