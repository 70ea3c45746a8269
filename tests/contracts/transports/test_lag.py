"""Lag per subscription: what each transport reports as published and not yet settled,
and the ``nerve_subscription_lag`` gauge the HTTP app's ``/metrics`` refreshes."""

from __future__ import annotations

import asyncio
from pathlib import Path

from nerve import Event, EventBus, Retry
from nerve.observe.metrics import Metrics
from nerve.urls import scheme_of
from tests.conftest import BusFactory, eventually
from tests.http.conftest import serve
from tests.http.test_admin import metric

EVENTS = 5


async def _lag_is(bus: EventBus, name: str, expected: int, timeout: float = 15.0) -> None:
    last: list[int | None] = []

    async def look() -> bool:
        last.append(await bus.transport.lag(name))
        return last[-1] == expected

    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not await look():
        assert loop.time() < deadline, f"lag of {name} is {last[-1]}, not {expected}"
        await asyncio.sleep(0.05)


async def test_lag_counts_what_is_published_and_not_yet_handled(
    make_bus: BusFactory, bus_url: str
) -> None:
    handled: list[str] = []
    publisher = make_bus()

    async def job(event: Event) -> None:
        handled.append(event.event_id)

    # Declared, never started: no worker runs (on a durable broker, none anywhere).
    publisher.subscribe("lag.job", job, name="lagged")
    await publisher.publish_many([Event(event_type="lag.job") for _ in range(EVENTS)])
    await publisher.publish(Event(event_type="other.thing"))  # not for "lagged"
    await _lag_is(publisher, "lagged", EVENTS + (scheme_of(bus_url) == "kafka"))
    assert await publisher.transport.lag("no-such-subscription") is None

    if publisher.transport.durable:
        await publisher.stop()
        worker = make_bus()
        worker.subscribe("lag.job", job, name="lagged")
    else:
        worker = publisher  # in-process: the events are in this bus
    await worker.start()
    await eventually(lambda: len(handled) == EVENTS, timeout=20)
    await worker.join(timeout=20)
    await _lag_is(worker, "lagged", 0)


async def test_lag_counts_a_retry_waiting_for_its_delay(make_bus: BusFactory, bus_url: str) -> None:
    if scheme_of(bus_url) == "amqp":
        return  # a retry waits in a wait queue shared by every subscription: not counted
    bus = make_bus()
    tries: list[int] = []

    @bus.on("slow.retry", name="retrying")
    async def retrying(event: Event) -> None:
        tries.append(1)
        raise Retry("later", delay=60)

    await bus.start()
    await bus.publish(Event(event_type="slow.retry"))
    await eventually(lambda: tries, timeout=20)
    await _lag_is(bus, "retrying", 1)


async def test_metrics_refresh_sets_the_lag_gauge() -> None:
    bus = EventBus("memory://")
    metrics = Metrics()

    @bus.on("gauge.job", name="gauged")
    async def gauged(event: Event) -> None:
        pass

    await bus.publish_many([Event(event_type="gauge.job") for _ in range(3)])
    await metrics.refresh(bus)
    text = metrics.render().decode()
    assert metric(text, "nerve_subscription_lag", subscription="gauged") == 3
    async with bus:
        await bus.join(timeout=10)
        await metrics.refresh(bus)
    assert 'nerve_subscription_lag{subscription="gauged"} 0.0' in metrics.render().decode()


async def test_the_metrics_endpoint_reports_lag(tmp_path: Path) -> None:
    bus = EventBus(f"sqlite:///{tmp_path}/bus.db?poll=0.01")
    release = asyncio.Event()

    @bus.on("held.job", name="held")
    async def held(event: Event) -> None:
        await release.wait()

    async with serve(bus) as client:
        await bus.publish_many([Event(event_type="held.job") for _ in range(4)])
        text = (await client.get("/metrics")).text
        assert metric(text, "nerve_subscription_lag", subscription="held") == 4
        release.set()
        await bus.join(timeout=10)
        text = (await client.get("/metrics")).text
        assert 'nerve_subscription_lag{subscription="held"} 0.0' in text
