"""What RabbitMQ parks by itself (``x-delivery-limit``) is a dead letter like the others:
listed by ``bus.dlq`` and ``nerve dlq list``, with an error saying what the broker did,
filed by running workers, and replayed to its subscription."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import aio_pika
import pytest

import nerve.parked
from nerve import DeadLetter, DeliveryState, Event, EventBus
from nerve.transports.amqp import AMQPTransport, queue_name
from nerve.transports.amqp.wire import subscription_of
from tests.conftest import eventually
from tests.transports.test_amqp import drop, eventually_async, message_count, receive_one

ROOT = Path(__file__).resolve().parents[2]
CRASH_LOOP = "nerve.exceptions.CrashLoop"


@pytest.fixture
def url() -> Iterator[str]:
    """A prefix of the test's own, whose queues park a message at its second return."""
    found = f"amqp://guest:guest@127.0.0.1:5672/?prefix=tp-{uuid.uuid4().hex[:12]}"
    yield f"{found}&delivery_limit=1"
    drop(found)


async def park(url: str, event: Event, *, filed_at_once: bool = False) -> None:
    """Publish ``event`` to subscription ``s`` and let two consumers die holding it: the
    second return passes the delivery limit of 1, and the broker parks it (seen in the
    parked queue, unless a running bus may have filed it already)."""
    subscription = "s"
    declaring = AMQPTransport(url)
    await declaring.connect()
    try:
        await declaring.declare(subscription, event.event_type, start_from="earliest")
        await declaring.publish(event)
        for _ in range(2):
            holder = AMQPTransport(url)
            await holder.connect()
            await holder.declare(subscription, event.event_type, start_from="earliest")
            await receive_one(holder, subscription)
            await holder.close()  # unsettled: the broker returns it, counted
        if not filed_at_once:
            await eventually_async(lambda: message_count(declaring.parked_name), 1)
    finally:
        await declaring.close()


def test_a_subscription_is_read_back_from_its_queue_name() -> None:
    for name in ("s", "app.handlers:triage", "a<locals>.b", "naïve+plus", "x" * 240):
        found = subscription_of("p", queue_name("p", name))
        assert found == (name if len(queue_name("p", name)) < 255 else None)
    assert subscription_of("p", "p.parked") is None
    assert subscription_of("p", "q.sub.s") is None
    assert subscription_of("p", "p.sub.bad+zz") is None


async def test_a_parked_event_is_listed_with_its_errors_and_replays(url: str) -> None:
    event = Event(event_type="job.run", payload={"n": 1})
    await park(url, event)
    # Something that is no nerve event of a subscription, parked too: it stays there.
    parked_name = f"{AMQPTransport(url).prefix}.parked"
    connection = await aio_pika.connect("amqp://guest:guest@127.0.0.1:5672/")
    async with connection:
        channel = await connection.channel()
        await channel.default_exchange.publish(aio_pika.Message(b"not json"), parked_name)
    await eventually_async(lambda: message_count(parked_name), 2)

    handled: list[tuple[str, int]] = []
    bus = EventBus(f"{url}&store=memory://")

    @bus.on("job.run", name="s")
    async def s(got: Event) -> None:
        handled.append((got.event_id, nerve.current().attempt))  # type: ignore[union-attr]

    store = await bus._ready_store()
    earlier = nerve.AttemptError(attempt=1, type="ValueError", message="earlier", traceback="")
    await store.add_failure("s", event.event_id, earlier)  # an attempt that raised, recorded

    [entry] = await bus.dlq.list()  # filed from the parked queue as it is read
    assert (entry.event.event_id, entry.subscription, entry.attempts) == (event.event_id, "s", 2)
    assert [e.type for e in entry.errors] == ["ValueError", CRASH_LOOP]
    last = entry.errors[-1]
    assert last.attempt == 2
    assert "RabbitMQ parked it" in last.message
    assert "x-delivery-limit" in last.message
    assert queue_name(AMQPTransport(url).prefix, "s") in last.message
    assert (await bus.status(event.event_id)).subscriptions["s"] == DeliveryState.DEAD_LETTERED
    assert await message_count(parked_name) == 1  # the malformed one only
    assert [d.event.event_id for d in await bus.dlq.list()] == [event.event_id]  # once

    await bus.start()
    replayed = await bus.dlq.replay()
    assert [d.event.event_id for d in replayed] == [event.event_id]
    await eventually(lambda: handled == [(event.event_id, 1)])
    await bus.join(10)
    assert await bus.dlq.list() == []
    assert (await bus.status(event.event_id)).subscriptions["s"] == DeliveryState.DONE
    await bus.stop()
    assert await message_count(parked_name) == 1


async def test_a_running_worker_files_what_is_parked_meanwhile(
    url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(nerve.parked, "PARKED_POLL", 0.05)
    bus = EventBus(f"{url}&store=memory://")

    @bus.on("other.thing", name="worker")
    async def worker(got: Event) -> None:
        pass

    await bus.start()
    store = await bus._ready_store()
    try:
        event = Event(event_type="job.run")
        await park(url, event, filed_at_once=True)  # parked from "s", another app's
        found: list[DeadLetter] = []

        async def filed() -> None:
            found[:] = await store.dead_letters()

        async def look() -> bool:
            await filed()
            return bool(found)

        deadline = asyncio.get_running_loop().time() + 10
        while not await look():  # read from the store: bus.dlq would file them itself
            assert asyncio.get_running_loop().time() < deadline, "not filed within 10s"
            await asyncio.sleep(0.02)
        assert [(d.event.event_id, d.subscription) for d in found] == [(event.event_id, "s")]
        await eventually_async(lambda: message_count(f"{bus.transport.prefix}.parked"), 0)
    finally:
        await bus.stop()


async def nerve_cli(
    *args: str, env: dict[str, str], stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    """``nerve ARGS`` run to its end in a new process."""
    return await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "nerve", *args],
        cwd=ROOT,
        env=env,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def start_worker(app: str, env: dict[str, str]) -> subprocess.Popen[bytes]:
    """``nerve worker APP`` in a new process, left running."""
    return subprocess.Popen(  # noqa: S603  # our own CLI
        [sys.executable, "-m", "nerve", "worker", app],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


@pytest.mark.timeout(60)
async def test_a_handler_that_kills_its_process_is_parked_listed_and_replayed(
    url: str, tmp_path: Path
) -> None:
    """Real processes, the default store (the state directory's file): a handler that
    kills its worker is returned by the broker until it parks it (the subscription's
    retries are above the limit); ``nerve dlq list`` from a new process shows it,
    ``nerve dlq replay`` runs it again in a new worker."""
    runs, cure = tmp_path / "runs", tmp_path / "cure"
    env = {
        **{k: v for k, v in os.environ.items() if k not in ("NERVE_URL", "NERVE_STORE_URL")},
        "PYTHONPATH": str(ROOT),
        "NERVE_URL": url,
        "PARK_RUNS": str(runs),
        "PARK_CURE": str(cure),
    }
    app = "tests.apps.parking:bus"
    event = Event(event_type="park.job", payload={"n": 1})
    published = await nerve_cli(
        "publish", "--app", app, "--stdin", "--json", env=env, stdin=event.model_dump_json()
    )
    assert published.returncode == 0, published.stderr

    def lines() -> list[str]:
        return runs.read_text().splitlines() if runs.exists() else []

    for started in (1, 2):  # each worker dies in the handler
        worker = await nerve_cli("worker", app, env=env)
        assert worker.returncode == 3, worker.stderr
        assert lines() == [f"{event.event_id} dies"] * started
    await eventually_async(lambda: message_count(f"{AMQPTransport(url).prefix}.parked"), 1)

    listed = await nerve_cli("dlq", "list", "--url", url, "--json", env=env)
    assert listed.returncode == 0, listed.stderr
    [entry] = [DeadLetter.model_validate(json.loads(x)) for x in listed.stdout.splitlines()]
    assert (entry.event.event_id, entry.subscription) == (event.event_id, "job")
    assert [e.type for e in entry.errors] == [CRASH_LOOP]
    assert "RabbitMQ parked it" in entry.errors[0].message

    cure.touch()
    replayed = await nerve_cli("dlq", "replay", "--url", url, "--all", "--yes", env=env)
    assert replayed.returncode == 0, replayed.stderr
    cured = start_worker(app, env)
    try:
        await eventually(lambda: len(lines()) == 3, timeout=30)
        assert lines()[-1] == f"{event.event_id} cured"
    finally:
        cured.terminate()
        await asyncio.to_thread(cured.wait, 30)
    watcher = EventBus(url)
    try:
        status = await watcher.status(event.event_id)
        assert status.subscriptions["job"] == DeliveryState.DONE
        assert await watcher.dlq.list() == []
    finally:
        await watcher.stop()
