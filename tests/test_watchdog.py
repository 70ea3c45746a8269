"""Handlers and the event loop: blocking work runs in a thread when asked (blocking=True),
and the loop watchdog names a handler that holds the loop anyway."""

from __future__ import annotations

import asyncio
import logging
import threading
import time

import pytest

from nerve import (
    DeliveryState,
    Event,
    EventBus,
    HandlerTimeout,
    Observer,
    Settings,
    SubscriptionError,
    current,
)
from nerve.observe.metrics import Metrics
from tests.conftest import eventually
from tests.http.test_admin import metric


class Stalls(Observer):
    def __init__(self) -> None:
        self.seen: list[tuple[str, str, float]] = []

    def blocked(self, subscription: str, event: Event, seconds: float) -> None:
        self.seen.append((subscription, event.event_id, seconds))


async def test_a_blocking_handler_runs_in_a_thread_and_the_loop_goes_on() -> None:
    bus = EventBus("memory://")
    release = threading.Event()
    threads: list[str] = []
    seen_context: list[str] = []
    quick: list[str] = []

    @bus.on("report.requested", name="render", blocking=True)
    def render(event: Event) -> None:  # CPU-bound or blocking: a plain function
        threads.append(threading.current_thread().name)
        ctx = current()
        seen_context.append(ctx.event.event_id if ctx else "none")
        assert release.wait(timeout=20)

    @bus.on("ping", name="pong")
    async def pong(event: Event) -> None:
        quick.append(event.event_id)

    async with bus:
        slow = await bus.publish(Event(event_type="report.requested"))
        await eventually(lambda: threads != [], timeout=10)
        # While the blocking handler waits in its thread, the loop serves everything else.
        for _ in range(50):
            await bus.publish(Event(event_type="ping"))
        await eventually(lambda: len(quick) == 50, timeout=10)
        assert (await bus.status(slow.event_id)).subscriptions == {"render": DeliveryState.PENDING}
        release.set()
        await bus.join(timeout=10)
    assert threads
    assert threads[0] != threading.main_thread().name
    assert seen_context == [slow.event_id]  # nerve.current() works in the thread
    assert (await bus.status(slow.event_id)).subscriptions == {"render": DeliveryState.DONE}


async def test_a_blocking_handler_keeps_its_timeout() -> None:
    bus = EventBus("memory://")
    release = threading.Event()

    @bus.on("report.requested", name="render", blocking=True, timeout=0.2, retries=0)
    def render(event: Event) -> None:
        release.wait(timeout=20)

    try:
        async with bus:
            event = await bus.publish(Event(event_type="report.requested"))
            await bus.join(timeout=10)
    finally:
        release.set()
    assert (await bus.status(event.event_id)).subscriptions == {
        "render": DeliveryState.DEAD_LETTERED
    }
    (entry,) = await bus.dlq.list()
    assert entry.last_error is not None
    assert entry.last_error.type == f"nerve.exceptions.{HandlerTimeout.__name__}"


async def _dead(bus: EventBus, event_id: str) -> bool:
    return (await bus.status(event_id)).subscriptions == {"render": DeliveryState.DEAD_LETTERED}


def test_blocking_takes_a_plain_function_and_async_handlers_need_no_flag() -> None:
    bus = EventBus("memory://")

    async def asynchronous(event: Event) -> None:
        pass

    def plain(event: Event) -> None:
        pass

    with pytest.raises(SubscriptionError, match=r"is async: blocking=True runs a plain"):
        bus.subscribe("a.b", asynchronous, blocking=True)
    with pytest.raises(SubscriptionError, match=r"or a plain one with blocking=True"):
        bus.subscribe("a.b", plain)


async def test_the_watchdog_names_a_handler_that_holds_the_loop(
    caplog: pytest.LogCaptureFixture,
) -> None:
    bus = EventBus("memory://", settings=Settings(loop_watchdog=0.05))
    stalls = Stalls()
    metrics = Metrics()
    bus.observe(stalls)
    bus.observe(metrics)

    @bus.on("deployment.completed", name="analyst")
    async def analyst(event: Event) -> None:
        time.sleep(0.6)  # noqa: ASYNC251  # as a regex that backtracks would: the loop is held

    with caplog.at_level(logging.WARNING, logger="nerve"):
        async with bus:
            event = await bus.publish(Event(event_type="deployment.completed"))
            await bus.join(timeout=10)
            await eventually(lambda: stalls.seen != [], timeout=5)
    (warning,) = [r for r in caplog.records if "has held the event loop" in r.getMessage()]
    text = warning.getMessage()
    assert "analyst" in text
    assert event.event_id in text
    assert "deployment.completed" in text
    assert "test_watchdog.py" in text  # where it was held
    ((subscription, event_id, seconds),) = stalls.seen
    assert (subscription, event_id) == ("analyst", event.event_id)
    assert 0.3 < seconds < 1.5
    rendered = metrics.render().decode()
    assert metric(rendered, "nerve_loop_blocks_total", subscription="analyst") == 1
    assert metric(rendered, "nerve_loop_blocked_seconds_total", subscription="analyst") > 0.3


async def test_a_handler_that_awaits_is_not_reported(caplog: pytest.LogCaptureFixture) -> None:
    bus = EventBus("memory://", settings=Settings(loop_watchdog=0.05))
    stalls = Stalls()
    bus.observe(stalls)

    @bus.on("job.run", name="job")
    async def job(event: Event) -> None:
        await asyncio.sleep(0.4)  # long, but the loop is free meanwhile

    with caplog.at_level(logging.WARNING, logger="nerve"):
        async with bus:
            await bus.publish(Event(event_type="job.run"))
            await bus.join(timeout=10)
    assert stalls.seen == []
    assert "has held the event loop" not in caplog.text


async def test_the_watchdog_can_be_turned_off() -> None:
    bus = EventBus("memory://", settings=Settings(loop_watchdog=0))
    stalls = Stalls()
    bus.observe(stalls)

    @bus.on("job.run", name="job")
    async def job(event: Event) -> None:
        time.sleep(0.3)  # noqa: ASYNC251  # the loop is held, on purpose

    async with bus:
        await bus.publish(Event(event_type="job.run"))
        await bus.join(timeout=10)
    assert stalls.seen == []
    assert [t.name for t in threading.enumerate() if t.name == "nerve-watchdog"] == []
