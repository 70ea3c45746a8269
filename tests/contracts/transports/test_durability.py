"""Contract for durable transports: processes come and go, the events stay.

Every test here runs on each durable transport in ``TRANSPORTS`` (not on ``memory://``,
which keeps nothing by design). Two buses on one URL stand for two worker processes.
"""

from __future__ import annotations

import asyncio
import sys
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest

from nerve import DeliveryState, Event, EventBus, Settings, current
from tests.conftest import FAST, TRANSPORTS, drop_test_data, eventually

ROOT = Path(__file__).resolve().parents[2]
Factory = Callable[[], EventBus]
DURABLE = sorted(name for name in TRANSPORTS if name != "memory")


@pytest.fixture(params=DURABLE)
def url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    found = TRANSPORTS[request.param](tmp_path, uuid.uuid4().hex[:12])
    yield found
    drop_test_data(found)


@pytest.fixture
async def make(url: str) -> AsyncIterator[Callable[[], EventBus]]:
    """Buses on the test's URL (one per "process"); all stopped at teardown."""
    made: list[EventBus] = []

    def factory() -> EventBus:
        made.append(EventBus(url, settings=Settings(shutdown_grace=2.0)))
        return made[-1]

    yield factory
    for bus in made:
        await bus.stop(grace=1.0)  # also closes a store reopened by status / dlq calls


async def test_events_published_with_no_worker_running_wait_for_one(make: Factory) -> None:
    handled: list[str] = []

    def worker() -> EventBus:
        bus = make()

        @bus.on("ticket.created", name="triage")
        async def triage(event: Event) -> None:
            handled.append(event.event_id)

        return bus

    first = worker()
    await first.start()  # declares the subscription, then the process goes away
    await first.stop()
    publisher = make()  # a web app or a script: publishes, runs no handler
    events = await publisher.publish_many(
        [Event(event_type="ticket.created", payload={"n": n}) for n in range(20)]
    )
    ids = [e.event_id for e in events]
    await publisher.stop()
    later = worker()
    status = await later.status(ids[0])  # a bus knows the state of its own subscriptions
    assert status.subscriptions == {"triage": DeliveryState.PENDING}
    assert handled == []
    async with later:
        await eventually(lambda: sorted(handled) == sorted(ids), timeout=20)
        await later.join(timeout=20)
    assert sorted(handled) == sorted(ids)


async def test_patterns_match_event_types_first_published_after_workers_started(
    make: Factory,
) -> None:
    worker = make()
    seen: list[str] = []

    @worker.on("github.#", name="github")
    async def github(event: Event) -> None:
        seen.append(event.event_type)

    async with worker:
        publisher = make()
        for kind in ("github.push", "github.pull_request.opened", "stripe.charge"):
            await publisher.publish(Event(event_type=kind))
        await publisher.stop()
        await eventually(lambda: len(seen) == 2, timeout=20)
        await worker.join(timeout=20)
    assert sorted(seen) == ["github.pull_request.opened", "github.push"]


HANGING_WORKER = """
import asyncio, pathlib, sys
from nerve import Event, EventBus

bus = EventBus(sys.argv[1])

@bus.on("job.run", name="job")
async def hang(event: Event) -> None:
    pathlib.Path(sys.argv[2]).write_text(event.event_id)
    await asyncio.Event().wait()  # never returns: SIGKILLed while handling

asyncio.run(bus.start_processing())
"""


async def test_a_worker_killed_holding_an_event_is_taken_over(
    make: Factory, url: str, tmp_path: Path
) -> None:
    """A process SIGKILLed mid-handler loses nothing: after its lease, another worker
    takes the event over, with the dead worker's try counted as an attempt."""
    declare = make()
    declare.subscribe("job.run", _noop, name="job")
    await declare.start()  # the subscription exists before the event is published
    await declare.stop()
    publisher = make()
    event = await publisher.publish(Event(event_type="job.run"))
    await publisher.stop()
    marker = tmp_path / "taken"
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", HANGING_WORKER, url, str(marker), cwd=ROOT
    )
    try:
        # Written, not only created: write_text truncates then writes, and a kill in
        # between left an empty marker (seen once in 48 runs under load).
        await eventually(lambda: marker.exists() and marker.read_text() != "", timeout=30)
    finally:
        proc.kill()
        await proc.wait()
    assert marker.read_text() == event.event_id

    second = make()
    attempts: list[int] = []

    @second.on("job.run", name="job")
    async def work(event: Event) -> None:
        ctx = current()
        assert ctx is not None
        attempts.append(ctx.attempt)

    async with second:
        await eventually(lambda: attempts != [], timeout=30)
        await second.join(timeout=20)
    assert attempts == [2]
    assert (await second.status(event.event_id)).subscriptions == {"job": DeliveryState.DONE}


async def _noop(event: Event) -> None:
    pass


async def test_a_long_handler_keeps_its_event_past_the_lease(make: Factory) -> None:
    """A handler running for several lease periods (an LLM call of minutes) is not taken
    over by another worker: its lease is extended while it runs."""
    runs: Counter[str] = Counter()
    release = asyncio.Event()
    buses = [make(), make()]
    for bus in buses:

        @bus.on("report.build", name="build")
        async def build(event: Event) -> None:
            runs[event.event_id] += 1
            await release.wait()

    async with buses[0], buses[1]:
        event = await buses[0].publish(Event(event_type="report.build"))
        await eventually(lambda: runs[event.event_id] == 1, timeout=20)
        await asyncio.sleep(5.0)  # the test's subject: 2.5 leases of 2 s go by
        release.set()
        await buses[0].join(timeout=20)
    assert runs == {event.event_id: 1}


async def test_retries_and_dead_letters_cross_processes(make: Factory) -> None:
    """Attempt errors recorded by one process end up in the dead letter of another."""
    calls: list[int] = []
    first = make()

    @first.on("order.created", name="orders", retries=1, backoff=FAST)
    async def fail_first(event: Event) -> None:
        ctx = current()
        assert ctx is not None
        calls.append(ctx.attempt)
        raise ValueError(f"attempt {ctx.attempt} failed")

    async with first:
        event = await first.publish(Event(event_type="order.created"))
        await first.join(timeout=20)
    assert calls == [1, 2]
    reader = make()
    [entry] = await reader.dlq.list()
    assert entry.event.event_id == event.event_id
    assert [e.message for e in entry.errors] == ["attempt 1 failed", "attempt 2 failed"]
    await reader.stop()
