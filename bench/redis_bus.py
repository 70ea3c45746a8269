"""nerve on Redis against FastStream and a raw redis-py loop, side by side, in one run.

Usage::

    python -m bench.redis_bus                 # every scenario at full size (~2-3 min)
    python -m bench.redis_bus --quick         # a smoke run of a few seconds
    python -m bench.redis_bus --scenarios consume,latency
    python -m bench.redis_bus --profile       # pyinstrument over nerve's consume, no table
    python -m bench.redis_bus --profile publish

Scenarios (issue 3's):

consume
    50,000 events are pre-loaded into a fresh stream, each system in the wire format it
    reads, then one consumer in one process drains them with a trivial async handler.
    Events/s from the start of the consumer (connect included) to the last handler call.
    ``raw``: redis-py, ``XREADGROUP COUNT 1000`` and the XACK of the previous batch in one
    pipeline (one round trip per batch: the ceiling). ``faststream``: a ``RedisBroker``
    subscriber on ``StreamSub(stream, group=..., consumer=...)`` with its defaults (one
    message at a time, one XACK round trip each), logging off. ``nerve``:
    ``EventBus("redis://...")`` with ``@bus.on(...)`` and its default store for the URL
    (the Redis store: an idempotency mark per event); ``nerve-memstore``: the same with
    ``store="memory://"``, which shows what the idempotency writes cost.
    Targets: nerve >= 5x FastStream and >= 50% of raw.
publish
    20,000 events published into a fresh stream, nobody consuming. ``raw``: XADD in
    pipelines of 1,000; ``faststream``: ``await broker.publish(...)`` one at a time;
    ``faststream-pipe``: the same into a redis-py pipeline of 1,000 (FastStream's
    ``pipeline=`` argument); ``nerve``: ``await bus.publish(event)`` one at a time (the
    Redis store records each publish too); ``nerve-memstore``: the same with the memory
    store; ``nerve-gather``: chunks of 100 concurrent ``bus.publish`` calls under
    ``asyncio.gather``; ``nerve-many``: ``bus.publish_many`` in chunks of 1,000 (nerve's
    batch path: one pipeline). Target: ``nerve-many`` >= 50% of raw pipelined XADD.
latency
    A producer publishes at a steady 500 events/s for 8 s (quick: 1 s) while the consumer
    runs in the same process; each payload carries ``time.perf_counter()`` taken just
    before the publish call, and the handler measures publish -> handler start. p50/p99.
sqlite
    nerve's SQLite transport against its in-memory bus: 20,000 events published one at a
    time while the bus handles them (trivial handler), events/s. ``sqlite`` is the
    default (``synchronous=NORMAL`` in WAL mode, SQLite store in the same file);
    ``sqlite-memstore`` keeps the idempotency marks in memory; ``sqlite-full`` and
    ``sqlite-off``: the URL's ``?synchronous=FULL`` / ``OFF`` (the transport's connection;
    the store keeps NORMAL); ``sqlite-many``: ``bus.publish_many`` in chunks of 1,000
    (one transaction each).

Each system of each scenario runs in a fresh process (``python -m bench.redis_bus --job``),
so its peak RSS is its own, with its own key prefix (``nerve-bench-<random>-<system>``)
whose keys are deleted afterwards, also when the job fails or is killed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench.memory_bus import ROOT, _f, _print_machine, _table, machine_info

if TYPE_CHECKING:
    from faststream.redis import RedisBroker

DEFAULT_REDIS = "redis://127.0.0.1:6379/0"
SCENARIOS: dict[str, tuple[str, ...]] = {
    "consume": ("raw", "faststream", "nerve", "nerve-memstore"),
    "publish": (
        "raw",
        "faststream",
        "faststream-pipe",
        "nerve",
        "nerve-memstore",
        "nerve-gather",
        "nerve-many",
    ),
    "latency": ("raw", "faststream", "nerve"),
    "sqlite": ("memory", "sqlite", "sqlite-memstore", "sqlite-full", "sqlite-off", "sqlite-many"),
}
FULL = {"consume": 50_000, "publish": 20_000, "latency_s": 8.0, "sqlite": 20_000}
QUICK = {"consume": 300, "publish": 300, "latency_s": 1.0, "sqlite": 300}
EVENT_TYPE = "bench.event"
GROUP = "bench"  # the consumer group (nerve: the subscription's name)
DATA = b"d"  # the raw loop's one field
GRACE = 5.0  # nerve's stop(grace=): bounded well below the default 30 s
STOP_LIMIT = 15.0  # seconds a stop may take before the job reports it as hung


@dataclass(frozen=True, slots=True)
class Job:
    """One system in one scenario, run in a process of its own.

    Attributes:
        scenario: ``consume``, ``publish``, ``latency`` or ``sqlite``.
        system: one of ``SCENARIOS[scenario]``.
        events: events to pre-load / publish (latency: ``rate * duration``).
        redis_url: Redis, without nerve's options (``redis://host:port/db``).
        prefix: every Redis key of the job starts with it (and the SQLite file's name).
        batch: raw XREADGROUP count, raw / FastStream pipeline size, nerve gather chunk.
        gather: nerve-gather's concurrent publishes per chunk.
        rate: latency scenario: events per second.
        time_limit: seconds the job may run before it is abandoned as timed out.
        workdir: where the SQLite scenario puts its database file.
    """

    scenario: str
    system: str
    events: int
    redis_url: str = DEFAULT_REDIS
    prefix: str = "nerve-bench"
    batch: int = 1000
    gather: int = 100
    rate: float = 500.0
    time_limit: float = 300.0
    workdir: str = ""

    @property
    def stream(self) -> str:
        """The stream raw and FastStream use (nerve's is ``{prefix}:events``)."""
        return f"{self.prefix}:stream"

    @property
    def nerve_url(self) -> str:
        return f"{self.redis_url}?prefix={self.prefix}"


@dataclass(slots=True)
class Result:
    """What one job measured. Times in seconds, latencies in milliseconds.

    ``handled`` counts handler calls, ``unique`` distinct events among them;
    ``pending_after`` is the consumer group's pending entries plus its lag once the run
    is over (0: every delivery acknowledged). ``peak_rss_mib`` is the process's peak.
    ``stop_s``: how long stopping the bus or broker took (not part of ``wall_s``).
    """

    scenario: str
    system: str
    events: int
    handled: int = 0
    unique: int = 0
    pending_after: int | None = None
    wall_s: float | None = None
    events_per_s: float | None = None
    p50_ms: float | None = None
    p99_ms: float | None = None
    peak_rss_mib: float | None = None
    stop_s: float | None = None
    error: str | None = None


class _Probe:
    """Handler calls, distinct events and latencies of one run."""

    __slots__ = ("done", "expected", "handled", "latencies", "seen", "t_last")

    def __init__(self, expected: int) -> None:
        self.expected = expected
        self.handled = 0
        self.seen: set[int] = set()
        self.latencies: list[float] = []
        self.done = asyncio.Event()
        self.t_last = 0.0

    def hit(self, payload: dict[str, Any]) -> None:
        """The trivial handler's body: note the event (and its latency, if stamped)."""
        now = time.perf_counter()
        sent = payload.get("sent")
        if sent is not None:
            self.latencies.append(now - sent)
        self.seen.add(payload["i"])
        self.handled += 1
        if self.handled == self.expected:
            self.t_last = now
            self.done.set()


# Redis helpers


def _client(url: str) -> Any:
    from redis.asyncio import Redis

    return Redis.from_url(url, protocol=2)


async def _preload(
    client: Any, stream: str, fields: Callable[[int], dict[Any, Any]], n: int
) -> None:
    """XADD ``n`` entries in pipelines of 1,000 (the stream must be fresh)."""
    for start in range(0, n, 1000):
        async with client.pipeline(transaction=False) as pipe:
            for i in range(start, min(n, start + 1000)):
                pipe.xadd(stream, fields(i))
            await pipe.execute()


async def _group_backlog(client: Any, stream: str, group: str) -> int | None:
    """Pending entries plus undelivered ones (lag) of ``group`` on ``stream``."""
    for g in await client.xinfo_groups(stream):
        name = g["name"].decode() if isinstance(g["name"], bytes) else g["name"]
        if name == group:
            return int(g["pending"]) + int(g.get("lag") or 0)
    return None


async def _settled(client: Any, stream: str, group: str, wait: float = 2.0) -> int | None:
    """The group's backlog once it is 0, or after ``wait`` seconds."""
    deadline = time.perf_counter() + wait
    while True:
        backlog = await _group_backlog(client, stream, group)
        if not backlog or time.perf_counter() > deadline:
            return backlog
        await asyncio.sleep(0.01)


def delete_keys(redis_url: str, prefix: str) -> int:
    """Delete every key under ``prefix:`` (synchronous; the parent cleans up after jobs)."""
    from redis import Redis

    client = Redis.from_url(redis_url)
    try:
        keys = list(client.scan_iter(match=f"{prefix}:*", count=1000))
        return int(client.unlink(*keys)) if keys else 0
    finally:
        client.close()


def _raw_fields(i: int, sent: float | None = None) -> dict[bytes, Any]:
    body: dict[str, Any] = {"i": i} if sent is None else {"i": i, "sent": sent}
    return {DATA: json.dumps(body)}


def _nerve_fields(i: int) -> dict[str, Any]:
    from nerve import Event
    from nerve.transports.redis import FIELD_EVENT, FIELD_TYPE

    event = Event(event_type=EVENT_TYPE, payload={"i": i})
    return {FIELD_TYPE: EVENT_TYPE, FIELD_EVENT: event.model_dump_json()}


# the raw redis-py loop


async def _raw_consume(
    client: Any, job: Job, probe: _Probe, stop: asyncio.Event, block_ms: int = 100
) -> None:
    """XREADGROUP a batch, handle it, and XACK it in the same round trip as the next read."""
    to_ack: list[bytes] = []
    handler = probe.hit
    while not stop.is_set():
        async with client.pipeline(transaction=False) as pipe:
            if to_ack:
                pipe.xack(job.stream, GROUP, *to_ack)
            pipe.xreadgroup(GROUP, "c1", {job.stream: ">"}, count=job.batch, block=block_ms)
            replies = await pipe.execute()
        to_ack = []
        for _, entries in replies[-1] or ():
            for entry_id, fields in entries:
                await _async_call(handler, json.loads(fields[DATA]))
                to_ack.append(entry_id)
    if to_ack:
        await client.xack(job.stream, GROUP, *to_ack)


async def _async_call(fn: Callable[[dict[str, Any]], None], payload: dict[str, Any]) -> None:
    """The raw loop's trivial async handler (an ``async def``, like the others')."""
    fn(payload)


async def _stop(result: Result, stopping: Awaitable[Any]) -> None:
    """Await a bus's or broker's stop, timing it; give up after ``STOP_LIMIT`` seconds.

    A stop that hangs is reported as the job's error, and the figures measured before it
    are kept.
    """
    t0 = time.perf_counter()
    try:
        async with asyncio.timeout(STOP_LIMIT):
            await stopping
    except TimeoutError:
        result.error = f"stop did not return within {STOP_LIMIT:g}s"
        return
    result.stop_s = time.perf_counter() - t0


async def _until_done(probe: _Probe, stop: asyncio.Event) -> None:
    await probe.done.wait()
    stop.set()


# one job per system and scenario


async def _consume(job: Job, probe: _Probe, result: Result) -> None:
    client = _client(job.redis_url)
    try:
        if job.system == "raw":
            await _preload(client, job.stream, _raw_fields, job.events)
            await client.xgroup_create(job.stream, GROUP, id="0")
            stop = asyncio.Event()
            t0 = time.perf_counter()
            waiter = asyncio.create_task(_until_done(probe, stop))
            await _raw_consume(client, job, probe, stop)
            await waiter
            result.wall_s = probe.t_last - t0
            result.pending_after = await _settled(client, job.stream, GROUP)
        elif job.system == "faststream":
            from faststream.redis import StreamSub

            publisher = _broker(job)
            await publisher.connect()
            await _preload_faststream(publisher, job)
            await publisher.stop()
            # FastStream creates its group at "$" (new entries only): make it at "0" first.
            await client.xgroup_create(job.stream, GROUP, id="0")
            broker = _broker(job)

            @broker.subscriber(stream=StreamSub(job.stream, group=GROUP, consumer="c1"))
            async def handle(body: dict[str, Any]) -> None:
                probe.hit(body)

            t0 = time.perf_counter()
            await broker.start()
            try:
                await probe.done.wait()
                result.wall_s = probe.t_last - t0
                result.pending_after = await _settled(client, job.stream, GROUP)
            finally:
                await _stop(result, broker.stop())
        else:
            from nerve.transports.redis import EVENTS_KEY

            events_key = EVENTS_KEY.format(prefix=job.prefix)
            await _preload(client, events_key, _nerve_fields, job.events)
            bus = _nerve_bus(job, probe)
            t0 = time.perf_counter()
            await bus.start()
            try:
                await probe.done.wait()
                result.wall_s = probe.t_last - t0
            finally:
                await _stop(result, bus.stop(grace=GRACE))
            result.pending_after = await _settled(client, events_key, GROUP)
    finally:
        await client.aclose()


async def _preload_faststream(broker: Any, job: Job) -> None:
    """Pre-load in FastStream's own wire format, through its pipeline path."""
    client = await broker.connect()
    for start in range(0, job.events, 1000):
        async with client.pipeline(transaction=False) as pipe:
            for i in range(start, min(job.events, start + 1000)):
                await broker.publish({"i": i}, stream=job.stream, pipeline=pipe)
            await pipe.execute()


def _broker(job: Job) -> RedisBroker:
    """A FastStream broker with logging off (its per-message log lines would dominate)."""
    from faststream.redis import RedisBroker

    # logger=None is FastStream's documented switch (its stub types only the LoggerProto).
    return RedisBroker(job.redis_url, logger=None)  # type: ignore[arg-type]


def _nerve_bus(job: Job, probe: _Probe | None = None) -> Any:
    from nerve import Event, EventBus

    bus = EventBus(job.nerve_url, store="memory://" if job.system == "nerve-memstore" else None)
    if probe is not None:
        hit = probe.hit

        @bus.on(EVENT_TYPE, name=GROUP)
        async def handle(event: Event) -> None:
            hit(event.payload)

    return bus


async def _publish(job: Job, probe: _Probe, result: Result) -> None:
    n = job.events
    t0 = time.perf_counter()
    if job.system == "raw":
        client = _client(job.redis_url)
        try:
            t0 = time.perf_counter()
            await _preload(client, job.stream, _raw_fields, n)
            result.wall_s = time.perf_counter() - t0
            result.handled = await client.xlen(job.stream)
        finally:
            await client.aclose()
    elif job.system.startswith("faststream"):
        broker = _broker(job)
        client = await broker.connect()
        try:
            t0 = time.perf_counter()
            if job.system == "faststream-pipe":
                await _preload_faststream(broker, job)
            else:
                for i in range(n):
                    await broker.publish({"i": i}, stream=job.stream)
            result.wall_s = time.perf_counter() - t0
            result.handled = await client.xlen(job.stream)
        finally:
            await _stop(result, broker.stop())
    else:
        from nerve import Event
        from nerve.transports.redis import EVENTS_KEY

        bus = _nerve_bus(job)
        await bus.start()
        try:
            t0 = time.perf_counter()
            if job.system == "nerve-many":
                for start in range(0, n, job.batch):
                    await bus.publish_many(
                        Event(event_type=EVENT_TYPE, payload={"i": i})
                        for i in range(start, min(n, start + job.batch))
                    )
            elif job.system == "nerve-gather":
                for start in range(0, n, job.gather):
                    await asyncio.gather(
                        *(
                            bus.publish(Event(event_type=EVENT_TYPE, payload={"i": i}))
                            for i in range(start, min(n, start + job.gather))
                        )
                    )
            else:
                for i in range(n):
                    await bus.publish(Event(event_type=EVENT_TYPE, payload={"i": i}))
            result.wall_s = time.perf_counter() - t0
        finally:
            await _stop(result, bus.stop(grace=GRACE))
        client = _client(job.redis_url)
        try:
            result.handled = await client.xlen(EVENTS_KEY.format(prefix=job.prefix))
        finally:
            await client.aclose()
    result.unique = result.handled  # entries in the stream


async def _steady(job: Job, publish: Callable[[int, float], Awaitable[Any]]) -> None:
    """Publish ``job.events`` at ``job.rate`` per second, on an absolute schedule."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    perf = time.perf_counter
    for i in range(job.events):
        delay = start + i / job.rate - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        await publish(i, perf())


async def _latency(job: Job, probe: _Probe, result: Result) -> None:
    client = _client(job.redis_url)
    try:
        if job.system == "raw":
            await client.xgroup_create(job.stream, GROUP, id="0", mkstream=True)
            stop = asyncio.Event()
            consumer = asyncio.create_task(_raw_consume(client, job, probe, stop))
            producer = _client(job.redis_url)

            async def raw_publish(i: int, sent: float) -> None:
                await producer.xadd(job.stream, _raw_fields(i, sent))

            try:
                t0 = time.perf_counter()
                await _steady(job, raw_publish)
                await probe.done.wait()
                result.wall_s = probe.t_last - t0
            finally:
                stop.set()
                await consumer
                await producer.aclose()
            result.pending_after = await _settled(client, job.stream, GROUP)
        elif job.system == "faststream":
            from faststream.redis import StreamSub

            await client.xgroup_create(job.stream, GROUP, id="0", mkstream=True)
            broker = _broker(job)

            @broker.subscriber(stream=StreamSub(job.stream, group=GROUP, consumer="c1"))
            async def handle(body: dict[str, Any]) -> None:
                probe.hit(body)

            async def fs_publish(i: int, sent: float) -> None:
                await broker.publish({"i": i, "sent": sent}, stream=job.stream)

            await broker.start()
            try:
                t0 = time.perf_counter()
                await _steady(job, fs_publish)
                await probe.done.wait()
                result.wall_s = probe.t_last - t0
                result.pending_after = await _settled(client, job.stream, GROUP)
            finally:
                await _stop(result, broker.stop())
        else:
            from nerve import Event
            from nerve.transports.redis import EVENTS_KEY

            bus = _nerve_bus(job, probe)

            async def nerve_publish(i: int, sent: float) -> None:
                await bus.publish(Event(event_type=EVENT_TYPE, payload={"i": i, "sent": sent}))

            await bus.start()
            try:
                t0 = time.perf_counter()
                await _steady(job, nerve_publish)
                await probe.done.wait()
                result.wall_s = probe.t_last - t0
            finally:
                await _stop(result, bus.stop(grace=GRACE))
            result.pending_after = await _settled(
                client, EVENTS_KEY.format(prefix=job.prefix), GROUP
            )
    finally:
        await client.aclose()


async def _sqlite(job: Job, probe: _Probe, result: Result) -> None:
    from nerve import Event, EventBus

    path = Path(job.workdir or tempfile.gettempdir()) / f"{job.prefix}.db"
    if job.system == "memory":
        bus = EventBus("memory://")
    else:
        mode = {"sqlite-full": "FULL", "sqlite-off": "OFF"}.get(job.system)
        url = f"sqlite:///{path}" + (f"?synchronous={mode}" if mode else "")
        bus = EventBus(url, store="memory://" if job.system == "sqlite-memstore" else None)
    hit = probe.hit

    @bus.on(EVENT_TYPE, name=GROUP)
    async def handle(event: Event) -> None:
        hit(event.payload)

    await bus.start()
    try:
        t0 = time.perf_counter()
        if job.system == "sqlite-many":
            for start in range(0, job.events, job.batch):
                await bus.publish_many(
                    Event(event_type=EVENT_TYPE, payload={"i": i})
                    for i in range(start, min(job.events, start + job.batch))
                )
        else:
            for i in range(job.events):
                await bus.publish(Event(event_type=EVENT_TYPE, payload={"i": i}))
        await probe.done.wait()
        result.wall_s = probe.t_last - t0
        await bus.join()
    finally:
        await _stop(result, bus.stop(grace=GRACE))
        for suffix in ("", "-wal", "-shm"):
            await asyncio.to_thread(Path(f"{path}{suffix}").unlink, missing_ok=True)
    result.pending_after = 0 if not bus.unfinished else len(bus.unfinished)


RUNNERS: dict[str, Callable[[Job, _Probe, Result], Awaitable[None]]] = {
    "consume": _consume,
    "publish": _publish,
    "latency": _latency,
    "sqlite": _sqlite,
}


def _percentile_ms(ordered: list[float], q: float) -> float:
    """Nearest-rank percentile of sorted seconds, in milliseconds."""
    rank = max(0, min(len(ordered) - 1, round(q * len(ordered)) - 1))
    return ordered[rank] * 1000.0


def _peak_rss_mib() -> float:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024


async def run_job(job: Job) -> Result:
    """Run one job in the running loop; its Redis keys are deleted afterwards."""
    result = Result(scenario=job.scenario, system=job.system, events=job.events)
    probe = _Probe(job.events)
    try:
        async with asyncio.timeout(job.time_limit):
            await RUNNERS[job.scenario](job, probe, result)
    except TimeoutError:
        result.error = (
            f"timed out after {job.time_limit:g}s, {probe.handled:,} of {job.events:,} handled"
        )
    except Exception as exc:  # noqa: BLE001  # reported in the table, not raised
        result.error = f"{type(exc).__name__}: {exc}"
    finally:
        if job.scenario != "sqlite":
            await asyncio.to_thread(delete_keys, job.redis_url, job.prefix)
    if job.scenario != "publish":
        result.handled = probe.handled
        result.unique = len(probe.seen)
    if result.wall_s:
        result.events_per_s = job.events / result.wall_s
    if probe.latencies:
        ordered = sorted(probe.latencies)
        result.p50_ms = _percentile_ms(ordered, 0.50)
        result.p99_ms = _percentile_ms(ordered, 0.99)
    result.peak_rss_mib = _peak_rss_mib()
    return result


def _run_in_subprocess(job: Job) -> Result:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    cmd = [sys.executable, "-m", "bench.redis_bus", "--job", json.dumps(asdict(job))]
    failed = Result(scenario=job.scenario, system=job.system, events=job.events)
    try:
        proc = subprocess.run(  # noqa: S603  # our own interpreter and module, no shell
            cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=job.time_limit + 30
        )
    except subprocess.TimeoutExpired:
        failed.error = f"process killed after {job.time_limit + 30:g}s"
        return failed
    finally:
        if job.scenario != "sqlite":
            delete_keys(job.redis_url, job.prefix)  # when the child could not
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines:
        failed.error = f"exit {proc.returncode}: {proc.stderr.strip()[-500:]}"
        return failed
    return Result(**json.loads(lines[-1]))


# the benchmark


@dataclass(slots=True)
class Config:
    scenarios: list[str]
    sizes: dict[str, float]
    redis_url: str
    rate: float
    batch: int
    gather: int
    timeout: float
    in_process: bool
    workdir: str
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex[:8])

    def jobs(self, scenario: str) -> list[Job]:
        if scenario == "latency":
            events = max(1, round(self.rate * self.sizes["latency_s"]))
        else:
            events = int(self.sizes[scenario])
        return [
            Job(
                scenario=scenario,
                system=system,
                events=events,
                redis_url=self.redis_url,
                prefix=f"nerve-bench-{self.run_id}-{scenario}-{system}",
                batch=self.batch,
                gather=self.gather,
                rate=self.rate,
                time_limit=self.timeout,
                workdir=self.workdir,
            )
            for system in SCENARIOS[scenario]
        ]


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m bench.redis_bus",
        description="nerve on Redis vs FastStream vs a raw redis-py loop; SQLite vs memory.",
    )
    p.add_argument("--quick", action="store_true", help="small sizes: a smoke run")
    p.add_argument("--scenarios", default=",".join(SCENARIOS), help="comma-separated")
    p.add_argument("--events", type=int, metavar="N", help="consume: pre-loaded events")
    p.add_argument("--publish-events", type=int, metavar="N", help="publish: events")
    p.add_argument("--sqlite-events", type=int, metavar="N", help="sqlite: events")
    p.add_argument("--duration", type=float, metavar="S", help="latency: seconds at --rate")
    p.add_argument("--rate", type=float, default=500.0, help="latency: events/s (500)")
    p.add_argument("--batch", type=int, default=1000, help="raw read/XADD batch (1000)")
    p.add_argument("--gather", type=int, default=100, help="nerve-gather chunk (100)")
    p.add_argument("--redis-url", default=DEFAULT_REDIS, help=f"Redis ({DEFAULT_REDIS})")
    p.add_argument("--timeout", type=float, default=180.0, help="seconds per job (bound)")
    p.add_argument("--in-process", action="store_true", help="no subprocesses (no own RSS)")
    p.add_argument("--json", type=Path, metavar="PATH", help="also write the results here")
    p.add_argument("--check", action="store_true", help="exit 1 when a target is missed")
    p.add_argument(
        "--profile",
        nargs="?",
        const="consume",
        metavar="SCENARIO",
        help="instead of the table: pyinstrument over nerve's side of a scenario (default consume)",
    )
    p.add_argument("--job", help=argparse.SUPPRESS)  # internal: run one job, print JSON
    return p


def _config(args: argparse.Namespace) -> Config:
    sizes: dict[str, float] = dict(QUICK if args.quick else FULL)
    for key, value in (
        ("consume", args.events),
        ("publish", args.publish_events),
        ("sqlite", args.sqlite_events),
        ("latency_s", args.duration),
    ):
        if value:
            sizes[key] = value
    wanted = [s.strip() for s in args.scenarios.split(",") if s.strip()]
    unknown = [s for s in wanted if s not in SCENARIOS]
    if unknown:
        raise SystemExit(f"unknown scenario(s) {unknown}; known: {', '.join(SCENARIOS)}")
    return Config(
        scenarios=wanted,
        sizes=sizes,
        redis_url=args.redis_url,
        rate=args.rate,
        batch=args.batch,
        gather=args.gather,
        timeout=args.timeout,
        in_process=args.in_process,
        workdir=tempfile.gettempdir(),
    )


def _hiredis() -> str | None:
    try:
        return metadata.version("hiredis")
    except metadata.PackageNotFoundError:
        return None


def _versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for name in ("redis", "faststream"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    out["hiredis"] = _hiredis()
    return out


def _redis_server(url: str) -> str:
    from redis import Redis

    client = Redis.from_url(url)
    try:
        return str(client.info("server")["redis_version"])
    finally:
        client.close()


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a and b else None


def _compare(scenario: str, results: list[Result]) -> dict[str, Any]:
    by = {r.system: asdict(r) for r in results}
    rate = {r.system: r.events_per_s for r in results}
    out: dict[str, Any] = {"systems": by, "targets": []}
    for r in results:
        by[r.system]["vs_faststream"] = _ratio(r.events_per_s, rate.get("faststream"))
        by[r.system]["vs_raw"] = _ratio(r.events_per_s, rate.get("raw"))
        by[r.system]["vs_memory"] = _ratio(r.events_per_s, rate.get("memory"))
    targets: list[tuple[str, float | None, float]] = []
    if scenario == "consume":
        targets = [
            ("nerve >= 5x faststream", by.get("nerve", {}).get("vs_faststream"), 5.0),
            ("nerve >= 0.5x raw", by.get("nerve", {}).get("vs_raw"), 0.5),
        ]
    elif scenario == "publish":
        targets = [("nerve batch path >= 0.5x raw pipelined XADD", _best_nerve_publish(by), 0.5)]
    out["targets"] = [
        {"target": t, "ratio": v, "min": m, "met": None if v is None else v >= m}
        for t, v, m in targets
    ]
    return out


def _best_nerve_publish(by: dict[str, Any]) -> float | None:
    """nerve's batch path (``publish_many``) against raw pipelined XADD."""
    row = by.get("nerve-many")
    return None if row is None else row["vs_raw"]


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Run the benchmark, print its tables, and return the results.

    Args:
        argv: command-line arguments without the program name (None: ``sys.argv[1:]``).

    Returns:
        ``{"machine", "config", "scenarios": {"consume": {"systems": {name: {...}},
        "targets": [...]}, ...}, "ok", "targets_met"}``. Each system holds the fields of
        :class:`Result` plus ``vs_faststream``, ``vs_raw`` and ``vs_memory`` ratios of
        events/s. ``ok`` is False when a job failed. With ``--profile``:
        ``{"profile": text}``.

    Calls ``asyncio.run``: call it outside a running event loop.
    """
    args = _parser().parse_args(argv)
    if args.job:
        job = Job(**json.loads(args.job))
        result = asyncio.run(run_job(job))
        print(json.dumps(asdict(result)), flush=True)
        return {"job": asdict(result)}
    config = _config(args)
    if args.profile:
        return {"profile": profile(config, args.profile)}
    machine = machine_info()
    machine.update(_versions())
    machine["redis_server"] = _redis_server(config.redis_url)
    results: dict[str, Any] = {
        "machine": machine,
        "config": {
            "quick": args.quick,
            "sizes": config.sizes,
            "rate": config.rate,
            "batch": config.batch,
            "gather": config.gather,
            "in_process": config.in_process,
            "timeout_s": config.timeout,
            "key_prefix": f"nerve-bench-{config.run_id}-",  # every key the run made
        },
        "scenarios": {},
    }
    _print_machine(machine)
    print(
        f"redis server {machine['redis_server']}, redis-py {machine['redis']}, "
        f"faststream {machine['faststream']}, hiredis {machine['hiredis'] or 'not installed'}\n",
        flush=True,
    )
    for scenario in config.scenarios:
        done = []
        for job in config.jobs(scenario):
            if config.in_process:
                done.append(asyncio.run(run_job(job)))
            else:
                done.append(_run_in_subprocess(job))
            print(f"{scenario} {job.system}: done", file=sys.stderr, flush=True)
        results["scenarios"][scenario] = _compare(scenario, done)
    every = [s for c in results["scenarios"].values() for s in c["systems"].values()]
    results["ok"] = all(not s["error"] for s in every)
    results["targets_met"] = all(
        t["met"] for c in results["scenarios"].values() for t in c["targets"]
    )
    print(report(results), flush=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return results


# report

TITLES = {
    "consume": "consume: drain a pre-loaded stream, one consumer",
    "publish": "publish: into a stream, nobody consuming",
    "latency": "latency: steady rate, publish -> handler",
    "sqlite": "sqlite: nerve's SQLite transport vs memory://",
}


def report(results: dict[str, Any]) -> str:
    """One table per scenario, then the targets, as markdown-compatible text."""
    lines: list[str] = []
    for scenario, c in results["scenarios"].items():
        rows = []
        for s in c["systems"].values():
            ratios = (
                [_x(s["vs_memory"])]
                if scenario == "sqlite"
                else [_x(s["vs_faststream"]), _x(s["vs_raw"])]
            )
            rows.append(
                [
                    s["system"],
                    f"{s['events']:,}",
                    _f(s["wall_s"], ".3f"),
                    _f(s["events_per_s"], ",.0f"),
                    *ratios,
                    _f(s["p50_ms"], ",.2f"),
                    _f(s["p99_ms"], ",.2f"),
                    f"{s['handled']:,}/{s['unique']:,}",
                    "-" if s["pending_after"] is None else str(s["pending_after"]),
                    _f(s["peak_rss_mib"], ".1f"),
                    _f(s["stop_s"], ".2f"),
                    (s["error"] or "ok")[:60],
                ]
            )
        header = [
            "system",
            "events",
            "wall s",
            "events/s",
            *(["x memory"] if scenario == "sqlite" else ["x faststream", "x raw"]),
            "p50 ms",
            "p99 ms",
            "handled/unique",
            "left",
            "peak RSS MiB",
            "stop s",
            "status",
        ]
        lines += [f"### {TITLES[scenario]}", "", *_table(header, rows), ""]
    targets = [t for c in results["scenarios"].values() for t in c["targets"]]
    if targets:
        lines += _table(
            ["target", "ratio", "met"],
            [
                [
                    t["target"],
                    _x(t["ratio"]),
                    {True: "yes", False: "NO", None: "-"}[t["met"]],
                ]
                for t in targets
            ],
        )
        lines.append("")
    lines.append(
        "handled/unique: handler calls / distinct events (publish: entries in the stream). "
        "left: the group's pending entries + lag afterwards (0: all acknowledged). "
        "stop s: time to stop the bus / broker afterwards (not in wall s). "
        "nerve-gather: chunks of concurrent bus.publish calls; -many: bus.publish_many "
        "in chunks of --batch."
    )
    if results["config"]["quick"]:
        lines.append("--quick: a smoke run; the targets are for the full sizes.")
    return "\n".join(lines)


def _x(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:,.2f}x" if value >= 0.1 else f"{value:.3f}x"


# profile


def profile(config: Config, scenario: str) -> str:
    """pyinstrument over nerve's job in one scenario (in this process; no timing kept)."""
    try:
        from pyinstrument import Profiler
    except ImportError:
        raise SystemExit("--profile needs pyinstrument: pip install -e '.[bench]'") from None
    system = {"consume": "nerve", "publish": "nerve", "latency": "nerve", "sqlite": "sqlite"}
    if scenario not in system:
        raise SystemExit(f"unknown scenario {scenario!r}; known: {', '.join(system)}")
    job = next(j for j in config.jobs(scenario) if j.system == system[scenario])
    profiler = Profiler(interval=0.0005, async_mode="disabled")
    profiler.start()
    result = asyncio.run(run_job(job))
    profiler.stop()
    text: str = profiler.output_text(unicode=False, color=False, show_all=False)
    summary = (
        f"{job.system}, {scenario}, {job.events:,} events under the profiler: "
        f"{_f(result.events_per_s, ',.0f')} events/s (slowed by sampling); "
        f"error: {result.error}\n"
    )
    print(summary + text)
    return summary + text


def _cli() -> int:
    results = main(sys.argv[1:])
    if "profile" in results:
        return 0
    if "job" in results:
        return 0  # the parent reads the error from the JSON line
    if not results["ok"]:
        return 1
    if "--check" in sys.argv[1:] and not results["targets_met"]:
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(_cli())
