"""Shared fixtures: buses on every transport, and waiting on conditions with deadlines."""

from __future__ import annotations

import asyncio
import importlib
import os
import tempfile
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from nerve import Backoff, EventBus, Settings
from nerve.connections.redis import redis_options
from nerve.urls import scheme_of


def pytest_configure(config: pytest.Config) -> None:
    """The state directory (NERVE_STATE_DIR: default stores of amqp:// and kafka://) is
    the test run's own, also for the processes tests start; never the user's."""
    os.environ.setdefault("NERVE_STATE_DIR", tempfile.mkdtemp(prefix="nerve-state-"))


#: Every transport the contract, durability and crash suites run against: name -> URL for
#: one test (its own file, key prefix or stream names; short leases so takeovers are quick).
ALL_TRANSPORTS: dict[str, Callable[[Path, str], str]] = {
    "memory": lambda tmp, uid: "memory://",
    "redis": lambda tmp, uid: f"redis://127.0.0.1:6379/0?prefix=t-{uid}&lease=2",
    "sqlite": lambda tmp, uid: f"sqlite:///{tmp}/bus-{uid}.db?lease=2&poll=0.01",
    "nats": lambda tmp, uid: f"nats://127.0.0.1:4222?prefix=t{uid}&ack_wait=2",  # its own store
    "amqp": lambda tmp, uid: (
        f"amqp://guest:guest@127.0.0.1:5672/?prefix=t-{uid}&store=sqlite:///{tmp}/store-{uid}.db"
    ),
    "kafka": lambda tmp, uid: (
        f"kafka://127.0.0.1:9092?prefix=t-{uid}&partitions=4&session_timeout_ms=2000"
        f"&store=sqlite:///{tmp}/store-{uid}.db"
    ),
}
#: Transports still being built: run only when named in NERVE_TEST_TRANSPORTS.
IN_PROGRESS: set[str] = set()
#: NERVE_TEST_TRANSPORTS=memory,sqlite runs a subset while developing; CI runs them all.
_CHOSEN = os.environ.get("NERVE_TEST_TRANSPORTS")
TRANSPORTS = {
    name: url
    for name, url in ALL_TRANSPORTS.items()
    if (name in _CHOSEN.split(",") if _CHOSEN else name not in IN_PROGRESS)
}
#: Test modules with a ``drop(url)`` that deletes what one test made on that broker.
_DROPPERS = {
    "nats": "tests.transports.test_nats",
    "amqp": "tests.transports.test_amqp",
    "kafka": "tests.transports.test_kafka",
}


def drop_test_data(url: str) -> None:
    """Delete the broker-side data (keys, streams, queues, topics) of one test's URL."""
    scheme = scheme_of(url)
    if scheme == "redis":
        drop_redis_keys(url)
    elif scheme in _DROPPERS:
        importlib.import_module(_DROPPERS[scheme]).drop(url)


#: Retries fast enough for tests.
FAST = Backoff(initial=0.01, maximum=0.05)


async def eventually(
    condition: Callable[[], Any],
    *,
    timeout: float = 10.0,
    interval: float = 0.005,
    explain: Callable[[], Awaitable[str]] | None = None,
) -> None:
    """Wait until ``condition()`` is truthy; fail the test after ``timeout`` seconds, with
    what ``explain()`` finds then (where the missing things are) when it is given."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        if loop.time() > deadline:
            found = f"\n{await explain()}" if explain is not None else ""
            pytest.fail(f"condition not met within {timeout}s: {condition}{found}")
        await asyncio.sleep(interval)


BusFactory = Callable[..., EventBus]


def drop_redis_keys(url: str) -> int:
    """Delete the keys under a ``redis://`` URL's ``prefix`` (what one test made)."""
    client_url, options = redis_options(url)
    prefix = options["prefix"]  # never without one: that would be every nerve key
    with redis.Redis.from_url(client_url) as client:
        keys = list(client.scan_iter(match=f"{prefix}:*", count=1000))
        return int(client.delete(*keys)) if keys else 0


@pytest.fixture(params=sorted(TRANSPORTS))
def bus_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A URL on the parametrised transport, fresh for this test (its own file or keys)."""
    url = TRANSPORTS[request.param](tmp_path, uuid.uuid4().hex[:12])
    yield url
    drop_test_data(url)


@pytest.fixture
async def make_bus(bus_url: str) -> AsyncIterator[BusFactory]:
    """Make buses on this test's transport URL; stops them all at teardown.

    Buses made by one test share the URL: on a durable transport a second bus sees what
    the first left (a restart).
    """
    made: list[EventBus] = []

    def factory(**settings: Any) -> EventBus:
        settings.setdefault("shutdown_grace", 5.0)
        bus = EventBus(bus_url, settings=Settings(**settings))
        made.append(bus)
        return bus

    yield factory
    for bus in made:
        await bus.stop(grace=1.0)
