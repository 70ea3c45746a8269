"""One side (toy or nerve) of one scenario: publish N events, time how they are handled.

Both sides run the same producer loop and the same handler functions; only the bus and
its event class differ. The producer builds one event per iteration (the toy's dataclass,
or ``nerve.Event``), stamps ``time.perf_counter()`` into a preallocated list at the index
the payload carries, and awaits ``bus.publish(event)``, one event at a time, while the
bus processes concurrently. The handler stamps its own start against that list
(publish-to-handler latency) and counts completions; the run ends when the count reaches
``events * subscriptions``, signalled by an ``asyncio.Event`` (no polling, no sleeps).

Run as ``python -m bench.workload '<workload as JSON>'`` it prints one JSON result line;
the benchmark starts one such process per side and scenario so that peak RSS
(``ru_maxrss``) belongs to that side alone and neither side inherits the other's heap.
"""

from __future__ import annotations

import asyncio
import gc
import json
import resource
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal

Side = Literal["toy", "nerve"]
BenchHandler = Callable[[Any], Awaitable[None]]
Publish = Callable[[Any], Awaitable[Any]]


@dataclass(frozen=True, slots=True)
class Workload:
    """What one side runs.

    Attributes:
        scenario: the scenario's key (``"1"``, ``"2"``, ``"3a"``, ``"3b"``).
        side: ``"toy"`` or ``"nerve"``.
        events: events to publish.
        types: distinct event types, published round-robin (``bench.t0`` ...).
        subscriptions: handlers per event type.
        sleep: seconds each handler awaits ``asyncio.sleep`` (a stand-in LLM call); 0: none.
        concurrency: nerve only: the subscriptions' ``concurrency=`` (None: nerve's default).
        time_limit: seconds the run may take before it is abandoned as timed out.
        measure_rss: read ``ru_maxrss`` (meaningful only in a process of its own).
    """

    scenario: str
    side: Side
    events: int
    types: int = 1
    subscriptions: int = 1
    sleep: float = 0.0
    concurrency: int | None = None
    time_limit: float = 300.0
    measure_rss: bool = True

    @property
    def deliveries(self) -> int:
        """Handler calls the run waits for."""
        return self.events * self.subscriptions


@dataclass(slots=True)
class SideResult:
    """What one side measured. Times in seconds, latencies in milliseconds.

    ``wall_s`` runs from the first publish to the end of the last handler call;
    ``events_per_s`` is ``events / wall_s`` (events published, not handler calls).
    ``settle_s`` is until nerve's ``join()`` returned (every delivery acknowledged); the
    toy has no such notion and reports ``wall_s``. ``baseline_rss_mib`` is the peak RSS
    after imports and bus setup, before the first publish; ``peak_rss_mib`` at the end.
    """

    scenario: str
    side: str
    events: int
    handled: int
    wall_s: float | None = None
    publish_s: float | None = None
    settle_s: float | None = None
    events_per_s: float | None = None
    p50_ms: float | None = None
    p99_ms: float | None = None
    baseline_rss_mib: float | None = None
    peak_rss_mib: float | None = None
    concurrency: int | None = None
    error: str | None = None


class _Probe:
    """Publish stamps, handler-start latencies and the completion count of one run."""

    __slots__ = ("done", "expected", "finished", "latencies", "sent", "t_last")

    def __init__(self, events: int, expected: int) -> None:
        self.sent = [0.0] * events
        self.latencies: list[float] = []
        self.finished = 0
        self.expected = expected
        self.done = asyncio.Event()
        self.t_last = 0.0

    def started(self, i: int) -> None:
        self.latencies.append(time.perf_counter() - self.sent[i])

    def ended(self) -> None:
        self.finished += 1
        if self.finished == self.expected:
            self.t_last = time.perf_counter()
            self.done.set()


def _handler(probe: _Probe, sleep: float) -> BenchHandler:
    """The handler both buses run: stamp the start, maybe 'call an LLM', count the end."""
    started, ended = probe.started, probe.ended
    if sleep > 0:

        async def llm_call(event: Any) -> None:
            started(event.payload["i"])
            await asyncio.sleep(sleep)
            ended()

        return llm_call

    async def count(event: Any) -> None:
        started(event.payload["i"])
        ended()

    return count


async def _produce(
    publish: Publish, make_event: Callable[..., Any], types: Sequence[str], probe: _Probe
) -> None:
    sent = probe.sent
    perf = time.perf_counter
    ntypes = len(types)
    for i in range(len(sent)):
        event = make_event(event_type=types[i % ntypes], payload={"i": i})
        sent[i] = perf()
        await publish(event)


def _peak_rss_mib() -> float:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024  # bytes vs KiB


def _types(w: Workload) -> list[str]:
    return ["bench.event"] if w.types == 1 else [f"bench.t{k}" for k in range(w.types)]


async def _run_toy(w: Workload, probe: _Probe, result: SideResult) -> None:
    from bench.toy_bus import Event, EventBus

    handler = _handler(probe, w.sleep)
    types = _types(w)
    bus = EventBus()
    for event_type in types:
        for _ in range(w.subscriptions):
            bus.subscribe(event_type, handler)
    processing = asyncio.create_task(bus.start_processing())
    gc.collect()
    if w.measure_rss:
        result.baseline_rss_mib = _peak_rss_mib()
    try:
        async with asyncio.timeout(w.time_limit):
            t0 = time.perf_counter()
            await _produce(bus.publish, Event, types, probe)
            result.publish_s = time.perf_counter() - t0
            await probe.done.wait()
            result.wall_s = result.settle_s = probe.t_last - t0
    finally:
        processing.cancel()
        await asyncio.gather(processing, return_exceptions=True)


async def _run_nerve(w: Workload, probe: _Probe, result: SideResult) -> None:
    from nerve import Event, EventBus

    handler = _handler(probe, w.sleep)
    types = _types(w)
    bus = EventBus()  # memory://, default store (idempotency on), default retries
    n = 0
    for event_type in types:
        for _ in range(w.subscriptions):
            sub = bus.subscribe(event_type, handler, name=f"h{n}", concurrency=w.concurrency)
            n += 1
    result.concurrency = sub.concurrency
    await bus.start()
    gc.collect()
    if w.measure_rss:
        result.baseline_rss_mib = _peak_rss_mib()
    try:
        async with asyncio.timeout(w.time_limit):
            t0 = time.perf_counter()
            await _produce(bus.publish, Event, types, probe)
            result.publish_s = time.perf_counter() - t0
            await probe.done.wait()
            result.wall_s = probe.t_last - t0
            await bus.join()
            result.settle_s = time.perf_counter() - t0
    finally:
        await bus.stop(grace=0.0)
    if bus.unfinished:
        result.error = f"{len(bus.unfinished)} deliveries unfinished at stop"


def _percentile_ms(ordered: list[float], q: float) -> float:
    """Nearest-rank percentile of sorted seconds, in milliseconds."""
    rank = max(0, min(len(ordered) - 1, round(q * len(ordered)) - 1))
    return ordered[rank] * 1000.0


async def run_side(w: Workload) -> SideResult:
    """Run one side of one scenario in the running loop and return what it measured."""
    result = SideResult(scenario=w.scenario, side=w.side, events=w.events, handled=0)
    runner = _run_toy if w.side == "toy" else _run_nerve
    probe = _Probe(w.events, w.deliveries)
    try:
        await runner(w, probe, result)
    except TimeoutError:
        result.error = (
            f"timed out after {w.time_limit:g}s, {probe.finished:,} of {w.deliveries:,} "
            "handler calls done"
        )
    finally:
        if w.measure_rss:
            result.peak_rss_mib = _peak_rss_mib()
    result.handled = probe.finished
    if result.wall_s:
        result.events_per_s = w.events / result.wall_s
    if probe.latencies:
        ordered = sorted(probe.latencies)
        result.p50_ms = _percentile_ms(ordered, 0.50)
        result.p99_ms = _percentile_ms(ordered, 0.99)
    return result


def _child(argv: Sequence[str]) -> int:
    """``python -m bench.workload '<json>'``: run one side, print its result as JSON."""
    if len(argv) != 1:
        print("usage: python -m bench.workload '<workload as JSON>'", file=sys.stderr)
        return 2
    workload = Workload(**json.loads(argv[0]))
    result = asyncio.run(run_side(workload))
    print(json.dumps(asdict(result)))
    return 0


if __name__ == "__main__":
    sys.exit(_child(sys.argv[1:]))
