"""The Redis store's keys for timers, waits, the log by type, slots and rates: what the
contracts cannot see (TTLs, indexes emptied), read straight from Redis."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator

import pytest

from nerve import Event
from nerve.records import DeadLetter, Timer
from nerve.stores.redis import LOG_TYPE_KEY, STEPS_KEY, RedisStore
from nerve.stores.redis_limits import RATE_KEY, SLOTS_KEY
from nerve.stores.redis_waits import TIMERS_KEY, WAIT_SHAPES_KEY
from tests.conftest import drop_redis_keys
from tests.contracts.stores import error
from tests.contracts.stores.test_waits import wait


@pytest.fixture
async def store() -> AsyncIterator[RedisStore]:
    url = f"redis://127.0.0.1:6379/0?prefix=store-{uuid.uuid4().hex[:12]}"
    made = RedisStore(url, window=60)
    await made.open()
    yield made
    await made.close()
    drop_redis_keys(url)


async def test_steps_get_a_window_again_when_the_last_wait_goes(store: RedisStore) -> None:
    steps = STEPS_KEY.format(prefix=store.prefix, event_id="run-1")
    await store.add_wait(wait("w1", {"payload.refund_id": 7}))
    await store.add_wait(wait("w2", {"payload.refund_id": 8}))
    await store.record_step("refunds", "run-1", "draft", '"text"')
    assert await store._client().pttl(steps) == -1  # kept for good
    await store.remove_wait("w1")
    assert await store._client().pttl(steps) == -1  # w2 still waits
    await store.remove_wait("w2")
    assert 0 < await store._client().pttl(steps) <= 60_000


async def test_a_dead_letter_keeps_the_steps_of_a_run_whose_wait_goes(store: RedisStore) -> None:
    steps = STEPS_KEY.format(prefix=store.prefix, event_id="run-1")
    await store.add_wait(wait("w1", {"payload.refund_id": 7}))
    await store.record_step("refunds", "run-1", "draft", '"text"')
    run = wait("w1", {}).event
    await store.add_dead_letter(
        DeadLetter(event=run, subscription="refunds", attempts=1, errors=[error(1)])
    )
    await store.remove_wait("w1")
    assert await store._client().pttl(steps) == -1
    await store.take_dead_letters(event_id="run-1")
    assert 0 < await store._client().pttl(steps) <= 60_000


async def test_a_shape_without_waits_is_forgotten(store: RedisStore) -> None:
    shapes = WAIT_SHAPES_KEY.format(prefix=store.prefix, event_type="refund.approval.decided")
    await store.add_wait(wait("w1", {"payload.refund_id": 7}))
    await store.add_wait(wait("w2", {"payload.refund_id": 8}))
    await store.add_wait(wait("w1", {"correlation_id": "c"}))  # replaced: another shape
    assert await store._client().hgetall(shapes) == {
        '["payload.refund_id"]': "1",
        '["correlation_id"]': "1",
    }
    await store.remove_wait("w2")
    await store.remove_wait("w1")
    assert await store._client().exists(shapes) == 0


async def test_trimming_the_log_trims_its_index_by_type(store: RedisStore) -> None:
    now = time.time()
    old, new = Event(event_type="t.a"), Event(event_type="t.a")
    await store.record_history([(old, now - 3600), (new, now)], [])
    await store.trim_history(now - 60)
    key = LOG_TYPE_KEY.format(prefix=store.prefix, event_type="t.a")
    assert await store._client().zrange(key, 0, -1) == [new.event_id]
    assert await store._client().pttl(key) > 0
    found = await store.history_of_type("t.a", 0, 10)
    assert [r.event.event_id for r in found] == [new.event_id]


async def test_timers_are_listed_by_prefix_across_pages(store: RedisStore) -> None:
    for i in range(1200):
        kind = "event" if i % 3 else "schedule"
        await store.add_timer(Timer(timer_id=f"{kind}:{i:04d}", due=1000.0 + i, body="{}"))
    schedules = await store.timers("schedule:", limit=500)
    assert [t.timer_id for t in schedules] == [f"schedule:{i:04d}" for i in range(0, 1200, 3)]
    assert [t.due for t in schedules[:2]] == [1000.0, 1003.0]
    assert len(await store.timers(limit=1000)) == 1000


async def test_waits_on_any_characters_are_found_and_removed(store: RedisStore) -> None:
    awaited = "commande_recue.v-2"
    match = {"payload.nom": "café ☕ 😀 \x00 :*?[", "metadata.a:b": "1"}
    await store.add_wait(wait("w1", match, event_type=awaited))
    event = Event(event_type=awaited, payload={"nom": match["payload.nom"]}, metadata={"a:b": "1"})
    assert [w.match for w, _ in await store.waits_for([event])] == [match]
    assert await store.remove_wait("w1")
    assert await store.waits_for([event]) == []
    shapes = WAIT_SHAPES_KEY.format(prefix=store.prefix, event_type=awaited)
    assert await store._client().exists(shapes) == 0


async def test_a_replaced_claimed_or_deleted_timer_leaves_one_entry_or_none(
    store: RedisStore,
) -> None:
    client = store._client()
    key = TIMERS_KEY.format(prefix=store.prefix)
    await store.add_timer(Timer(timer_id="t:a", due=1.0, body="{}"))
    await store.add_timer(Timer(timer_id="t:a", due=2.0, body="{}"), replace=True)
    assert [t.timer_id for t in await store.claim_timers(5.0, lease=10, limit=5)] == ["t:a"]
    assert await client.zrange(key, 0, -1, withscores=True) == [("0000000000000003:t:a", 15.0)]
    assert await store.delete_timer("t:a")
    assert await client.exists(key) == 0


async def test_slot_holders_expire_a_minute_after_the_last_lease(store: RedisStore) -> None:
    client = store._client()
    key = SLOTS_KEY.format(prefix=store.prefix, limiter="llm", key="acme")
    now = time.time()
    assert await store.take_slot("llm", "acme", "old", limit=2, lease=5, now=now - 10)
    assert await store.take_slot("llm", "acme", "new", limit=2, lease=30, now=now)
    assert await client.zrange(key, 0, -1) == ["new"]  # the ended lease was dropped
    assert 89_000 < await client.pttl(key) <= 90_000
    await store.free_slot("llm", "acme", "new")
    assert await client.exists(key) == 0


async def test_a_rate_state_expires_a_minute_after_its_tat(store: RedisStore) -> None:
    client = store._client()
    key = RATE_KEY.format(prefix=store.prefix, limiter="tpm", key="m")
    now = time.time()
    assert await store.take_rate("tpm", "m", interval=0.01, burst=1000, cost=500, now=now) == 0
    assert float(await client.get(key) or 0) == pytest.approx(now + 5.0, abs=1e-6)
    assert 64_000 < await client.pttl(key) <= 65_000
    assert await store.take_rate("tpm", "m", interval=0.01, burst=1000, cost=600, now=now) > 0
    assert float(await client.get(key) or 0) == pytest.approx(now + 5.0, abs=1e-6)  # refused
    await store.block_rate("tpm", "m", until=now + 100, burst=1000, interval=0.01)
    assert 169_000 < await client.pttl(key) <= 170_000


async def test_limiters_and_keys_with_colons_stay_apart(store: RedisStore) -> None:
    now = time.time()
    assert await store.take_slot("a:b", "c", "h1", limit=1, lease=30, now=now)
    assert await store.take_slot("a", "b:c", "h2", limit=1, lease=30, now=now)
    assert await store.take_rate("a:b", "c", interval=1, burst=1, cost=1, now=now) == 0
    assert await store.take_rate("a", "b:c", interval=1, burst=1, cost=1, now=now) == 0
