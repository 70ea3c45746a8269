"""``make_store``: stores of each kind, cleaned up after the test."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from nerve import Store
from nerve.stores.base import DEFAULT_WINDOW
from nerve.stores.memory import MemoryStore
from nerve.stores.nats import NATSStore
from nerve.stores.postgres import PostgresStore
from nerve.stores.redis import RedisStore
from nerve.stores.sqlite import SQLiteStore
from tests.conftest import drop_redis_keys
from tests.contracts.stores import StoreFactory
from tests.stores.test_nats_store import drop_nats_store
from tests.stores.test_postgres_store import POSTGRES_URL, drop_schema, sql, unique_schema


@pytest.fixture(params=["memory", "sqlite", "postgres", "redis", "nats"])
async def make_store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[StoreFactory]:
    """Stores of the parametrised kind; those of one test share a file or schema."""
    made: list[Store] = []
    redis_url = f"redis://127.0.0.1:6379/0?prefix=store-{uuid.uuid4().hex[:12]}"
    nats_url = f"nats://127.0.0.1:4222?prefix=store-{uuid.uuid4().hex[:12]}"
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
        elif request.param == "nats":
            store = NATSStore(nats_url, window=window)
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
    if request.param == "nats":
        await drop_nats_store(nats_url)
