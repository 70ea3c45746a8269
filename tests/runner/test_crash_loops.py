"""A handler that kills its process every time is dead-lettered, not run forever.

Real worker processes on durable transports: each one dies in the handler; the event
comes back to the next one; after ``retries + 2`` runs it is dead-lettered with
:class:`nerve.CrashLoop`, and a worker started then stays up.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from nerve import DeadLetter, Event, EventBus
from tests.cli.test_commands import ROOT, environment, lines
from tests.conftest import drop_redis_keys

APP = "tests.apps.crashing"


@pytest.fixture(params=["sqlite", "redis"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/bus.db?lease=1&poll=0.02"
        return
    found = f"redis://127.0.0.1:6379/0?prefix=crashloop-{uuid.uuid4().hex[:12]}&lease=1"
    yield found
    drop_redis_keys(found)


async def publish(url: str) -> tuple[str, str]:
    from tests.apps.crashing import dies, fine

    bus = EventBus(url)
    bus.subscribe("crash.loop", dies, name="dies", retries=1)  # declared before publishing
    bus.subscribe("crash.fine", fine, name="fine")
    doomed = await bus.publish(Event(event_type="crash.loop"))
    ok = await bus.publish(Event(event_type="crash.fine"))
    await bus.stop()
    return doomed.event_id, ok.event_id


async def dead_letters(url: str) -> list[DeadLetter]:
    bus = EventBus(url)
    try:
        return await bus.dlq.list()
    finally:
        await bus.stop()


@pytest.mark.timeout(120)
def test_a_handler_that_kills_its_process_is_dead_lettered(url: str, tmp_path: Path) -> None:
    doomed, _ = asyncio.run(publish(url))
    runs = tmp_path / "runs"
    env = environment(url, CRASH_RUNS=str(runs))
    command = [sys.executable, "-m", "nerve", "worker", APP]
    deadline = time.monotonic() + 90
    workers = 0
    while time.monotonic() < deadline:
        workers += 1
        worker = subprocess.Popen(  # noqa: S603  # our own CLI
            command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        try:
            code = worker.wait(timeout=15)  # dies in the handler once the event is back
        except subprocess.TimeoutExpired:
            code = None  # still up: the event was dead-lettered instead of run
        finally:
            if worker.poll() is None:
                worker.kill()
                worker.wait()
        if code is None:
            break
        assert code == 3, f"worker {workers} exited with {code}"
    else:
        pytest.fail(f"still crashing after {workers} workers")
    retries = 1
    assert lines(runs) == [doomed] * (retries + 2)  # ran retries + 2 times, then no more
    (entry,) = asyncio.run(dead_letters(url))
    assert (entry.event.event_id, entry.subscription) == (doomed, "dies")
    error = entry.last_error
    assert error is not None
    assert error.type == "nerve.exceptions.CrashLoop"
    assert "the process handling it died each time" in error.message
