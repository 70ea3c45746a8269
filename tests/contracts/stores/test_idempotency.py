"""Contracts ``PublishRecords`` and ``IdempotencyStore``: publish records, done marks,
the failures of attempts that will be retried, and the states they add up to."""

from __future__ import annotations

from nerve import DeliveryState, Event
from tests.contracts.stores import StoreFactory, error


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


async def test_done_marks_in_batches(make_store: StoreFactory) -> None:
    store = make_store()
    await store.open()
    await store.add_failure("s", "a", error(1))
    await store.mark_done_many({"s": ["a", "b"], "t": ["a"], "u": []})
    assert await store.done_among("s", ["a", "b", "c"]) == {"a", "b"}
    assert await store.done_among("t", ["a", "b"]) == {"a"}
    assert await store.done_among("u", ["a"]) == set()
    assert await store.done_among("s", []) == set()
    assert await store.take_failures("s", "a") == []


async def test_failures_are_kept_per_pair(make_store: StoreFactory) -> None:
    store = make_store()
    await store.open()
    await store.add_failure("s", "e1", error(1, "one"))
    await store.add_failure("s", "e1", error(2, "two"))
    await store.add_failure("t", "e1", error(1, "other"))
    assert await store.states("e1") == {"s": DeliveryState.FAILED, "t": DeliveryState.FAILED}
    assert [e.message for e in await store.take_failures("s", "e1")] == ["one", "two"]
    assert await store.take_failures("s", "e1") == []
    assert await store.states("e1") == {"t": DeliveryState.FAILED}


async def test_publish_records(make_store: StoreFactory) -> None:
    store = make_store()
    await store.open()
    one, two, three = Event(event_type="a.b"), Event(event_type="c.d"), Event(event_type="e")
    await store.record_published(one)
    await store.record_published_many([two, three])
    await store.record_published_many([])
    assert await store.event_type(one.event_id) == "a.b"
    assert await store.event_type(two.event_id) == "c.d"
    assert await store.event_type(three.event_id) == "e"
    assert await store.event_type("never-published") is None
