"""Contract ``Limits``: keyed slots with leases, and GCRA rate states, atomic across
processes (two stores on one database stand for two processes)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from nerve.stores.memory import MemoryStore
from tests.contracts.stores import StoreFactory

NOW = 1_900_000_000.0


def near(seconds: float) -> object:
    """A wait within a microsecond or so (unix times in floats)."""
    return pytest.approx(seconds, abs=1e-5)


async def test_slots_hold_at_most_the_limit_per_key(make_store: StoreFactory) -> None:
    store = make_store()
    await store.open()
    take = store.take_slot
    assert await take("llm", "acme", "e1", limit=2, lease=30, now=NOW)
    assert await take("llm", "acme", "e2", limit=2, lease=30, now=NOW)
    assert not await take("llm", "acme", "e3", limit=2, lease=30, now=NOW)
    assert await take("llm", "acme", "e1", limit=2, lease=30, now=NOW + 1)  # renews
    assert await take("llm", "other", "e3", limit=2, lease=30, now=NOW)  # keys apart
    assert await take("other", "acme", "e3", limit=2, lease=30, now=NOW)  # limiters apart
    assert await store.slots_taken("llm", "acme", NOW) == 2
    await store.free_slot("llm", "acme", "e2")
    await store.free_slot("llm", "acme", "nobody")
    assert await store.slots_taken("llm", "acme", NOW) == 1
    assert await take("llm", "acme", "e3", limit=2, lease=30, now=NOW)


async def test_a_slot_whose_lease_ended_is_free(make_store: StoreFactory) -> None:
    store = make_store()
    await store.open()
    assert await store.take_slot("s", "k", "dead", limit=1, lease=5, now=NOW)
    assert not await store.take_slot("s", "k", "live", limit=1, lease=5, now=NOW + 4)
    assert await store.slots_taken("s", "k", NOW + 5.5) == 0
    assert await store.take_slot("s", "k", "live", limit=1, lease=5, now=NOW + 5.5)


async def test_concurrent_takes_never_exceed_the_limit(make_store: StoreFactory) -> None:
    one = make_store()
    two = one if isinstance(one, MemoryStore) else make_store()
    await one.open()
    await two.open()
    won = await asyncio.gather(
        *(
            (one if i % 2 else two).take_slot("s", "k", f"h{i}", limit=3, lease=30, now=NOW)
            for i in range(20)
        )
    )
    assert sum(won) == 3
    assert await one.slots_taken("s", "k", NOW) == 3


async def test_gcra_lets_a_burst_through_then_spaces_takes(make_store: StoreFactory) -> None:
    store = make_store()
    await store.open()
    rate: dict[str, Any] = {"interval": 1.0, "burst": 3.0}  # 1 per second, bursts of 3
    waits = [await store.take_rate("t", "k", **rate, cost=1, now=NOW) for _ in range(4)]
    assert all(w < 1e-6 for w in waits[:3])
    assert waits[3] == near(1.0)  # the fourth conforms a second later
    assert await store.take_rate("t", "k", **rate, cost=1, now=NOW + 0.5) == pytest.approx(
        0.5, abs=1e-5
    )
    assert await store.take_rate("t", "k", **rate, cost=1, now=NOW + 1.0) < 1e-6
    assert await store.take_rate("t", "other", **rate, cost=3, now=NOW) < 1e-6  # keys apart
    assert await store.take_rate("t", "big", **rate, cost=5, now=NOW) == pytest.approx(
        2.0, abs=1e-5
    )


async def test_gcra_force_records_and_negative_cost_gives_back(make_store: StoreFactory) -> None:
    store = make_store()
    await store.open()
    rate: dict[str, Any] = {"interval": 0.001, "burst": 1000.0}  # a token budget: 1000 per second
    assert await store.take_rate("tpm", "m", **rate, cost=800, now=NOW) < 1e-6
    assert await store.take_rate("tpm", "m", **rate, cost=400, now=NOW) == pytest.approx(
        0.2, abs=1e-5
    )
    # the call used 1,100 tokens, not 800: recorded anyway
    assert await store.take_rate("tpm", "m", **rate, cost=300, now=NOW, force=True) > 0
    assert await store.take_rate("tpm", "m", **rate, cost=1, now=NOW) == pytest.approx(
        0.101, abs=1e-5
    )
    await store.take_rate("tpm", "m", **rate, cost=-600, now=NOW)  # estimate was high
    assert await store.take_rate("tpm", "m", **rate, cost=400, now=NOW) < 1e-6


async def test_gcra_takes_are_atomic(make_store: StoreFactory) -> None:
    one = make_store()
    two = one if isinstance(one, MemoryStore) else make_store()
    await one.open()
    await two.open()
    rate: dict[str, Any] = {"interval": 10.0, "burst": 5.0}
    waits = await asyncio.gather(
        *((one if i % 2 else two).take_rate("t", "k", **rate, cost=1, now=NOW) for i in range(12))
    )
    assert sum(1 for w in waits if w < 1e-6) == 5


async def test_block_rate_refuses_until_the_pause_ends(make_store: StoreFactory) -> None:
    store = make_store()
    await store.open()
    rate: dict[str, Any] = {"interval": 0.1, "burst": 10.0}
    await store.block_rate("llm", "gpt", until=NOW + 2, **rate)
    assert await store.take_rate("llm", "gpt", **rate, cost=1, now=NOW) == pytest.approx(
        2.1, abs=1e-5
    )
    assert await store.take_rate("llm", "gpt", **rate, cost=1, now=NOW + 1.9) == pytest.approx(
        0.2, abs=1e-5
    )
    assert await store.take_rate("llm", "gpt", **rate, cost=1, now=NOW + 2.1) < 1e-6
    await store.block_rate("llm", "gpt", until=NOW, **rate)  # an earlier pause: no change
    assert await store.take_rate("llm", "gpt", **rate, cost=1, now=NOW + 2.2) < 1e-6
