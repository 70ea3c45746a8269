"""Shared fixtures: buses on every transport, and waiting on conditions with deadlines."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from nerve import Backoff, EventBus, Settings

#: Every transport the contract suites run against.
TRANSPORTS = ["memory://"]

#: Retries fast enough for tests.
FAST = Backoff(initial=0.01, maximum=0.05)


async def eventually(
    condition: Callable[[], Any], *, timeout: float = 10.0, interval: float = 0.005
) -> None:
    """Wait until ``condition()`` is truthy; fail the test after ``timeout`` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        if loop.time() > deadline:
            pytest.fail(f"condition not met within {timeout}s: {condition}")
        await asyncio.sleep(interval)


BusFactory = Callable[..., EventBus]


@pytest.fixture(params=TRANSPORTS)
async def make_bus(request: pytest.FixtureRequest) -> AsyncIterator[BusFactory]:
    """Make buses on the parametrised transport; stops them all at teardown."""
    made: list[EventBus] = []

    def factory(**settings: Any) -> EventBus:
        settings.setdefault("shutdown_grace", 5.0)
        bus = EventBus(request.param, settings=Settings(**settings))
        made.append(bus)
        return bus

    yield factory
    for bus in made:
        await bus.stop(grace=1.0)
