"""What only the Redis transport has: its URL options, trimming that keeps unsettled events,
and a Redis server of our own killed and restarted mid-stream."""

from __future__ import annotations

import asyncio
import functools
import shutil
import signal
import subprocess
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis

from nerve import (
    Backoff,
    ConfigurationError,
    Event,
    EventBus,
    Settings,
    StoreError,
    TransportError,
)
from nerve.connections.redis import redis_options
from nerve.transports import transport_from_url
from nerve.transports.redis import (
    DELAYED_KEY,
    DIRECT_KEY,
    EVENTS_KEY,
    FIELD_EVENT,
    RedisTransport,
)
from tests.conftest import drop_redis_keys, eventually
from tests.servers import answers, free_ports, wait_up
from tests.whereabouts import Found, Workload, unhandled


@pytest.fixture
async def transport() -> AsyncIterator[RedisTransport]:
    url = f"redis://127.0.0.1:6379/0?prefix=tr-{uuid.uuid4().hex[:12]}&retention=0"
    found = transport_from_url(url, Settings())
    assert isinstance(found, RedisTransport)
    await found.connect()
    yield found
    await found.close()
    drop_redis_keys(url)


def test_url_options_are_read_and_checked() -> None:
    transport = RedisTransport("redis://h:1/2?prefix=app&lease=5&block_ms=200&retention=60")
    assert (transport.prefix, transport.lease, transport.block_ms) == ("app", 5.0, 200)
    assert (transport.claim_interval, transport.retention) == (2.5, 60.0)
    assert transport.events_key == "app:events"
    with pytest.raises(ConfigurationError, match="lease='abc' is not a number"):
        RedisTransport("redis://h/0?lease=abc")
    with pytest.raises(ConfigurationError, match="lease must be > 0"):
        RedisTransport("redis://h/0?lease=0")


async def test_trim_deletes_settled_events_and_keeps_unsettled_ones(
    transport: RedisTransport,
) -> None:
    await transport.declare("fast", "job.#", start_from="earliest")
    await transport.declare("slow", "job.#", start_from="earliest")
    await transport.publish_many([Event(event_type="job.run", payload={"n": n}) for n in range(10)])
    client: Redis = Redis.from_url("redis://127.0.0.1:6379/0", decode_responses=True)
    try:
        fast = await transport.receive("fast", 100)
        assert len(fast) == 10
        await transport.ack_many(fast)
        # "slow" read 4 and settled 3: the 4th is pending, the other 6 unread.
        slow = list(await transport.receive("slow", 4))
        await transport.ack_many(slow[:3])
        assert await transport.trim() == 3  # only what every group has settled
        assert await client.xlen(transport.events_key) == 7
        assert await transport.trim() == 0
        await transport.ack_many(slow[3:])
        rest = await transport.receive("slow", 100)
        assert [d.event.payload["n"] for d in rest] == list(range(4, 10))  # nothing lost
        await transport.ack_many(rest)
        assert await transport.trim() == 6  # the last read entry stays as the group's mark
        assert await client.xlen(transport.events_key) == 1
    finally:
        await client.aclose()


async def test_retention_keeps_recent_settled_events() -> None:
    url = f"redis://127.0.0.1:6379/0?prefix=tr-{uuid.uuid4().hex[:12]}"  # a week by default
    transport = RedisTransport(url)
    await transport.connect()
    try:
        await transport.declare("s", "#", start_from="earliest")
        await transport.publish_many([Event(event_type="a") for _ in range(5)])
        await transport.ack_many(await transport.receive("s", 10))
        assert await transport.trim() == 0  # settled, but younger than the retention
    finally:
        await transport.close()
        drop_redis_keys(url)


async def test_more_concurrent_publishes_than_connections_wait_for_one() -> None:
    """Past its pool's size a command waits for a free connection: redis-py 8's default
    pool fails the 101st concurrent command with "Too many connections"."""
    url = f"redis://127.0.0.1:6379/0?prefix=pool-{uuid.uuid4().hex[:12]}&max_connections=10"
    bus = EventBus(url)  # the Redis store too, with the same small pool
    handled: set[str] = set()

    @bus.on("job.run", name="job")
    async def job(event: Event) -> None:
        handled.add(event.event_id)

    try:
        async with bus:
            published = await asyncio.gather(
                *(bus.publish(Event(event_type="job.run")) for _ in range(300))
            )
            await bus.join(timeout=30)
        assert handled == {event.event_id for event in published}
    finally:
        drop_redis_keys(url)


# a Redis server of our own, killed and restarted

REDIS_SERVER = shutil.which("redis-server")


class Server:
    """A redis-server of this test's own (the shared one on 6379 must not be killed),
    persisting every write to its append-only file (``appendfsync everysec``: a SIGKILL
    of the process loses nothing written, only a power cut would)."""

    def __init__(self, base: Path, server: str) -> None:
        self.base = base
        self.server = server
        self.port = free_ports(1)[0]
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 30.0) -> None:
        """Start (on the same files as before) and wait until it answers PING."""
        options = {"port": self.port, "bind": "127.0.0.1", "dir": self.base, "save": ""}
        command = [self.server, "--appendonly", "yes"]
        for name, value in options.items():
            command += [f"--{name}", str(value)]
        with (self.base / "server.log").open("ab") as output:
            self.process = subprocess.Popen(  # noqa: S603  # the installed server, our arguments
                command, stdout=output, stderr=subprocess.STDOUT
            )
        log = self.base / "server.log"
        wait_up(self.process, self.ready, "the test's Redis", log, timeout=timeout)

    def ready(self) -> bool:
        """PING answered (a server still loading its AOF answers LOADING instead)."""
        return answers(self.port, b"PING\r\n", b"+PONG\r\n")

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
        if self.process is not None:
            self.process.wait(timeout=10)
        self.process = None


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    if REDIS_SERVER is None:
        pytest.skip("redis-server is not installed")
    started = Server(tmp_path, REDIS_SERVER)
    try:
        started.start()
        yield started
    finally:
        started.kill()


async def redis_whereabouts(
    url: str, transport: RedisTransport, subscription: str, wanted: set[str]
) -> Found:
    """Where events are in Redis and in ``transport``: the events stream (read by the
    group or not), entries pending in the group, the subscription's delayed set and direct
    stream, and what the transport took and holds unsettled."""
    places: dict[str, set[str]] = {
        "taken by the worker's transport, unsettled": {
            d.event.event_id for d in transport._in_flight
        },
    }
    notes: list[str] = []
    client_url, options = redis_options(url)
    prefix = options["prefix"]
    events = EVENTS_KEY.format(prefix=prefix)
    direct = DIRECT_KEY.format(prefix=prefix, name=subscription)
    delayed = DELAYED_KEY.format(prefix=prefix, name=subscription)
    async with Redis.from_url(client_url, decode_responses=True) as client:
        read: Any = client  # replies are str (decode_responses), which redis-py's types omit
        groups = {g["name"]: g for g in await read.xinfo_groups(events)}
        group = groups.get(subscription)
        notes.append(f"group {subscription!r} on {events}: {group}")
        last_read = group["last-delivered-id"] if group else "0-0"
        for stream, label in ((events, "the events stream"), (direct, "the direct stream")):
            by_entry = {
                entry_id: Event.model_validate_json(fields[FIELD_EVENT]).event_id
                for entry_id, fields in await read.xrange(stream)
            }
            places[f"{label}, not yet read by the group"] = {
                event_id
                for entry_id, event_id in by_entry.items()
                if stream == events and _after(entry_id, last_read)
            }
            pending = await read.xpending_range(stream, subscription, "-", "+", 100_000)
            places[f"{label}, pending in the group"] = {
                by_entry.get(p["message_id"], "") for p in pending
            }
            notes.extend(
                f"{stream}: {p['message_id']} pending with {p['consumer']}, idle "
                f"{p['time_since_delivered']} ms, delivered {p['times_delivered']} time(s)"
                for p in pending[:5]
                if by_entry.get(p["message_id"]) in wanted
            )
        places["the delayed set"] = {
            Event.model_validate_json(member.split(" ", 1)[1]).event_id
            for member in await read.zrange(delayed, 0, -1)
        }
    return places, notes


def _after(entry_id: str, other: str) -> bool:
    major, minor = (int(part) for part in entry_id.split("-"))
    other_major, other_minor = (int(part) for part in other.split("-"))
    return (major, minor) > (other_major, other_minor)


@pytest.mark.timeout(180)
async def test_events_accepted_before_a_server_kill_are_handled_after_its_restart(
    server: Server,
) -> None:
    """Redis (appendonly) is SIGKILLed under load, with retries waiting for their delay and
    deliveries in flight, and started again on its files: every event whose publish
    returned is handled by the same worker, which reconnects on its own."""
    url = f"redis://127.0.0.1:{server.port}/0?prefix=restart&lease=2&block_ms=200"
    worker = EventBus(url, settings=Settings(shutdown_grace=2.0))
    load = Workload(work=0.002)
    worker.subscribe("job.run", load.handle, name="job", backoff=Backoff(initial=0.2, jitter=0.0))
    publisher = EventBus(url)  # its own clients, as another process would have
    accepted, handled = load.accepted, load.handled

    transport = worker.transport
    assert isinstance(transport, RedisTransport)

    async def explain() -> str:
        look = functools.partial(redis_whereabouts, url, transport, "job")
        return await unhandled(worker, "job", accepted, handled, look)

    await worker.start()
    publishing = asyncio.create_task(load.publish_forever(publisher, (TransportError, StoreError)))
    try:
        await eventually(lambda: len(accepted) >= 500 and len(handled) >= 100, timeout=30)
        await asyncio.to_thread(server.kill)
        before_kill = len(accepted)
        unhandled_at_kill = len(set(accepted) - handled)
        await asyncio.to_thread(server.start)  # the same files: a restart
        await eventually(lambda: len(accepted) >= before_kill + 200, timeout=60)
    finally:
        publishing.cancel()
        await asyncio.gather(publishing, return_exceptions=True)
        await publisher.stop()
    try:
        await eventually(lambda: handled >= set(accepted), timeout=60, explain=explain)
        await worker.join(timeout=20)  # and nothing is left unsettled
    finally:
        await worker.stop()
    assert unhandled_at_kill > 0  # events Redis had to keep in its file
    assert load.refused > 0  # the kill was felt by the publisher, which went on after it
    assert handled >= set(accepted)
