"""The same workload on every nerve transport, against FastStream on the same broker.

Usage::

    python -m bench.brokers                   # every transport and scenario, full sizes
    python -m bench.brokers --quick           # a smoke run (small counts, seconds per job)
    python -m bench.brokers --transports redis,nats --scenarios throughput
    python -m bench.brokers --json out.json
    python -m bench.brokers --profile amqp --scenarios consume   # pyinstrument, no table

Issue 4: "the same 50,000-event workload on every transport in one run, events/s and
p50/p99, against FastStream on the same broker where FastStream supports it; nerve at
least matches it." Transports: ``memory``, ``sqlite``, ``redis``, ``nats``, ``amqp``
(RabbitMQ), ``kafka``. Scenarios:

throughput
    One process subscribes a trivial async handler, then publishes 50,000 events in
    batches of 1,000 (nerve: ``bus.publish_many``; FastStream: its fastest path on each
    broker, below) while it handles them. Events/s from the first publish to the last
    handler call: publishing and handling together, end to end.
consume
    The 50,000 events are published first (with the subscription declared, so the broker
    keeps them for it; ``publish s`` is that preload, nobody consuming), then the consumer
    starts. Events/s from the first handler call to the last (the drain rate); the time
    from starting the consumer to the first call (``first s``: connecting, joining a
    Kafka group) is reported apart, since nerve joins a Kafka group when it declares the
    subscription (during the preload) and FastStream when its broker starts.
    Not for ``memory://`` (an in-process bus holds at most ``max_pending`` events).
latency
    A producer publishes one event at a time at a steady 500 events/s for 5 s (quick:
    1 s) while the consumer runs in the same process; each payload carries
    ``time.perf_counter()`` taken just before the publish call, and the handler measures
    publish -> handler start. p50/p99.

Systems, on each broker:

``nerve``
    ``EventBus(url)`` with ``@bus.on("bench.event", name="bench")``, default settings,
    and the transport's production-like store: the SQLite store in the same file on
    ``sqlite://``, the Redis store on ``redis://``, the NATS store on ``nats://`` (each
    transport's default), and on ``amqp://`` and ``kafka://`` (which hold no store) a
    SQLite store file, ``kafka://``'s own default (``amqp://`` defaults to ``memory://``,
    one process only: the next row).
``nerve-memstore``
    the same with ``store="memory://"``: what the durable store's idempotency marks cost,
    and the like-for-like row against FastStream (which keeps no marks).
``faststream`` (0.7, logging off, its defaults otherwise)
    Redis: ``StreamSub(stream, group=..., consumer=...)`` (one message at a time, one XACK
    each), publishing into redis-py pipelines of 1,000. NATS: a JetStream push
    subscriber with a durable consumer (explicit ack after the handler; FastStream's
    recommended ``PullSub`` was slower here at every ``batch_size`` tried, 1 to 500),
    publishing 1,000 concurrent ``broker.publish`` calls (each waits for its stream ack).
    RabbitMQ: a durable quorum queue bound to a topic exchange, acked after the handler
    (``AckPolicy.REJECT_ON_ERROR``, FastStream's default), publishing 1,000 concurrent
    confirmed ``broker.publish`` calls. Kafka: a consumer group reading from ``earliest``
    with ``AckPolicy.ACK`` (the offset committed after each message: at least once, as
    nerve), publishing ``no_confirm`` sends of 1,000 then awaiting their futures.

Each job (one system, one transport, one scenario) runs in its own process
(``python -m bench.brokers --job``), so its peak RSS is its own, bounded by ``--timeout``
(inside its loop, then killed 30 s later); a hung job is reported, never waited on. Every
name it creates on a broker starts with a per-job prefix (``nb<run>-<tr>-<sce>-<system>``)
and is deleted afterwards by the job and again by the parent (NATS streams, RabbitMQ queues
and exchanges, Redis keys, Kafka topics, SQLite files). A transport whose module or broker is
missing is reported as ``unavailable: <reason>`` and the run goes on.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import uuid
import warnings
from collections.abc import Awaitable, Sequence
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit

from bench.memory_bus import ROOT, _f, _print_machine, _table, machine_info
from bench.redis_bus import (
    GRACE,
    STOP_LIMIT,
    _peak_rss_mib,
    _percentile_ms,
    _Probe,
    _x,
    delete_keys,
)

TRANSPORTS = ("memory", "sqlite", "redis", "nats", "amqp", "kafka")
SCENARIOS = ("throughput", "consume", "latency")
#: Brokers FastStream supports (memory:// and sqlite:// have no FastStream counterpart).
FASTSTREAM = frozenset({"redis", "nats", "amqp", "kafka"})
FULL: dict[str, float] = {"events": 50_000, "latency_s": 5.0}
QUICK: dict[str, float] = {"events": 500, "latency_s": 1.0}
EVENT_TYPE = "bench.event"
GROUP = "bench"  # nerve's subscription name; FastStream's group / durable consumer
DEFAULT_URLS = {
    "redis": "redis://127.0.0.1:6379/0",
    "nats": "nats://127.0.0.1:4222",
    "amqp": "amqp://guest:guest@127.0.0.1:5672/",
    "kafka": "127.0.0.1:9092",
}
KAFKA_PARTITIONS = 4
CLEANUP_LIMIT = 60.0  # seconds the parent gives one job's cleanup


def systems_of(transport: str) -> tuple[str, ...]:
    """The systems run on a transport: nerve, nerve with the memory store, FastStream."""
    if transport == "memory":
        return ("nerve",)
    if transport in FASTSTREAM:
        return ("nerve", "nerve-memstore", "faststream")
    return ("nerve", "nerve-memstore")


@dataclass(frozen=True, slots=True)
class Job:
    """One system on one transport in one scenario, run in a process of its own.

    Attributes:
        transport: one of :data:`TRANSPORTS`.
        scenario: one of :data:`SCENARIOS`.
        system: ``nerve``, ``nerve-memstore`` or ``faststream``.
        events: events to publish (latency: ``rate * duration``).
        prefix: every name the job creates on its broker starts with it.
        urls: broker addresses (``redis``, ``nats``, ``amqp``: URLs; ``kafka``: host:port).
        batch: publish batch (``publish_many`` chunk, pipeline size, concurrent publishes).
        rate: latency: events per second.
        time_limit: seconds the job may run before it is abandoned as timed out.
        workdir: where SQLite files go.
        options: extra URL options for nerve's bus (``prefetch=1000``), from
            ``--nerve-option``.
    """

    transport: str
    scenario: str
    system: str
    events: int
    prefix: str
    urls: dict[str, str] = field(default_factory=lambda: dict(DEFAULT_URLS))
    batch: int = 1000
    rate: float = 500.0
    time_limit: float = 180.0
    workdir: str = ""
    options: str = ""

    @property
    def db(self) -> Path:
        """The job's SQLite file (the transport's on ``sqlite://``, else the store's)."""
        return Path(self.workdir or tempfile.gettempdir()) / f"{self.prefix}.db"


@dataclass(slots=True)
class Result:
    """What one job measured. Times in seconds, latencies in milliseconds.

    ``handled`` counts handler calls, ``unique`` distinct events among them.
    ``first_s``: from the start of the measure to the first handler call (consume: the
    consumer's start-up, e.g. a Kafka group join). ``publish_s``: how long publishing took
    (throughput: while handling; consume: the preload, nobody consuming). ``stop_s``:
    stopping the bus or broker (not in ``wall_s``).
    ``cleanup``: None when everything the job made on its broker was deleted.
    """

    transport: str
    scenario: str
    system: str
    events: int
    handled: int = 0
    unique: int = 0
    wall_s: float | None = None
    events_per_s: float | None = None
    first_s: float | None = None
    publish_s: float | None = None
    p50_ms: float | None = None
    p99_ms: float | None = None
    peak_rss_mib: float | None = None
    stop_s: float | None = None
    error: str | None = None
    cleanup: str | None = None


class System(Protocol):
    """What a scenario drives: one bus or broker with one subscriber."""

    async def prepare(self) -> None:
        """Connect and declare what it subscribes to (published events are then kept)."""
        ...

    async def publish_batch(self, start: int, stop: int) -> None: ...
    async def publish_one(self, i: int, sent: float) -> None: ...
    async def start(self) -> None: ...
    async def stop(self, result: Result) -> None: ...


class Probe(_Probe):
    """bench.redis_bus's probe (handler calls, distinct events, latencies), plus the start
    of the measure (``t0``) and the first handler call (``t_first``)."""

    __slots__ = ("t0", "t_first")

    def __init__(self, expected: int) -> None:
        super().__init__(expected)
        self.t0 = 0.0
        self.t_first = 0.0

    def hit(self, payload: dict[str, Any]) -> None:
        if not self.handled:
            self.t_first = time.perf_counter()
        super().hit(payload)


async def _stop(result: Result, stopping: Awaitable[Any]) -> None:
    """Await a bus's or broker's stop, timing it; after ``STOP_LIMIT`` s report it as hung.

    (bench.redis_bus's ``_stop``, for this module's :class:`Result`.)
    """
    t0 = time.perf_counter()
    try:
        async with asyncio.timeout(STOP_LIMIT):
            await stopping
    except TimeoutError:
        result.error = f"stop did not return within {STOP_LIMIT:g}s"
        return
    result.stop_s = time.perf_counter() - t0


# nerve


def nerve_url(job: Job) -> str:
    """The bus URL of a nerve job (with the durable store as ``store=`` where needed)."""
    store = f"&store=sqlite:///{job.db.with_name(job.prefix + '-store.db')}"
    durable = job.system == "nerve"
    extra = f"&{job.options}" if job.options else ""
    if job.transport == "memory":
        return "memory://"
    if job.transport == "sqlite":
        return f"sqlite:///{job.db}" + (f"?{job.options}" if job.options else "")
    if job.transport in ("redis", "nats"):  # their own store
        return f"{job.urls[job.transport]}?prefix={job.prefix}{extra}"
    if job.transport == "amqp":
        return f"{job.urls['amqp']}?prefix={job.prefix}{extra}" + (store if durable else "")
    if job.transport == "kafka":
        return (
            f"kafka://{job.urls['kafka']}?prefix={job.prefix}&partitions={KAFKA_PARTITIONS}"
            f"&session_timeout_ms=2000{extra}" + (store if durable else "")
        )
    raise ValueError(f"unknown transport {job.transport!r}")


class NerveSystem:
    def __init__(self, job: Job, probe: Probe) -> None:
        from nerve import Event, EventBus

        self.job = job
        self.bus = EventBus(
            nerve_url(job), store="memory://" if job.system == "nerve-memstore" else None
        )
        self._event = Event
        hit = probe.hit

        @self.bus.on(EVENT_TYPE, name=GROUP)
        async def handle(event: Event) -> None:
            hit(event.payload)

    async def prepare(self) -> None:
        await self.bus.publish_many([])  # connects and declares the subscription

    async def publish_batch(self, start: int, stop: int) -> None:
        event = self._event
        await self.bus.publish_many(
            [event(event_type=EVENT_TYPE, payload={"i": i}) for i in range(start, stop)]
        )

    async def publish_one(self, i: int, sent: float) -> None:
        await self.bus.publish(self._event(event_type=EVENT_TYPE, payload={"i": i, "sent": sent}))

    async def start(self) -> None:
        await self.bus.start()

    async def stop(self, result: Result) -> None:
        await _stop(result, self.bus.stop(grace=GRACE))


# FastStream, one class per broker


class _FastStream:
    """Shared by the FastStream systems: a broker with logging off and one subscriber."""

    broker: Any

    def __init__(self, job: Job, probe: Probe) -> None:
        raise NotImplementedError

    async def prepare(self) -> None:
        raise NotImplementedError

    async def publish_batch(self, start: int, stop: int) -> None:
        await asyncio.gather(*(self._publish({"i": i}) for i in range(start, stop)))

    async def publish_one(self, i: int, sent: float) -> None:
        await self._publish({"i": i, "sent": sent})

    async def _publish(self, body: dict[str, Any]) -> None:
        raise NotImplementedError

    async def start(self) -> None:
        await self.broker.start()

    async def stop(self, result: Result) -> None:
        await _stop(result, self.broker.stop())


class RedisFastStream(_FastStream):
    def __init__(self, job: Job, probe: Probe) -> None:
        from faststream.redis import RedisBroker, StreamSub

        self.url = job.urls["redis"]
        self.stream = f"{job.prefix}:stream"
        # logger=None is FastStream's documented switch (its stub types only LoggerProto).
        self.broker = broker = RedisBroker(self.url, logger=None)  # type: ignore[arg-type]
        hit = probe.hit

        @broker.subscriber(stream=StreamSub(self.stream, group=GROUP, consumer="c1"))
        async def handle(body: dict[str, Any]) -> None:
            hit(body)

    async def prepare(self) -> None:
        from redis.asyncio import Redis

        # FastStream creates its group at "$" (new entries only): make it at "0" first.
        client = Redis.from_url(self.url)
        try:
            await client.xgroup_create(self.stream, GROUP, id="0", mkstream=True)
        finally:
            await client.aclose()
        await self.broker.connect()

    async def publish_batch(self, start: int, stop: int) -> None:
        client = await self.broker.connect()
        async with client.pipeline(transaction=False) as pipe:
            for i in range(start, stop):
                await self.broker.publish({"i": i}, stream=self.stream, pipeline=pipe)
            await pipe.execute()

    async def _publish(self, body: dict[str, Any]) -> None:
        await self.broker.publish(body, stream=self.stream)


class NatsFastStream(_FastStream):
    def __init__(self, job: Job, probe: Probe) -> None:
        from faststream.nats import JStream, NatsBroker

        self.stream = f"{job.prefix}-fs"
        self.subject = f"{job.prefix}.fs"
        self.broker = broker = NatsBroker(job.urls["nats"], logger=None)
        hit = probe.hit

        async def handle(body: dict[str, Any]) -> None:
            hit(body)

        with warnings.catch_warnings():
            # "a push consumer with durable can't be scaled horizontally": one consumer here
            warnings.filterwarnings("ignore", "The JetStream Push consumer", RuntimeWarning)
            broker.subscriber(
                self.subject, stream=JStream(self.stream, subjects=[self.subject]), durable=GROUP
            )(handle)

    async def prepare(self) -> None:
        client = await self.broker.connect()
        await client.jetstream().add_stream(name=self.stream, subjects=[self.subject])

    async def _publish(self, body: dict[str, Any]) -> None:
        await self.broker.publish(body, self.subject, stream=self.stream)


class RabbitFastStream(_FastStream):
    def __init__(self, job: Job, probe: Probe) -> None:
        from faststream.rabbit import (
            ExchangeType,
            QueueType,
            RabbitBroker,
            RabbitExchange,
            RabbitQueue,
        )

        name = f"{job.prefix}.fs"
        self.exchange = RabbitExchange(name, type=ExchangeType.TOPIC, durable=True)
        self.queue = RabbitQueue(
            name, durable=True, queue_type=QueueType.QUORUM, routing_key=EVENT_TYPE
        )
        self.broker = broker = RabbitBroker(job.urls["amqp"], logger=None)
        hit = probe.hit

        @broker.subscriber(self.queue, self.exchange)
        async def handle(body: dict[str, Any]) -> None:
            hit(body)

    async def prepare(self) -> None:
        await self.broker.connect()
        exchange = await self.broker.declare_exchange(self.exchange)
        queue = await self.broker.declare_queue(self.queue)
        await queue.bind(exchange, routing_key=EVENT_TYPE)

    async def _publish(self, body: dict[str, Any]) -> None:
        await self.broker.publish(
            body, exchange=self.exchange, routing_key=EVENT_TYPE, persist=True
        )


class KafkaFastStream(_FastStream):
    def __init__(self, job: Job, probe: Probe) -> None:
        from faststream import AckPolicy
        from faststream.kafka import KafkaBroker

        self.bootstrap = job.urls["kafka"]
        self.topic = f"{job.prefix}.fs"
        self.broker = broker = KafkaBroker(self.bootstrap, logger=None)
        hit = probe.hit

        @broker.subscriber(
            self.topic,
            group_id=f"{job.prefix}.fs",
            auto_offset_reset="earliest",
            ack_policy=AckPolicy.ACK,
        )
        async def handle(body: dict[str, Any]) -> None:
            hit(body)

    async def prepare(self) -> None:
        from aiokafka.admin import (  # type: ignore[import-untyped]  # no type hints
            AIOKafkaAdminClient,
            NewTopic,
        )

        admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap)
        await admin.start()
        try:
            await admin.create_topics(
                [NewTopic(self.topic, num_partitions=KAFKA_PARTITIONS, replication_factor=1)]
            )
        finally:
            await admin.close()
        await self.broker.connect()

    async def publish_batch(self, start: int, stop: int) -> None:
        futures = [
            await self.broker.publish({"i": i}, self.topic, no_confirm=True)
            for i in range(start, stop)
        ]
        await asyncio.gather(*futures)

    async def _publish(self, body: dict[str, Any]) -> None:
        await self.broker.publish(body, self.topic)


FASTSTREAM_SYSTEMS: dict[str, type[_FastStream]] = {
    "redis": RedisFastStream,
    "nats": NatsFastStream,
    "amqp": RabbitFastStream,
    "kafka": KafkaFastStream,
}


def _make(job: Job, probe: Probe) -> System:
    if job.system != "faststream":
        return NerveSystem(job, probe)
    return FASTSTREAM_SYSTEMS[job.transport](job, probe)


# scenarios


async def _publish_all(job: Job, system: System) -> None:
    for start in range(0, job.events, job.batch):
        await system.publish_batch(start, min(job.events, start + job.batch))


async def _throughput(job: Job, system: System, probe: Probe, result: Result) -> None:
    try:
        await system.prepare()
        await system.start()
        probe.t0 = time.perf_counter()
        await _publish_all(job, system)
        result.publish_s = time.perf_counter() - probe.t0
        await probe.done.wait()
    finally:
        await system.stop(result)


async def _consume(job: Job, system: System, probe: Probe, result: Result) -> None:
    try:
        await system.prepare()
        t0 = time.perf_counter()
        await _publish_all(job, system)
        result.publish_s = time.perf_counter() - t0
        probe.t0 = time.perf_counter()
        await system.start()
        await probe.done.wait()
    finally:
        await system.stop(result)  # also when the preload failed or timed out


async def _latency(job: Job, system: System, probe: Probe, result: Result) -> None:
    try:
        await system.prepare()
        await system.start()
        loop = asyncio.get_running_loop()
        perf = time.perf_counter
        probe.t0 = perf()
        start = loop.time()
        for i in range(job.events):
            delay = start + i / job.rate - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            await system.publish_one(i, perf())
        result.publish_s = perf() - probe.t0
        await probe.done.wait()
    finally:
        await system.stop(result)


RUNNERS = {"throughput": _throughput, "consume": _consume, "latency": _latency}


async def run_job(job: Job) -> Result:
    """Run one job in the running loop, then delete what it made on its broker."""
    result = Result(
        transport=job.transport, scenario=job.scenario, system=job.system, events=job.events
    )
    probe = Probe(job.events)
    try:
        async with asyncio.timeout(job.time_limit):
            system = _make(job, probe)
            await RUNNERS[job.scenario](job, system, probe, result)
        result.wall_s = probe.t_last - probe.t0
    except TimeoutError:
        result.error = (
            f"timed out after {job.time_limit:g}s, {probe.handled:,} of {job.events:,} handled"
        )
    except Exception as exc:  # noqa: BLE001  # reported in the table, not raised
        result.error = f"{type(exc).__name__}: {exc}"
    finally:
        result.cleanup = await cleanup(job)
    result.handled = probe.handled
    result.unique = len(probe.seen)
    if probe.handled and probe.t0:
        result.first_s = probe.t_first - probe.t0
    if job.scenario == "consume":
        # the drain rate: start-up (first_s) differs in kind between systems (nerve joins
        # a Kafka group when it declares the subscription, during the preload; FastStream
        # when its broker starts), so it is reported apart and left out here
        drain = probe.t_last - probe.t_first if result.wall_s else 0.0
        if drain > 0:
            result.events_per_s = (job.events - 1) / drain
    elif result.wall_s:
        result.events_per_s = job.events / result.wall_s
    if probe.latencies:
        ordered = sorted(probe.latencies)
        result.p50_ms = _percentile_ms(ordered, 0.50)
        result.p99_ms = _percentile_ms(ordered, 0.99)
    result.peak_rss_mib = _peak_rss_mib()
    return result


# cleanup: everything under the job's prefix


async def cleanup(job: Job) -> str | None:
    """Delete what the job made on its broker and disk; None, or what could not be deleted.

    Idempotent: the job runs it, and the parent again (the job may have been killed).
    """
    failed: list[str] = []
    steps = [_delete_files(job)]
    if job.transport == "redis":
        steps.append(_delete_redis(job))
    elif job.transport == "nats":
        steps.append(_delete_nats(job))
    elif job.transport == "amqp":
        steps.append(_delete_amqp(job))
    elif job.transport == "kafka":
        steps.append(_delete_kafka(job))
    for step in steps:
        try:
            async with asyncio.timeout(30):
                await step
        except Exception as exc:  # noqa: BLE001  # reported, never raised
            failed.append(f"{type(exc).__name__}: {exc}"[:120])
    return "; ".join(failed) or None


async def _delete_files(job: Job) -> None:
    for path in job.db.parent.glob(f"{job.prefix}*.db*"):
        path.unlink(missing_ok=True)


async def _delete_redis(job: Job) -> None:
    await asyncio.to_thread(delete_keys, job.urls["redis"], job.prefix)


async def _delete_nats(job: Job) -> None:
    import nats
    from nats.js.errors import NotFoundError

    from nerve.stores.nats.layout import Layout

    client = await nats.connect(job.urls["nats"], max_reconnect_attempts=0, connect_timeout=5)
    try:
        js = client.jetstream(timeout=10)
        store = Layout(job.prefix).streams()  # the NATS store's buckets and streams
        for stream in (f"{job.prefix}-events", f"{job.prefix}-fs", *store):
            with contextlib.suppress(NotFoundError):
                await js.delete_stream(stream)
    finally:
        await client.close()


async def _delete_amqp(job: Job) -> None:
    import aio_pika

    p = job.prefix
    connection = await aio_pika.connect(job.urls["amqp"])
    try:
        channel = await connection.channel()
        for queue in (f"{p}.sub.{GROUP}", f"{p}.parked", f"{p}.fs"):
            await channel.queue_delete(queue)  # a missing queue is no error
        for exchange in (f"{p}.events", f"{p}.delay", f"{p}.fs"):
            await channel.exchange_delete(exchange)
    finally:
        await connection.close()


async def _delete_kafka(job: Job) -> None:
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(bootstrap_servers=job.urls["kafka"])
    await admin.start()
    try:
        mine = [t for t in await admin.list_topics() if t.startswith(f"{job.prefix}.")]
        if mine:
            await admin.delete_topics(mine)
    finally:
        await admin.close()


# the parent: preflight, jobs in subprocesses


def unavailable(transport: str, urls: dict[str, str]) -> str | None:
    """Why a transport cannot run here (its module or broker is missing), or None."""
    from nerve.settings import Settings
    from nerve.transports import transport_from_url

    probe_url = {
        "memory": "memory://",
        "sqlite": "sqlite:///unused.db",
        "redis": f"{urls['redis']}?prefix=nb-probe",
        "nats": f"{urls['nats']}?prefix=nb-probe",
        "amqp": f"{urls['amqp']}?prefix=nb-probe&store=memory://",
        "kafka": f"kafka://{urls['kafka']}?prefix=nb-probe&store=memory://",
    }[transport]
    try:
        transport_from_url(probe_url, Settings())
    except Exception as exc:  # noqa: BLE001  # a missing or broken module: reported
        return f"nerve's {transport}:// transport: {type(exc).__name__}: {exc}"[:200]
    if transport in ("memory", "sqlite"):
        return None
    where = urls[transport] if "//" in urls[transport] else f"//{urls[transport]}"
    parts = urlsplit(where)
    host, port = parts.hostname or "127.0.0.1", parts.port
    try:
        with socket.create_connection((host, port or 0), timeout=3):
            pass
    except OSError as exc:
        return f"no broker on {host}:{port} ({exc})"
    return None


def _run_in_subprocess(job: Job) -> Result:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    cmd = [sys.executable, "-m", "bench.brokers", "--job", json.dumps(asdict(job))]
    failed = Result(
        transport=job.transport, scenario=job.scenario, system=job.system, events=job.events
    )
    kill_after = job.time_limit + 30
    try:
        proc = subprocess.run(  # noqa: S603  # our own interpreter and module, no shell
            cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=kill_after
        )
    except subprocess.TimeoutExpired:
        failed.error = f"hung: process killed after {kill_after:g}s"
        failed.cleanup = _cleanup_sync(job)
        return failed
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines:
        failed.error = f"exit {proc.returncode}: {proc.stderr.strip()[-300:]}"
        failed.cleanup = _cleanup_sync(job)
        return failed
    result = Result(**json.loads(lines[-1]))
    # Again from here, whether the job managed or not: what a background task of the
    # job's client re-created after its own cleanup (a Kafka topic) goes too.
    result.cleanup = _cleanup_sync(job)
    return result


def _cleanup_sync(job: Job) -> str | None:
    async def bounded() -> str | None:
        async with asyncio.timeout(CLEANUP_LIMIT):
            return await cleanup(job)

    try:
        return asyncio.run(bounded())
    except Exception as exc:  # noqa: BLE001  # reported, never raised
        return f"{type(exc).__name__}: {exc}"


@dataclass(slots=True)
class Config:
    transports: list[str]
    scenarios: list[str]
    systems: list[str] | None
    sizes: dict[str, float]
    urls: dict[str, str]
    rate: float
    batch: int
    timeout: float
    in_process: bool
    workdir: str
    options: dict[str, list[str]] = field(default_factory=dict)
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex[:8])

    def jobs(self, transport: str, scenario: str) -> list[Job]:
        if scenario == "consume" and transport == "memory":
            return []
        if scenario == "latency":
            events = max(1, round(self.rate * self.sizes["latency_s"]))
        else:
            events = int(self.sizes["events"])
        return [
            Job(
                transport=transport,
                scenario=scenario,
                system=system,
                events=events,
                prefix=(
                    f"nb{self.run_id}-{transport[:2]}-{scenario[:3]}-"
                    + system.replace("nerve-", "n")
                ),
                urls=self.urls,
                batch=self.batch,
                rate=self.rate,
                time_limit=self.timeout,
                workdir=self.workdir,
                options="&".join(self.options.get(transport, [])),
            )
            for system in systems_of(transport)
            if self.systems is None or system in self.systems
        ]


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m bench.brokers",
        description="nerve on every transport, against FastStream on the same broker.",
    )
    p.add_argument("--quick", action="store_true", help="small sizes: a smoke run")
    p.add_argument("--transports", default=",".join(TRANSPORTS), help="comma-separated")
    p.add_argument("--scenarios", default=",".join(SCENARIOS), help="comma-separated")
    p.add_argument("--systems", help="comma-separated subset of nerve,nerve-memstore,faststream")
    p.add_argument("--events", type=int, metavar="N", help="throughput/consume events (50,000)")
    p.add_argument("--duration", type=float, metavar="S", help="latency: seconds at --rate (5)")
    p.add_argument("--rate", type=float, default=500.0, help="latency: events/s (500)")
    p.add_argument("--batch", type=int, default=1000, help="publish batch (1,000)")
    for name, url in DEFAULT_URLS.items():
        p.add_argument(f"--{name}-url", default=url, help=f"({url})")
    p.add_argument(
        "--nerve-option",
        action="append",
        default=[],
        metavar="TRANSPORT:KEY=VALUE",
        help="an extra URL option for nerve's bus on one transport (amqp:prefetch=1000)",
    )
    p.add_argument("--timeout", type=float, default=180.0, help="seconds per job (180)")
    p.add_argument("--in-process", action="store_true", help="no subprocesses (no own RSS)")
    p.add_argument("--json", type=Path, metavar="PATH", help="also write the results here")
    p.add_argument("--check", action="store_true", help="exit 1 when nerve < FastStream")
    p.add_argument(
        "--profile",
        metavar="TRANSPORT",
        help="instead of the table: pyinstrument over one job on TRANSPORT (the first of "
        "--scenarios and --systems: throughput, nerve by default)",
    )
    p.add_argument("--job", help=argparse.SUPPRESS)  # internal: run one job, print JSON
    return p


def _split(value: str, known: Sequence[str], what: str) -> list[str]:
    wanted = [s.strip() for s in value.split(",") if s.strip()]
    unknown = [s for s in wanted if s not in known]
    if unknown:
        raise SystemExit(f"unknown {what} {unknown}; known: {', '.join(known)}")
    return wanted


def _config(args: argparse.Namespace) -> Config:
    sizes = dict(QUICK if args.quick else FULL)
    if args.events:
        sizes["events"] = args.events
    if args.duration:
        sizes["latency_s"] = args.duration
    systems = (
        _split(args.systems, ("nerve", "nerve-memstore", "faststream"), "system(s)")
        if args.systems
        else None
    )
    options: dict[str, list[str]] = {}
    for option in args.nerve_option:
        transport, sep, pair = option.partition(":")
        if not sep or "=" not in pair or transport not in TRANSPORTS:
            raise SystemExit(f"--nerve-option {option!r}: expected TRANSPORT:KEY=VALUE")
        options.setdefault(transport, []).append(pair)
    return Config(
        options=options,
        transports=_split(args.transports, TRANSPORTS, "transport(s)"),
        scenarios=_split(args.scenarios, SCENARIOS, "scenario(s)"),
        systems=systems,
        sizes=sizes,
        urls={name: getattr(args, f"{name}_url") for name in DEFAULT_URLS},
        rate=args.rate,
        batch=args.batch,
        timeout=args.timeout,
        in_process=args.in_process,
        workdir=tempfile.gettempdir(),
    )


def _versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for name in ("faststream", "redis", "nats-py", "aio-pika", "aiokafka"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def _compare(results: list[Result]) -> dict[str, Any]:
    """Rows with their ratio to FastStream on the same transport and scenario."""
    fs = {
        (r.transport, r.scenario): r
        for r in results
        if r.system == "faststream" and not r.error and r.events_per_s
    }
    rows = []
    for r in results:
        row = asdict(r)
        other = fs.get((r.transport, r.scenario))
        row["vs_faststream"] = (
            r.events_per_s / other.events_per_s
            if other and r.events_per_s and other.events_per_s and r.scenario != "latency"
            else None
        )
        row["p50_vs_faststream"] = (
            r.p50_ms / other.p50_ms
            if other and r.p50_ms and other.p50_ms and r.scenario == "latency"
            else None
        )
        rows.append(row)
    return {"rows": rows, "summary": _summary(rows)}


def _summary(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per broker: nerve / FastStream events/s (throughput, consume) and p50 (latency)."""
    out = []
    by = {(r["transport"], r["scenario"], r["system"]): r for r in rows}
    for transport in sorted({r["transport"] for r in rows}, key=TRANSPORTS.index):
        if transport not in FASTSTREAM:
            continue
        line: dict[str, Any] = {"transport": transport}
        for scenario in SCENARIOS:
            for system in ("nerve", "nerve-memstore"):
                row = by.get((transport, scenario, system))
                key = "p50_vs_faststream" if scenario == "latency" else "vs_faststream"
                line[f"{scenario}:{system}"] = None if row is None else row[key]
        out.append(line)
    return out


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Run the benchmark, print its tables, and return the results.

    Args:
        argv: command-line arguments without the program name (None: ``sys.argv[1:]``).

    Returns:
        ``{"machine", "config", "rows": [...], "summary": [...], "unavailable": {transport:
        reason}, "ok", "matched"}``. Each row holds the fields of :class:`Result` plus
        ``vs_faststream`` (events/s over FastStream's on the same transport and scenario)
        and ``p50_vs_faststream`` (latency). ``ok`` is False when a job that could run
        failed, lost or duplicated events, or left something on its broker; ``matched``
        is True when nerve (default store) reached FastStream's events/s in every
        throughput and consume comparison that ran. With ``--profile``: ``{"profile": text}``.

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
    _print_machine(machine)
    print(
        ", ".join(f"{k} {machine[k]}" for k in ("faststream", "redis", "nats-py", "aio-pika"))
        + f", aiokafka {machine['aiokafka']}\n",
        flush=True,
    )
    missing: dict[str, str] = {}
    results: list[Result] = []
    for transport in config.transports:
        reason = unavailable(transport, config.urls)
        for scenario in config.scenarios:
            for job in config.jobs(transport, scenario):
                if reason:
                    missing[transport] = reason
                    results.append(
                        Result(
                            transport=job.transport,
                            scenario=job.scenario,
                            system=job.system,
                            events=job.events,
                            error=f"unavailable: {reason}",
                        )
                    )
                    continue
                t0 = time.perf_counter()
                done = asyncio.run(run_job(job)) if config.in_process else _run_in_subprocess(job)
                results.append(done)
                print(
                    f"{transport} {scenario} {job.system}: "
                    f"{done.error or 'ok'} ({time.perf_counter() - t0:.1f}s)",
                    file=sys.stderr,
                    flush=True,
                )
    compared = _compare(results)
    out: dict[str, Any] = {
        "machine": machine,
        "config": {
            "quick": args.quick,
            "sizes": config.sizes,
            "rate": config.rate,
            "batch": config.batch,
            "in_process": config.in_process,
            "timeout_s": config.timeout,
            "nerve_options": config.options,
            "prefix": f"nb{config.run_id}-",  # every name the run made
        },
        **compared,
        "unavailable": missing,
    }
    ran = [r for r in compared["rows"] if not (r["error"] or "").startswith("unavailable:")]
    out["ok"] = all(
        not r["error"] and not r["cleanup"] and r["handled"] == r["unique"] == r["events"]
        for r in ran
    )
    out["matched"] = all(
        r["vs_faststream"] is not None and r["vs_faststream"] >= 1.0
        for r in ran
        if r["system"] == "nerve" and r["transport"] in FASTSTREAM and r["scenario"] != "latency"
    )
    print(report(out), flush=True)
    if args.json:
        args.json.write_text(json.dumps(out, indent=2))
    return out


# report

TITLES = {
    "throughput": "throughput: publish (batches) and handle in one process, end to end",
    "consume": "consume: drain pre-loaded events, one consumer",
    "latency": "latency: one publish at a time at a steady rate, publish -> handler",
}


def report(results: dict[str, Any]) -> str:
    """One table per scenario, the nerve / FastStream summary, as markdown-compatible text."""
    lines: list[str] = []
    rows = results["rows"]
    for scenario in SCENARIOS:
        mine = [r for r in rows if r["scenario"] == scenario]
        if not mine:
            continue
        latency = scenario == "latency"
        table = [
            [
                r["transport"],
                r["system"],
                _status(r),
                f"{r['events']:,}",
                _f(r["events_per_s"], ",.0f"),
                _x(r["p50_vs_faststream"] if latency else r["vs_faststream"]),
                _f(r["wall_s"], ".3f"),
                _f(r["first_s"], ".3f"),
                _f(r["publish_s"], ".3f"),
                *([_f(r["p50_ms"], ",.2f"), _f(r["p99_ms"], ",.2f")] if latency else []),
                f"{r['handled']:,}/{r['unique']:,}",
                _f(r["peak_rss_mib"], ".1f"),
                _f(r["stop_s"], ".2f"),
            ]
            for r in mine
        ]
        header = [
            "transport",
            "system",
            "status",
            "events",
            "events/s",
            "p50 x faststream" if latency else "x faststream",
            "wall s",
            "first s",
            "publish s",
            *(["p50 ms", "p99 ms"] if latency else []),
            "handled/unique",
            "peak RSS MiB",
            "stop s",
        ]
        lines += [f"### {TITLES[scenario]}", "", *_table(header, table, left=3), ""]
    if results["summary"]:
        header = ["broker"]
        for scenario in SCENARIOS:
            for system in ("nerve", "nerve-memstore"):
                what = "p50" if scenario == "latency" else "events/s"
                header.append(f"{scenario} {what}: {system}")
        table = [
            [
                s["transport"],
                *(_x(s[f"{sc}:{sy}"]) for sc in SCENARIOS for sy in ("nerve", "nerve-memstore")),
            ]
            for s in results["summary"]
        ]
        lines += ["### nerve / FastStream on the same broker", "", *_table(header, table), ""]
    lines.append(
        "events/s: events over first publish -> last handler call (throughput), over first "
        "-> last handler call (consume: the drain rate). x faststream: events/s over "
        "FastStream's on the same broker and scenario (> 1: nerve faster); latency: p50 "
        "over FastStream's (< 1: nerve faster). first s: to the first handler call "
        "(consume: the consumer's start-up). publish s: time spent publishing (consume: the "
        "preload, nobody consuming). handled/unique: handler calls / distinct events. "
        "stop s: stopping the bus / broker (not in wall s). nerve: the transport's durable "
        "store; nerve-memstore: store=memory://."
    )
    if results["config"]["nerve_options"]:
        given = results["config"]["nerve_options"]
        lines.append(f"nerve URL options added: {given}.")
    if results["config"]["quick"]:
        lines.append("--quick: a smoke run; its figures mean little.")
    return "\n".join(lines)


def _status(row: dict[str, Any]) -> str:
    status = row["error"] or "ok"
    if not row["error"] and not row["handled"] == row["unique"] == row["events"]:
        status = "events lost or duplicated"
    if row["cleanup"]:
        status += f"; cleanup: {row['cleanup']}"
    return status[:90]


# profile


def profile(config: Config, transport: str) -> str:
    """pyinstrument over one nerve job (in this process): the first of ``--scenarios`` and
    of ``--systems`` (default: throughput, nerve) on ``transport``."""
    try:
        from pyinstrument import Profiler
    except ImportError:
        raise SystemExit("--profile needs pyinstrument: pip install -e '.[bench]'") from None
    if transport not in TRANSPORTS:
        raise SystemExit(f"unknown transport {transport!r}; known: {', '.join(TRANSPORTS)}")
    scenario = config.scenarios[0]
    system = (config.systems or ["nerve"])[0]
    jobs = [j for j in config.jobs(transport, scenario) if j.system == system]
    if not jobs:
        raise SystemExit(f"no {system} job in {scenario} on {transport}")
    job = jobs[0]
    profiler = Profiler(interval=0.0005, async_mode="disabled")
    profiler.start()
    result = asyncio.run(run_job(job))
    profiler.stop()
    text: str = profiler.output_text(unicode=False, color=False, show_all=False)
    summary = (
        f"{system} on {transport}, {scenario}, {job.events:,} events under the profiler: "
        f"{_f(result.events_per_s, ',.0f')} events/s (slowed by sampling); "
        f"error: {result.error}\n"
    )
    print(summary + text)
    return summary + text


def _cli() -> int:
    results = main(sys.argv[1:])
    if "profile" in results or "job" in results:
        return 0  # a job's error travels in its JSON line
    if not results["ok"]:
        return 1
    if "--check" in sys.argv[1:] and not results["matched"]:
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(_cli())
