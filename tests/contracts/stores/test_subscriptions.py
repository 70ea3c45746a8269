"""Contract ``SubscriptionRegistry``: the subscriptions declared with a store, shared by
every bus (process) that uses it."""

from __future__ import annotations

from nerve.stores.memory import MemoryStore
from tests.contracts.stores import StoreFactory


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
