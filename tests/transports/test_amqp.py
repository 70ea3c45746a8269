"""What only the AMQP transport has: URL options, retries through wait queues, parking,
replays to one queue, and a RabbitMQ node of our own killed and restarted mid-stream."""

from __future__ import annotations

import asyncio
import functools
import os
import shutil
import signal
import subprocess
import time
import uuid
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import suppress
from pathlib import Path
from typing import Any, cast
from urllib.parse import urlsplit, urlunsplit

import aio_pika
import pytest
from aiormq.exceptions import AMQPError, ChannelNotFoundEntity

from nerve import (
    Backoff,
    ConfigurationError,
    Event,
    EventBus,
    Settings,
    SubscriptionError,
    TransportError,
)
from nerve.transports.amqp import (
    DEFAULT_DELIVERY_LIMIT,
    DELAY_STEPS_MS,
    AMQPTransport,
    amqp_options,
    amqp_where,
    delay_step_ms,
    queue_name,
    waits,
)
from nerve.transports.base import Delivery
from tests.conftest import eventually
from tests.servers import answers, free_ports, wait_up
from tests.whereabouts import Found, Workload, unhandled

#: rabbitmqctl lists the queues (AMQP cannot); without it only the fixed names go.
RABBITMQCTL = shutil.which("rabbitmqctl")


def drop(url: str) -> None:
    """Delete the queues and exchanges under an ``amqp://`` URL's ``prefix``."""
    asyncio.run(_drop(url, _listed_queues(url)))


def _listed_queues(url: str) -> list[str]:
    if RABBITMQCTL is None:
        return []
    vhost = urlsplit(url).path[1:] or "/"
    listed = subprocess.run(  # noqa: S603  # a fixed command, our own URL's vhost
        [RABBITMQCTL, "list_queues", "-q", "--no-table-headers", "-p", vhost, "name"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    return listed.stdout.split() if listed.returncode == 0 else []


async def _drop(url: str, listed: list[str]) -> None:
    client_url, options = amqp_options(url)
    prefix = options["prefix"]  # never without one: that would be every nerve queue
    known = [f"{prefix}.parked", *(f"{prefix}.wait.{ms}" for ms in DELAY_STEPS_MS)]
    queues = sorted({*known, *(q for q in listed if q.startswith(f"{prefix}."))})
    parts = urlsplit(client_url)
    connection = await aio_pika.connect(urlunsplit(parts._replace(query="")))
    try:
        channel = await connection.channel()
        for queue in queues:
            await channel.queue_delete(queue)  # a missing queue is no error
        for exchange in (f"{prefix}.events", f"{prefix}.delay"):
            try:
                await channel.exchange_delete(exchange)
            except AMQPError:  # it was never made: the channel closed, open another
                channel = await connection.channel()
    finally:
        await connection.close()


# fixtures


@pytest.fixture
def url() -> Iterator[str]:
    found = f"amqp://guest:guest@127.0.0.1:5672/?prefix=ta-{uuid.uuid4().hex[:12]}"
    yield found
    drop(found)


@pytest.fixture
async def connect(url: str) -> AsyncIterator[Callable[..., Awaitable[AMQPTransport]]]:
    """Connected transports on the test's prefix (one per "process"); closed at teardown."""
    made: list[AMQPTransport] = []

    async def factory(**options: Any) -> AMQPTransport:
        transport = AMQPTransport(url, **options)
        await transport.connect()
        made.append(transport)
        return transport

    yield factory
    for transport in made:
        await transport.close()


Connect = Callable[..., Awaitable[AMQPTransport]]


async def message_count(queue: str, port: int = 5672) -> int | None:
    """Ready messages in ``queue`` (None: there is no such queue), asked over AMQP."""
    connection = await aio_pika.connect(f"amqp://guest:guest@127.0.0.1:{port}/")
    try:
        channel = await connection.channel()
        try:
            declared = await channel.declare_queue(queue, passive=True)
        except ChannelNotFoundEntity:
            return None
        return int(declared.declaration_result.message_count or 0)
    finally:
        await connection.close()


async def receive_one(transport: AMQPTransport, subscription: str) -> Delivery:
    async with asyncio.timeout(10):
        [delivery] = await transport.receive(subscription, 1)
    return delivery


# options and names


def test_url_options_are_read_and_checked() -> None:
    transport = AMQPTransport(
        "amqp://u:secret@h:5673/v?prefix=app&prefetch=16&delivery_limit=5&heartbeat=30"
        "&store=sqlite:///s.db"
    )
    assert (transport.prefix, transport.prefetch, transport.delivery_limit) == ("app", 16, 5)
    assert transport.default_store_url == "sqlite:///s.db"
    assert transport.events_name == "app.events"
    assert amqp_options(transport.url)[0] == "amqp://u:secret@h:5673/v?heartbeat=30"
    assert amqp_where(transport.url) == "h:5673/v"  # for messages: never the password
    assert AMQPTransport("amqp://h").delivery_limit == DEFAULT_DELIVERY_LIMIT
    with pytest.raises(ConfigurationError, match="prefetch='many' is not an integer"):
        AMQPTransport("amqp://h/?prefetch=many")
    with pytest.raises(ConfigurationError, match="delivery_limit must be >= 0"):
        AMQPTransport("amqp://h/?delivery_limit=-1")
    with pytest.raises(ConfigurationError, match="reserves"):
        AMQPTransport("amqp://h/?prefix=amq.x")


def test_without_a_store_the_state_lives_in_a_file_of_the_state_directory(
    tmp_path: Path,
) -> None:
    # Never the memory of one process: its dead letters would go with it.
    settings = Settings(state_dir=tmp_path)
    transport = AMQPTransport.from_url("amqp://h/?prefix=shop", settings)
    assert transport.default_store_url == f"sqlite:///{tmp_path}/nerve-shop.db"


def test_queue_names_escape_what_amqp_does_not_allow() -> None:
    assert queue_name("p", "billing.charge") == "p.sub.billing.charge"
    assert queue_name("p", "mod.f.<locals>.h+1") == "p.sub.mod.f.+3clocals+3e.h+2b1"
    assert queue_name("p", "é") == "p.sub.+c3+a9"
    long = queue_name("p", "x" * 400)
    assert len(long) == 255
    assert long != queue_name("p", "x" * 401)  # cut, but told apart by the hash


def test_delays_round_to_the_nearest_step() -> None:
    assert [delay_step_ms(d) for d in (0.001, 0.5, 0.55, 0.9, 1.1, 29.0, 1e9)] == [
        10,
        500,
        500,
        1000,
        1000,
        30_000,
        86_400_000,
    ]
    for step in DELAY_STEPS_MS:
        assert delay_step_ms(step / 1000) == step


async def test_an_unreachable_broker_is_a_clear_error_without_the_password() -> None:
    transport = AMQPTransport("amqp://guest:s3cret@127.0.0.1:1/")  # nothing listens on port 1
    with pytest.raises(TransportError, match=r"cannot reach RabbitMQ at 127\.0\.0\.1:1/") as exc:
        await transport.connect()
    assert "s3cret" not in str(exc.value)


# the broker's mechanisms


async def test_a_retry_waits_in_a_wait_queue_and_reaches_only_its_subscription(
    connect: Connect,
) -> None:
    transport = await connect()
    await transport.declare("a", "job.*", start_from="earliest")
    await transport.declare("b", "job.*", start_from="earliest")
    event = Event(event_type="job.run")
    await transport.publish(event)
    first = await receive_one(transport, "a")
    assert (first.event.event_id, first.attempt) == (event.event_id, 1)
    await transport.ack_many([await receive_one(transport, "b")])

    loop = asyncio.get_running_loop()
    nacked_at = loop.time()
    await first.nack(0.3)
    wait_queue = f"{transport.prefix}.wait.300"
    assert await message_count(wait_queue) == 1  # waiting in the broker, not in this process
    again = await receive_one(transport, "a")
    assert loop.time() - nacked_at >= 0.25
    assert (again.event.event_id, again.attempt) == (event.event_id, 2)
    await again.ack()
    await transport.wait_idle()
    assert transport._subs["b"].buffer == deque()  # "b" never saw the retry


async def test_a_replay_reaches_only_the_named_subscription(connect: Connect) -> None:
    transport = await connect()
    await transport.declare("a", "job.*", start_from="earliest")
    await transport.declare("b", "job.*", start_from="earliest")
    event = Event(event_type="job.run")
    await transport.publish(event, subscription="b")
    delivery = await receive_one(transport, "b")
    assert (delivery.event.event_id, delivery.attempt) == (event.event_id, 1)
    await delivery.ack()
    assert await message_count(queue_name(transport.prefix, "a")) == 0
    with pytest.raises(SubscriptionError, match="no subscription named 'nope'"):
        await transport.publish(event, subscription="nope")
    await transport.publish(Event(event_type="job.run"))  # the channel is still usable
    await (await receive_one(transport, "a")).ack()


async def test_a_message_returned_too_often_is_parked_not_dropped(
    connect: Connect, url: str
) -> None:
    """x-delivery-limit: a message that every consumer dies holding ends in the parked
    queue (visible to operators) rather than being redelivered forever or dropped."""
    declaring = await connect(delivery_limit=1)
    await declaring.declare("s", "job.run", start_from="earliest")
    await declaring.publish(Event(event_type="job.run"))
    attempts = []
    for _ in range(2):  # two consumers die holding it: the second return passes the limit
        holder = AMQPTransport(url, delivery_limit=1)
        await holder.connect()
        await holder.declare("s", "job.run", start_from="earliest")
        attempts.append((await receive_one(holder, "s")).attempt)
        await holder.close()  # unsettled: the broker returns it, counted
    assert attempts == [1, 2]
    await eventually_async(lambda: message_count(declaring.parked_name), 1)
    assert await message_count(queue_name(declaring.prefix, "s")) == 0


async def test_changing_the_delivery_limit_of_a_queue_is_a_clear_error(connect: Connect) -> None:
    await (await connect(delivery_limit=5)).declare("s", "a.b", start_from="earliest")
    other = await connect(delivery_limit=7)
    with pytest.raises(ConfigurationError, match="exists with other arguments"):
        await other.declare("s", "a.b", start_from="earliest")


async def test_events_of_a_binding_left_by_an_earlier_pattern_are_not_delivered(
    connect: Connect,
) -> None:
    old = await connect()
    await old.declare("s", "old.*", start_from="earliest")
    await old.close()
    new = await connect()
    await new.declare("s", "new.*", start_from="earliest")  # "old.*" is still bound
    await new.publish(Event(event_type="old.x"))
    event = Event(event_type="new.x")
    await new.publish(event)
    delivery = await receive_one(new, "s")
    assert delivery.event.event_id == event.event_id  # old.x was acknowledged and skipped
    await delivery.ack()
    await new.wait_idle()


async def test_a_malformed_message_is_parked(connect: Connect) -> None:
    transport = await connect()
    await transport.declare("s", "job.run", start_from="earliest")
    connection = await aio_pika.connect("amqp://guest:guest@127.0.0.1:5672/")
    try:
        channel = await connection.channel()
        exchange = await channel.get_exchange(transport.events_name)
        await exchange.publish(aio_pika.Message(b"not json"), routing_key="job.run")
    finally:
        await connection.close()
    good = Event(event_type="job.run")
    await transport.publish(good)
    delivery = await receive_one(transport, "s")
    assert delivery.event.event_id == good.event_id
    await delivery.ack()
    await eventually_async(lambda: message_count(transport.parked_name), 1)


async def test_close_returns_what_was_not_settled_for_redelivery(connect: Connect) -> None:
    first = await connect()
    await first.declare("s", "job.run", start_from="earliest")
    await first.publish_many([Event(event_type="job.run") for _ in range(3)])
    async with asyncio.timeout(10):
        held = list(await first.receive("s", 3))
        while len(held) < 3:
            held += await first.receive("s", 3)
    await held[0].ack()
    assert await first.close() == []  # durable: nothing lost, two go back to the queue
    assert await first.receive("s", 10) == ()  # closed: receive returns at once
    second = await connect(prefetch=10)  # receive_one asks for 1: the default would hold 1
    await second.declare("s", "job.run", start_from="earliest")
    back = [await receive_one(second, "s"), await receive_one(second, "s")]
    assert sorted(d.event.event_id for d in back) == sorted(d.event.event_id for d in held[1:])
    assert [d.attempt for d in back] == [2, 2]  # x-delivery-count: the return is counted
    await second.ack_many(back)
    await second.wait_idle()


async def test_a_release_at_shutdown_counts_no_attempt(connect: Connect) -> None:
    transport = await connect(prefetch=10)
    await transport.declare("s", "job.run", start_from="earliest")
    event = Event(event_type="job.run")
    await transport.publish(event)
    first = await receive_one(transport, "s")
    await first.release()  # a worker stopping before it started this one
    again = await receive_one(transport, "s")
    assert (again.event.event_id, again.attempt) == (event.event_id, 1)
    await again.ack()
    await transport.wait_idle()


async def eventually_async(
    read: Callable[[], Awaitable[int | None]], expected: int, timeout: float = 10.0
) -> None:
    """Wait until ``await read() == expected``; fail after ``timeout`` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while (found := await read()) != expected:
        if loop.time() > deadline:
            pytest.fail(f"{read} gave {found}, not {expected}, within {timeout}s")
        await asyncio.sleep(0.02)


# a broker of our own, killed and restarted

#: The server script itself: /usr/sbin/rabbitmq-server may switch to the rabbitmq user,
#: who cannot write in the test's directory.
RABBITMQ_SERVER = next(
    (
        path
        for path in ("/usr/lib/rabbitmq/bin/rabbitmq-server", shutil.which("rabbitmq-server"))
        if path and Path(path).exists()
    ),
    None,
)
AMQP_HEADER = b"AMQP\x00\x00\x09\x01"


class Node:
    """A RabbitMQ node of this test's own (the shared one on 5672 must not be killed):
    its own name, ports, data and cookie under ``base``; no plugins."""

    def __init__(self, base: Path, server: str) -> None:
        self.base = base
        self.server = server
        self.port, dist_port = free_ports(2)
        home = base / "home"
        home.mkdir()
        cookie = home / ".erlang.cookie"
        cookie.write_text(uuid.uuid4().hex)
        cookie.chmod(0o400)
        (base / "enabled_plugins").write_text("[].\n")
        (base / "rabbitmq.conf").write_text("loopback_users = none\n")
        (base / "rabbitmq-env.conf").write_text("")
        self.env = {
            **os.environ,
            "HOME": str(home),
            "RABBITMQ_CONF_ENV_FILE": str(base / "rabbitmq-env.conf"),  # not /etc's
            "RABBITMQ_NODENAME": f"nerve-test-{self.port}@localhost",
            "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
            "RABBITMQ_NODE_PORT": str(self.port),
            "RABBITMQ_DIST_PORT": str(dist_port),
            "RABBITMQ_MNESIA_BASE": str(base / "mnesia"),
            "RABBITMQ_LOG_BASE": str(base / "log"),
            "RABBITMQ_LOGS": "-",
            "RABBITMQ_CONFIG_FILE": str(base / "rabbitmq.conf"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(base / "enabled_plugins"),
            "RABBITMQ_PLUGINS_EXPAND_DIR": str(base / "plugins-expand"),
            "ERL_EPMD_ADDRESS": "127.0.0.1",
            "ERL_FLAGS": "-kernel inet_dist_use_interface {127,0,0,1}",
        }
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 60.0) -> None:
        """Start the node (on the same data as before) and wait until it speaks AMQP."""
        with (self.base / "server.log").open("ab") as output:
            self.process = subprocess.Popen(  # noqa: S603  # the installed server script
                [self.server],
                env=self.env,
                stdout=output,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: killed as one
            )
        log = self.base / "server.log"
        wait_up(self.process, self.ready, "the test's RabbitMQ node", log, timeout=timeout)

    def ready(self) -> bool:
        """An AMQP protocol header gets a method frame back (connection.start)."""
        return answers(self.port, AMQP_HEADER, b"\x01")

    def stop(self) -> None:
        """Stop the node cleanly (SIGTERM: RabbitMQ shuts down in order)."""
        self._signal(signal.SIGTERM, timeout=60)

    def kill(self) -> None:
        """SIGKILL the whole node (beam and its helpers), as a crash or power cut would."""
        self._signal(signal.SIGKILL, timeout=30)

    def ctl(self, *args: str) -> None:
        """Run ``rabbitmqctl`` against this node (its name and cookie)."""
        ctl = Path(self.server).with_name("rabbitmqctl")  # not /usr/sbin's: it switches user
        name = self.env["RABBITMQ_NODENAME"]
        subprocess.run(  # noqa: S603  # the installed script, our own node's name
            [str(ctl), "-n", name, *args], env=self.env, check=True, capture_output=True, timeout=60
        )

    def _signal(self, sig: signal.Signals, timeout: float) -> None:
        if self.process is None:
            return
        group = self.process.pid  # start_new_session: the group is the script's pid
        with suppress(ProcessLookupError):
            os.killpg(group, sig)
        self.process.wait(timeout=timeout)
        deadline = time.monotonic() + timeout
        while group_alive(group):  # beam outlives the script for a moment
            if time.monotonic() > deadline:
                os.killpg(group, signal.SIGKILL)
                pytest.fail(f"the test's RabbitMQ node ignored {sig.name} for {timeout}s")
            time.sleep(0.05)
        self.process = None


def group_alive(group: int) -> bool:
    try:
        os.killpg(group, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.fixture
def node(tmp_path: Path) -> Iterator[Node]:
    if RABBITMQ_SERVER is None:
        pytest.skip("rabbitmq-server is not installed")
    (tmp_path / "node").mkdir()
    started = Node(tmp_path / "node", RABBITMQ_SERVER)
    try:
        started.start()
        yield started
    finally:
        started.kill()


async def amqp_whereabouts(
    url: str, transport: AMQPTransport, subscription: str, wanted: set[str]
) -> Found:
    """Where events are on RabbitMQ and in ``transport``: what it consumed and holds, and
    what is ready in the subscription's queue, the wait queues it used and the parked
    queue (read with basic.get on a connection of its own, whose close returns them)."""
    sub = transport._subs.get(subscription)
    places: dict[str, set[str]] = {
        "consumed by the worker's transport, unsettled": {
            d.event.event_id for d in transport._in_flight
        },
        "consumed, not yet received by the worker": (
            {d.event.event_id for d in sub.buffer} if sub is not None else set()
        ),
    }
    notes: list[str] = []
    prefix = transport.prefix
    queues = {
        queue_name(prefix, subscription): "the subscription's queue",
        f"{prefix}.parked": "parked",
        **{
            f"{prefix}.wait.{step}": f"wait queue {step} ms"
            for step in sorted(transport._waits.steps)
        },
    }
    client_url, _ = amqp_options(url)
    connection = await aio_pika.connect(urlunsplit(urlsplit(client_url)._replace(query="")))
    try:
        for queue, place in queues.items():
            channel = await connection.channel()
            try:
                async with asyncio.timeout(10):
                    declared = await channel.declare_queue(queue, passive=True)
                    result = declared.declaration_result
                    notes.append(
                        f"{queue}: {result.message_count} ready, "
                        f"{result.consumer_count} consumer(s)"
                    )
                    ids: set[str] = set()
                    while (message := await declared.get(fail=False)) is not None:
                        ids.add(message.message_id or "")
                    places[place] = ids
            except TimeoutError:
                notes.append(f"{queue} does not answer (a quorum queue without a leader?)")
            except ChannelNotFoundEntity:
                notes.append(f"{queue} does not exist")
            finally:
                with suppress(Exception):
                    await channel.close()  # what was read goes back
    finally:
        await connection.close()
    return places, notes


async def declared_before_a_crash(bus: EventBus, node: Node) -> None:
    """Declare ``bus``'s queues, then restart the node cleanly.

    A subscription's queue must predate the crash: RabbitMQ 3.10 writes a new quorum
    queue's Raft registration to disk up to 500 ms after its declaration, and one declared
    just before a SIGKILL comes back without a leader. A clean restart writes it, as half
    a second would. (The wait queues nerve declares on the way are the transport's to
    look after: see the test below.)
    """
    await bus.start()
    await bus.stop()
    await asyncio.to_thread(node.stop)
    await asyncio.to_thread(node.start)


@pytest.mark.timeout(180)
async def test_events_accepted_before_a_broker_kill_are_handled_after_its_restart(
    node: Node, tmp_path: Path
) -> None:
    url = (
        f"amqp://guest:guest@127.0.0.1:{node.port}/?prefix=restart&reconnect_interval=0.5"
        f"&store=sqlite:///{tmp_path}/store.db"
    )
    worker = EventBus(url, settings=Settings(shutdown_grace=2.0))
    load = Workload()
    retrying = Backoff(initial=0.2, jitter=0.0)  # through the TTL wait queues
    worker.subscribe("job.run", load.handle, name="job", backoff=retrying)
    publisher = EventBus(url)  # its own connection, as another process would have
    accepted, handled = load.accepted, load.handled

    await declared_before_a_crash(worker, node)
    worker = EventBus(url, settings=Settings(shutdown_grace=2.0))
    worker.subscribe("job.run", load.handle, name="job", backoff=retrying)

    await worker.start()
    publishing = asyncio.create_task(load.publish_forever(publisher, (TransportError,)))
    try:
        await eventually(lambda: len(accepted) >= 500 and len(handled) >= 100, timeout=30)
        await asyncio.to_thread(node.kill)
        before_kill = len(accepted)
        await asyncio.to_thread(node.start)  # the same data directory: a restart
        await eventually(lambda: len(accepted) >= before_kill + 200, timeout=60)
    finally:
        publishing.cancel()
        await asyncio.gather(publishing, return_exceptions=True)
        await publisher.stop()
    amqp = cast(AMQPTransport, worker.transport)

    async def explain() -> str:
        return await unhandled(
            worker,
            "job",
            accepted,
            handled,
            lambda wanted: amqp_whereabouts(url, amqp, "job", wanted),
        )

    try:
        await eventually(lambda: handled >= set(accepted), timeout=60, explain=explain)
        await worker.join(timeout=20)  # and nothing is left unsettled
    finally:
        await worker.stop()
    assert len(accepted) >= before_kill + 200  # both buses reconnected on their own
    assert handled >= set(accepted)


@pytest.mark.timeout(180)
async def test_retries_parked_just_before_a_broker_kill_are_handled_after_its_restart(
    node: Node, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A wait queue declared less than half a second before RabbitMQ is killed comes back
    without a leader: what it holds never comes out and a publish to it is never
    confirmed. The retries parked in it are not lost (their originals were held until
    it was registered), and retries after the restart are not stuck behind it (it is
    found out, deleted and declared again)."""
    url = (
        f"amqp://guest:guest@127.0.0.1:{node.port}/?prefix=parked&reconnect_interval=0.5"
        f"&store=sqlite:///{tmp_path}/store.db"
    )
    handled: set[str] = set()
    failed_once: set[str] = set()

    async def job(event: Event) -> None:
        if event.event_id not in failed_once:  # every event's first attempt fails
            failed_once.add(event.event_id)
            raise RuntimeError("first attempt fails")
        handled.add(event.event_id)

    # The queue is leaderless by construction: no need to wait the 30 s that keep a slow
    # broker's sound queue from being taken for one.
    monkeypatch.setattr(waits, "CHECK_ANSWER", 5.0)
    worker = EventBus(url, settings=Settings(shutdown_grace=2.0))
    worker.subscribe("job.run", job, name="job", backoff=Backoff(initial=0.2, jitter=0.0))
    await declared_before_a_crash(worker, node)
    worker = EventBus(url, settings=Settings(shutdown_grace=2.0))
    worker.subscribe("job.run", job, name="job", backoff=Backoff(initial=0.2, jitter=0.0))
    amqp = cast(AMQPTransport, worker.transport)
    accepted: list[str] = []

    async def publish(count: int) -> None:
        while count:
            try:
                event = await worker.publish(Event(event_type="job.run"))
            except TransportError:  # the broker is not back yet
                await asyncio.sleep(0.1)
                continue
            accepted.append(event.event_id)
            count -= 1

    async def explain() -> str:
        look = functools.partial(amqp_whereabouts, url, amqp, "job")
        return await unhandled(worker, "job", accepted, handled, look)

    await worker.start()
    try:
        first = await worker.publish_many([Event(event_type="job.run") for _ in range(20)])
        accepted.extend(event.event_id for event in first)
        await eventually(lambda: amqp._waits.steps, timeout=30)  # the first retry's wait queue
        await asyncio.to_thread(node.kill)  # milliseconds after its declaration
        await asyncio.to_thread(node.start)
        await publish(20)  # their retries go through the same wait queue, after the restart
        await eventually(lambda: handled >= set(accepted), timeout=90, explain=explain)
        await worker.join(timeout=20)
    finally:
        await worker.stop()
    assert len(accepted) == 40
    assert handled >= set(accepted)


@pytest.mark.timeout(120)
async def test_a_retry_under_a_memory_alarm_waits_for_it_and_spends_no_attempt(
    node: Node, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A memory alarm blocks publishers, so a retry's re-publish is not confirmed: its wait
    queue answers the check (on a connection that never publishes), and the retry waits
    for the alarm to end, neither handed back (an attempt spent every few seconds) nor its
    wait queue deleted."""
    monkeypatch.setattr(waits, "REQUEUE_CONFIRM", 0.5)  # check early and often
    transport = AMQPTransport(f"amqp://guest:guest@127.0.0.1:{node.port}/?prefix=alarm")
    checked: list[bool] = []
    check = transport._waits.delete_if_leaderless

    async def counted(step: int) -> bool:
        checked.append(await check(step))
        return checked[-1]

    monkeypatch.setattr(transport._waits, "delete_if_leaderless", counted)
    await transport.connect()
    try:
        await transport.declare("s", "job.run", start_from="earliest")
        await transport.publish(Event(event_type="job.run"))
        await (await receive_one(transport, "s")).nack(0.2)  # declares the wait queue
        retried = await receive_one(transport, "s")
        assert retried.attempt == 2
        await asyncio.to_thread(node.ctl, "set_vm_memory_high_watermark", "0.000001")
        nacking = asyncio.create_task(retried.nack(0.2))
        await eventually(lambda: len(checked) >= 2, timeout=60)
        assert checked == [False] * len(checked)  # sound, each time
        assert not nacking.done()  # waiting for the alarm to end, not handed back
        await asyncio.to_thread(node.ctl, "set_vm_memory_high_watermark", "0.4")
        await asyncio.wait_for(nacking, 30)
        again = await receive_one(transport, "s")
        assert again.attempt == 3  # the retry, and nothing spent while the alarm lasted
        await again.ack()
        wait_queue = f"alarm.wait.{delay_step_ms(0.2)}"
        assert await message_count(wait_queue, node.port) == 0  # still there: not deleted
    finally:
        await transport.close()


@pytest.mark.timeout(120)
async def test_settling_on_a_connection_lost_with_its_write_queue_full_gives_up(
    node: Node,
) -> None:
    """aiormq queues at most ten frames for its writer; a broker that stops reading fills
    that queue, and the acknowledgements waiting for room in it must end when the
    connection is lost, not wait for ever (a stuck handler, and a stuck shutdown)."""
    transport = AMQPTransport(f"amqp://guest:guest@127.0.0.1:{node.port}/?prefix=stuck")
    await transport.connect()
    await transport.declare("s", "job.run", start_from="earliest")
    await transport.publish_many([Event(event_type="job.run") for _ in range(200)])
    deliveries: list[Delivery] = []
    while len(deliveries) < 200:
        deliveries.extend(await transport.receive("s", 200 - len(deliveries)))
    assert node.process is not None
    os.killpg(node.process.pid, signal.SIGSTOP)  # the broker stops reading its sockets
    big = "x" * 1_000_000
    # Megabytes on the same connection fill the socket's buffers, then aiormq's queue.
    publishing = [
        asyncio.create_task(transport.publish(Event(event_type="job.big", payload={"x": big})))
        for _ in range(20)
    ]
    settling = [
        asyncio.create_task(transport.ack_many(deliveries[:100])),
        *(asyncio.create_task(d.ack()) for d in deliveries[100:150]),
        *(asyncio.create_task(d.reject()) for d in deliveries[150:175]),
        *(asyncio.create_task(d.nack(0.5)) for d in deliveries[175:]),
    ]
    try:
        await asyncio.sleep(1)  # let them queue up behind the stopped broker
        assert not all(task.done() for task in settling)  # they are stuck behind it
        await asyncio.to_thread(node.kill)
        await eventually(lambda: all(task.done() for task in [*settling, *publishing]), timeout=30)
    finally:
        for task in [*settling, *publishing]:
            task.cancel()
        await asyncio.gather(*settling, *publishing, return_exceptions=True)
        await transport.close()
    assert transport._in_flight == {}  # nothing is left counted as held here
