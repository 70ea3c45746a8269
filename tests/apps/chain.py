"""An agent chain for history and CLI tests: ``chain.a`` -> ``chain.b`` -> ``chain.c``.

Handler ``a`` publishes ``chain.b``, ``b`` publishes ``chain.c``, ``c`` only returns: a
three-level chain under one correlation id. ``flaky`` handles ``chain.flaky``: it fails
(without retries) while the file named by ``CHAIN_BROKEN`` exists, so a test can make a
dead letter, fix the cause (delete the file) and replay it.
"""

from __future__ import annotations

import os

from nerve import Event, EventBus

bus = EventBus()


@bus.on("chain.a", name="a")
async def a(event: Event) -> None:
    await bus.publish(Event(event_type="chain.b", payload={"from": "a"}))


@bus.on("chain.b", name="b")
async def b(event: Event) -> None:
    await bus.publish(Event(event_type="chain.c", payload={"from": "b"}))


@bus.on("chain.c", name="c")
async def c(event: Event) -> None:
    return None


@bus.on("chain.flaky", name="flaky", retries=0)
async def flaky(event: Event) -> None:
    broken = os.environ.get("CHAIN_BROKEN", "")
    if broken and os.path.exists(broken):  # noqa: ASYNC240  # a test app: one stat
        raise RuntimeError(f"broken: {event.payload}")
