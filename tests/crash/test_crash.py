"""Crash tests with real processes: workers killed with SIGKILL lose nothing.

Four ``nerve worker`` processes handle 10,000 events while the test kills one of them with
SIGKILL about every second, as long as the workers make progress between kills (and starts
a replacement, as a supervisor would). Afterwards
every event has been handled; plain side effects are duplicated no more than the kills
can explain, and side effects written with ``nerve.transaction()`` are never duplicated.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from nerve import Event, EventBus
from nerve.settler import SETTLE_BATCH
from tests.conftest import TRANSPORTS, drop_test_data

ROOT = Path(__file__).resolve().parents[2]
EVENTS = 10_000
WORKERS = 4
CONCURRENCY = 8  # the crash app's subscription
DEADLINE = 240.0
#: A worker is killed about every second, once this many more events have been handled
#: since the previous kill (up to EVENTS / PROGRESS_PER_KILL kills in all).
PROGRESS_PER_KILL = 100

#: Every durable transport of the suites. The store is the transport's default (Redis's,
#: SQLite's) except in the transactional test: a database store, a SQLite file.
CRASH_TRANSPORTS = sorted(name for name in TRANSPORTS if name != "memory")


@dataclass
class Outcome:
    handled: int
    duplicates: int
    kills: int
    dead_letters: list[str]


def count(db: Path, table: str) -> tuple[int, int]:
    """(distinct events, rows) in a side-effect table."""
    with sqlite3.connect(db, timeout=30) as conn:
        distinct, rows = conn.execute(
            f"SELECT COUNT(DISTINCT event_id), COUNT(*) FROM {table}"  # noqa: S608  # our table names
        ).fetchone()
    return int(distinct), int(rows)


@pytest.fixture(params=CRASH_TRANSPORTS)
def url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    url = TRANSPORTS[request.param](tmp_path, uuid.uuid4().hex[:12])
    yield url
    drop_test_data(url)


def spawn(env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(  # our own CLI
        [sys.executable, "-m", "nerve", "worker", "tests.crash.app:bus"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


async def publish(url: str, store_url: str | None, poison: bool) -> list[str]:
    bus = EventBus(url, store=store_url)
    # The app's subscription exists before its events are published, as when its workers
    # have run once (RabbitMQ keeps a message only for the queues that exist then). A bus
    # that is never started declares its subscriptions and consumes nothing.
    bus.subscribe("crash.job", _never_run, name="job")
    events = [Event(event_type="crash.job", payload={"n": n}) for n in range(EVENTS)]
    if poison:
        events.append(Event(event_type="crash.job", payload={"poison": True}))
    published = await bus.publish_many(events)
    await bus.stop()
    return [e.event_id for e in published]


async def _never_run(event: Event) -> None:
    raise AssertionError("the publishing bus is never started")


def run_with_kills(tmp_path: Path, url: str, *, transactional: bool, poison: bool) -> Outcome:
    effects = tmp_path / "effects.db"
    table = "effects_tx" if transactional else "effects"
    tx_db = tmp_path / "tx.db"
    store_url = f"sqlite:///{tx_db}" if transactional else None
    for db, name in ((effects, "effects"), (tx_db, "effects_tx")):
        with sqlite3.connect(db) as conn:
            conn.execute(f"CREATE TABLE IF NOT EXISTS {name} (event_id TEXT, pid INTEGER)")
    target = tx_db if transactional else effects

    asyncio.run(publish(url, store_url, poison))
    env = {
        **{k: v for k, v in os.environ.items() if k != "NERVE_STORE_URL"},
        **({"NERVE_STORE_URL": store_url} if store_url else {}),
        "NERVE_URL": url,
        "NERVE_SHUTDOWN_GRACE": "5",
        "CRASH_EFFECTS_DB": str(effects),
        "CRASH_TRANSACTIONAL": "1" if transactional else "0",
        "PYTHONPATH": str(ROOT),
    }
    workers = [spawn(env) for _ in range(WORKERS)]
    kills = 0
    rng = random.Random(7)
    deadline = time.monotonic() + DEADLINE
    handled_at_kill = 0
    try:
        while (handled := count(target, table)[0]) < EVENTS:
            if time.monotonic() > deadline:
                pytest.fail(f"only {handled} of {EVENTS} handled in {DEADLINE}s, {kills} kills")
            time.sleep(1.0)  # the kill cadence, not a wait for a result
            handled = count(target, table)[0]
            if handled >= EVENTS:
                break
            if handled - handled_at_kill < PROGRESS_PER_KILL:
                # Not until the workers have recovered from the last kill: a kill a second
                # outpaces a Kafka group's rebalance on a loaded machine, and nothing moves.
                continue
            handled_at_kill = handled
            victim = rng.randrange(WORKERS)
            workers[victim].send_signal(signal.SIGKILL)
            workers[victim].wait()
            kills += 1
            workers[victim] = spawn(env)
        if poison:  # the poison event needs its retries before it is dead-lettered
            asyncio.run(wait_for_dead_letter(url, store_url, deadline))
    finally:
        for worker in workers:
            worker.send_signal(signal.SIGTERM)
        for worker in workers:
            worker.wait(timeout=30)
    handled, rows = count(target, table)
    print(
        f"crash outcome ({url}, transactional={transactional}): {handled} handled, "
        f"{rows - handled} duplicates, {kills} kills"
    )
    return Outcome(handled, rows - handled, kills, asyncio.run(dead_letters(url, store_url)))


async def dead_letters(url: str, store_url: str | None) -> list[str]:
    bus = EventBus(url, store=store_url)
    entries = await bus.dlq.list()
    await bus.stop()
    return [
        f"{e.subscription}:{e.attempts}:{e.last_error.message if e.last_error else ''}"
        for e in entries
    ]


async def wait_for_dead_letter(url: str, store_url: str | None, deadline: float) -> None:
    while not await dead_letters(url, store_url):
        if time.monotonic() > deadline:
            pytest.fail("the poison event never reached the dead letter queue")
        await asyncio.sleep(0.2)


@pytest.mark.timeout(DEADLINE + 60)
def test_sigkilled_workers_lose_nothing(url: str, tmp_path: Path) -> None:
    outcome = run_with_kills(tmp_path, url, transactional=False, poison=False)
    assert outcome.handled == EVENTS
    assert outcome.kills >= 1
    # What a kill can duplicate: handlers in flight, and successes not yet recorded
    # (the settler records them every 5 ms or SETTLE_BATCH).
    assert outcome.duplicates <= outcome.kills * (CONCURRENCY + SETTLE_BATCH), outcome
    assert outcome.dead_letters == []


@pytest.mark.timeout(DEADLINE + 60)
def test_transactional_effects_are_never_duplicated(url: str, tmp_path: Path) -> None:
    outcome = run_with_kills(tmp_path, url, transactional=True, poison=False)
    assert outcome.handled == EVENTS
    assert outcome.kills >= 1
    assert outcome.duplicates == 0


@pytest.mark.timeout(DEADLINE + 60)
def test_a_poison_event_ends_in_the_dead_letter_queue(url: str, tmp_path: Path) -> None:
    outcome = run_with_kills(tmp_path, url, transactional=False, poison=True)
    assert outcome.handled == EVENTS
    assert outcome.dead_letters == ["job:3:poison event"]
