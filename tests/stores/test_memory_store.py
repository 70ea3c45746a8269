"""The memory store's own bounds: marks kept for the window and at most about
``max_entries``, a history of at most ``max_history`` events."""

from __future__ import annotations

from nerve import Event
from nerve.stores.memory import MemoryStore


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


async def test_the_memory_store_keeps_a_bounded_history() -> None:
    store = MemoryStore(max_history=3)
    events = [Event(event_type=f"m.{n}") for n in range(5)]
    await store.record_history([(e, 1.0) for e in events], [])
    records, _ = await store.history_after(None, 10)
    assert [r.event.event_type for r in records] == ["m.2", "m.3", "m.4"]
