"""Every broker keeps nerve's state where it lasts, with no store given.

One test per durable transport, its URL naming no store: the transport's default keeps the
done marks and dead letters (Redis in its own keys, SQLite in the same file, NATS in its
key-value buckets, RabbitMQ and Kafka in ``{NERVE_STATE_DIR}/nerve-{prefix}.db``). Real
processes: two ``nerve worker`` processes handle what a third publishes; a poison event is
dead-lettered; both workers are SIGKILLed; more events are published, and one already done
again (the same event, as a broker redelivers it); two new workers handle the new events
and do not run the done one again; ``nerve dlq list`` from a new process shows the poison
event with each attempt's error; ``nerve dlq replay`` runs it again: still failing, it
comes back with new errors; cured, it is done.

The done event is published again before the new ones, which go in the same order on every
broker (one stream, queue or table; on Kafka partition 0, events having no partition key):
once the new ones are handled, the workers have met it. The runs are counted again once
every worker has exited.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import pytest

from nerve import DeadLetter, DeliveryState, Event, EventBus
from tests.apps.recorded import POISON
from tests.conftest import ALL_TRANSPORTS, drop_test_data

ROOT = Path(__file__).resolve().parents[2]
APP = "tests.apps.recorded:bus"
SUBSCRIPTION = "job"  # the app's
GOOD = 6  # good events before the kill
MORE = 4  # good events after it
WAIT = 60.0  # seconds, at most, for any one condition
#: NATS drops a re-published event id within the stream's dedupe window (2 minutes by
#: default): a second here, so that the re-published done event reaches the new workers
#: and the store is what stops it, as on the other brokers.
DEDUPE_WINDOW = 1.0
BROKERS = ["amqp", "kafka", "nats", "redis", "sqlite"]
#: The poison event's dead letter: each attempt's (number, error type, message).
ERRORS = [(1, "ValueError", POISON), (2, "ValueError", POISON)]


@dataclass(frozen=True)
class Case:
    broker: str
    url: str  # no store= option
    store: str  # the store URL a bus on it uses: the transport's default
    files: tuple[Path, ...]  # the SQLite files holding the state, if any


def default_state_url(broker: str, tmp: Path, uid: str) -> str:
    """The suites' URL for the broker (its own prefix or file, short leases) without its
    ``store=`` option."""
    base, _, query = ALL_TRANSPORTS[broker](tmp, uid).partition("?")
    options = [option for option in query.split("&") if not option.startswith("store=")]
    if broker == "nats":
        options.append(f"dedupe_window={DEDUPE_WINDOW:g}")
    return f"{base}?{'&'.join(options)}"


@pytest.fixture(params=BROKERS)
def case(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Case]:
    broker = request.param
    uid = uuid.uuid4().hex[:12]
    url = default_state_url(broker, tmp_path, uid)
    assert "store=" not in url
    files: tuple[Path, ...] = ()
    if broker in ("redis", "nats"):
        store = url  # the broker itself
    elif broker == "sqlite":
        store = url.split("?", 1)[0]  # the same file
        files = (Path(store.removeprefix("sqlite:///")),)
    else:  # a SQLite file named for the prefix in the state directory (tests/conftest.py's)
        path = Path(os.environ["NERVE_STATE_DIR"]) / f"nerve-t-{uid}.db"
        store = f"sqlite:///{path}"
        files = (path,)
    yield Case(broker, url, store, files)
    drop_test_data(url)
    if broker in ("amqp", "kafka"):  # the state directory is the whole run's
        for path in files:
            for suffix in ("", "-wal", "-shm"):
                Path(f"{path}{suffix}").unlink(missing_ok=True)


def environment(**extra: str) -> dict[str, str]:
    """This process's environment without nerve's settings (no NERVE_URL, no
    NERVE_STORE_URL) but the state directory, which the test run sets."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("NERVE_") or key == "NERVE_STATE_DIR"
    }
    return {**env, "PYTHONPATH": str(ROOT), **extra}


async def nerve(*args: str, env: dict[str, str], stdin: str | None = None) -> str:
    """Run ``nerve ARGS`` in a new process; its stdout, once it exited 0."""
    done = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "nerve", *args],
        cwd=ROOT,
        env=env,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=WAIT,
        check=False,
    )
    assert done.returncode == 0, f"nerve {' '.join(args)}: {done.returncode}\n{done.stderr}"
    return done.stdout


async def publish(url: str, events: Sequence[Event], env: dict[str, str]) -> None:
    """Publish ``events``, in order, from a new process (``nerve publish --stdin``).

    With ``--app`` the publishing bus declares the app's subscription first, as its
    workers have (RabbitMQ keeps a message only for the queues that exist then).
    """
    lines = "".join(event.model_dump_json() + "\n" for event in events)
    out = await nerve(
        "publish", "--app", APP, "--url", url, "--stdin", "--json", env=env, stdin=lines
    )
    assert [json.loads(line)["event_id"] for line in out.splitlines()] == [
        event.event_id for event in events
    ]


async def dead_letters(url: str, env: dict[str, str]) -> list[DeadLetter]:
    """``nerve dlq list --json`` from a new process."""
    out = await nerve("dlq", "list", "--url", url, "--json", env=env)
    return [DeadLetter.model_validate_json(line) for line in out.splitlines() if line.strip()]


def start_worker(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(  # noqa: S603  # our own CLI
            [sys.executable, "-m", "nerve", "worker", APP],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def runs(path: Path) -> Counter[str]:
    """How many times the handler ran each event (all processes)."""
    lines = path.read_text().splitlines() if path.exists() else []
    return Counter(line.split()[0] for line in lines)


async def until(
    condition: Callable[[], Awaitable[bool]], what: str, explain: Callable[[], Awaitable[str]]
) -> None:
    deadline = time.monotonic() + WAIT
    while not await condition():
        if time.monotonic() > deadline:
            pytest.fail(f"{what}: not within {WAIT}s\n{await explain()}")
        await asyncio.sleep(0.05)


def at(stamp: str) -> datetime:
    return datetime.fromisoformat(stamp)


@pytest.mark.timeout(4 * WAIT)
async def test_state_lasts_across_killed_workers_with_the_default_store(
    case: Case, tmp_path: Path
) -> None:
    url = case.url
    ran = tmp_path / "runs"
    cure = tmp_path / "cure"
    env = environment()
    worker_env = environment(
        NERVE_URL=url, NERVE_SHUTDOWN_GRACE="5", STATE_RUNS=str(ran), STATE_CURE=str(cure)
    )
    watcher = EventBus(url)  # reads the store, as an operator would (never started)
    assert watcher.store_url == case.store  # the transport's default: no store given
    good = [Event(event_type="state.job", payload={"n": n}) for n in range(GOOD)]
    poison = Event(event_type="state.job", payload={"poison": True})
    more = [Event(event_type="state.job", payload={"n": n}) for n in range(GOOD, GOOD + MORE)]
    done_again = good[0]
    started: list[subprocess.Popen[bytes]] = []
    logs = [tmp_path / f"worker-{n}.log" for n in range(4)]

    async def state(event: Event) -> DeliveryState | None:
        return (await watcher.status(event.event_id)).subscriptions.get(SUBSCRIPTION)

    async def all_in(events: Sequence[Event], wanted: DeliveryState) -> bool:
        found = runs(ran)
        if any(found[event.event_id] == 0 for event in events):
            return False  # not run yet: no need to ask the store
        return all([await state(event) == wanted for event in events])

    async def explain() -> str:
        found = runs(ran)
        lines = [f"runs: {dict(found)}"]
        for event in [*good, poison, *more]:
            lines.append(f"{event.event_id} {event.payload}: {await state(event)}")
        for log in logs:
            if log.exists():
                lines.append(f"--- {log.name}\n" + "\n".join(log.read_text().splitlines()[-20:]))
        return "\n".join(lines)

    async def kill_both() -> None:
        for worker in started:
            worker.send_signal(signal.SIGKILL)  # only the processes this test started
        for worker in started:
            await asyncio.to_thread(worker.wait, WAIT)

    try:
        # Two workers and a publisher; the poison event is dead-lettered.
        started += [start_worker(worker_env, logs[0]), start_worker(worker_env, logs[1])]
        await publish(url, [*good, poison], env)
        published_at = time.monotonic()

        async def first_round_settled() -> bool:
            return await all_in(good, DeliveryState.DONE) and (
                await state(poison) == DeliveryState.DEAD_LETTERED
            )

        await until(first_round_settled, "the good events done, the poison dead", explain)
        found = runs(ran)
        assert all(found[event.event_id] == 1 for event in good), found
        assert found[poison.event_id] == 2  # retries=1

        # Every process dies at once; the state is where it lasts.
        await kill_both()
        assert all(path.exists() for path in case.files), case.files

        # More events, and a done one again (a redelivery), while no worker runs.
        if case.broker == "nats":  # past the stream's dedupe window (see DEDUPE_WINDOW)
            await asyncio.sleep(max(0.0, published_at + DEDUPE_WINDOW + 0.5 - time.monotonic()))
        await publish(url, [done_again], env)
        await publish(url, more, env)  # after it, in the one order these events have
        started += [start_worker(worker_env, logs[2]), start_worker(worker_env, logs[3])]

        async def new_ones_done() -> bool:
            return await all_in(more, DeliveryState.DONE)

        await until(new_ones_done, "the new events done by the new workers", explain)

        # From a new process: the dead letter, with each attempt's error.
        letters = await dead_letters(url, env)
        assert [(d.event.event_id, d.subscription) for d in letters] == [
            (poison.event_id, SUBSCRIPTION)
        ], letters
        first = letters[0]
        assert first.event == poison
        errors = [(e.attempt, e.type, e.message) for e in first.errors]
        # On RabbitMQ a kill within 2 s of the poison's first retry returns its original
        # (held while its wait queue is new) after it was dead-lettered: the runner must
        # settle it without running it again, keeping the dead letter whole.
        assert (first.attempts, errors) == (2, ERRORS), f"{first!r}\n{await explain()}"
        assert all("raise ValueError(POISON)" in e.traceback for e in first.errors)

        # Replayed and still failing: back in the dead letter queue with new errors.
        before = runs(ran)[poison.event_id]
        replayed = await nerve("dlq", "replay", poison.event_id, "--url", url, "--json", env=env)
        assert json.loads(replayed) == {"replayed": 1}

        async def dead_again() -> bool:
            if runs(ran)[poison.event_id] < before + 2:
                return False
            again = await watcher.dlq.list(event_id=poison.event_id)
            return bool(again) and again[0].dead_at > first.dead_at

        await until(dead_again, "the replayed poison event dead-lettered again", explain)
        letters = await dead_letters(url, env)
        assert [(d.event.event_id, d.attempts) for d in letters] == [(poison.event_id, 2)]
        second = letters[0]
        assert [(e.attempt, e.type, e.message) for e in second.errors] == ERRORS
        assert all(at(e.time) > at(first.dead_at) for e in second.errors), second.errors

        # Cured and replayed: done, and the dead letter queue is empty.
        cure.touch()
        replayed = await nerve("dlq", "replay", poison.event_id, "--url", url, "--json", env=env)
        assert json.loads(replayed) == {"replayed": 1}

        async def cured() -> bool:
            return await state(poison) == DeliveryState.DONE

        await until(cured, "the cured poison event done", explain)
        assert await dead_letters(url, env) == []

        # SIGTERM: the new workers drain and exit cleanly.
        for worker in started[2:]:
            worker.send_signal(signal.SIGTERM)
        for worker in started[2:]:
            assert await asyncio.to_thread(worker.wait, WAIT) == 0
    finally:
        for worker in started:
            if worker.poll() is None:  # a failure above: nothing of ours is left running
                worker.kill()
                await asyncio.to_thread(worker.wait, WAIT)
        await watcher.stop()

    # Every run, once every worker has exited: the done event was not run again.
    found = runs(ran)
    assert found[done_again.event_id] == 1, found
    assert all(found[event.event_id] == 1 for event in [*good, *more]), found
    # 2 attempts, 2 more after a replay, 1 cured
    assert found[poison.event_id] == 5, found
    assert set(found) == {event.event_id for event in [*good, poison, *more]}
