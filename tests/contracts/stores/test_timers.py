"""Contract ``Timers``: add once (or replace), claim due timers with a lease, delete, list."""

from __future__ import annotations

import asyncio

from nerve.records import Timer
from nerve.stores.memory import MemoryStore
from tests.contracts.stores import StoreFactory

NOW = 1_900_000_000.0


def timer(timer_id: str, due: float, body: str = "{}") -> Timer:
    return Timer(timer_id=timer_id, due=due, body=body)


async def test_add_is_create_if_absent_unless_replacing(make_store: StoreFactory) -> None:
    store = make_store()
    await store.open()
    assert await store.add_timer(timer("event:a", NOW + 10, '{"v": 1}'))
    assert not await store.add_timer(timer("event:a", NOW + 20, '{"v": 2}'))
    found = await store.timer("event:a")
    assert found is not None
    assert found.due == NOW + 10
    assert found.body == '{"v": 1}'
    assert await store.add_timer(timer("event:a", NOW + 30, '{"v": 3}'), replace=True)
    found = await store.timer("event:a")
    assert found is not None
    assert found.due == NOW + 30
    assert found.body == '{"v": 3}'
    assert await store.timer("event:missing") is None


async def test_concurrent_adds_have_one_winner(make_store: StoreFactory) -> None:
    store = make_store()
    await store.open()
    won = await asyncio.gather(
        *(store.add_timer(timer("wait:x:answer", NOW, f'{{"n": {i}}}')) for i in range(10))
    )
    assert sum(won) == 1
    found = await store.timer("wait:x:answer")
    assert found is not None
    assert found.body == f'{{"n": {won.index(True)}}}'


async def test_claim_takes_due_timers_earliest_first_and_leases_them(
    make_store: StoreFactory,
) -> None:
    store = make_store()
    await store.open()
    for i, due in enumerate([NOW + 5, NOW - 1, NOW - 3, NOW + 100]):
        await store.add_timer(timer(f"t:{i}", due, f'"{i}"'))
    claimed = await store.claim_timers(NOW, lease=30, limit=10)
    assert [t.timer_id for t in claimed] == ["t:2", "t:1"]
    assert [t.due for t in claimed] == [NOW - 3, NOW - 1]  # as they were
    assert [t.body for t in claimed] == ['"2"', '"1"']
    assert await store.claim_timers(NOW, lease=30, limit=10) == []  # leased
    leased = await store.timer("t:1")
    assert leased is not None
    assert leased.due == NOW + 30
    # the lease ends: it comes back (its claimer died), with t:0 now due too
    again = await store.claim_timers(NOW + 31, lease=30, limit=10)
    assert [t.timer_id for t in again] == ["t:0", "t:2", "t:1"]


async def test_claim_respects_the_limit(make_store: StoreFactory) -> None:
    store = make_store()
    await store.open()
    for i in range(5):
        await store.add_timer(timer(f"t:{i}", NOW - 10 + i))
    first = await store.claim_timers(NOW, lease=30, limit=2)
    rest = await store.claim_timers(NOW, lease=30, limit=10)
    assert [t.timer_id for t in first] == ["t:0", "t:1"]
    assert [t.timer_id for t in rest] == ["t:2", "t:3", "t:4"]


async def test_concurrent_claims_never_share_a_timer(make_store: StoreFactory) -> None:
    one = make_store()
    two = one if isinstance(one, MemoryStore) else make_store()  # two processes' stores
    await one.open()
    await two.open()
    for i in range(40):
        await one.add_timer(timer(f"t:{i:02d}", NOW - 40 + i))
    results = await asyncio.gather(
        *(s.claim_timers(NOW, lease=30, limit=7) for s in (one, two, one, two, one, two, one))
    )
    ids = [t.timer_id for batch in results for t in batch]
    assert len(ids) == len(set(ids)) == 40


async def test_delete_and_list(make_store: StoreFactory) -> None:
    store = make_store()
    await store.open()
    await store.add_timer(timer("event:b", NOW + 2))
    await store.add_timer(timer("event:a", NOW + 1))
    await store.add_timer(timer("schedule:s", NOW))
    assert [t.timer_id for t in await store.timers("event:")] == ["event:a", "event:b"]
    assert [t.timer_id for t in await store.timers()] == ["schedule:s", "event:a", "event:b"]
    assert [t.timer_id for t in await store.timers(limit=1)] == ["schedule:s"]
    assert await store.delete_timer("event:a")
    assert not await store.delete_timer("event:a")
    assert await store.timer("event:a") is None
    assert await store.claim_timers(NOW + 10, lease=30, limit=10) != []
    assert [t.timer_id for t in await store.timers("event:")] == ["event:b"]
