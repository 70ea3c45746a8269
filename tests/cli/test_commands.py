"""The ``nerve`` command, run as a real process against real transports."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from nerve import DeliveryState, Event, EventBus
from nerve.urls import redact
from tests.conftest import drop_redis_keys

ROOT = Path(__file__).resolve().parents[2]
APP = "tests.apps.slow:bus"


def nerve(*args: str, env: dict[str, str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # noqa: S603  # our own CLI
        [sys.executable, "-m", "nerve", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def environment(url: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NERVE_")}
    return {**env, "NERVE_URL": url, "PYTHONPATH": str(ROOT), "COLUMNS": "200", **extra}


@pytest.fixture(params=["sqlite", "redis"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/bus.db?lease=2&poll=0.02"
        return
    found = f"redis://127.0.0.1:6379/0?prefix=cli-{uuid.uuid4().hex[:12]}&lease=2"
    yield found
    drop_redis_keys(found)


def test_doctor_reports_a_healthy_transport_and_store(url: str) -> None:
    result = nerve("doctor", APP, env=environment(url))
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("ok") >= 2
    assert "0 dead letter(s)" in result.stdout
    assert "slow" in result.stdout  # the subscription


def test_doctor_fails_clearly_when_the_broker_is_unreachable() -> None:
    url = "redis://:s3cret@127.0.0.1:1/0"  # nothing listens on port 1
    result = nerve("doctor", APP, env=environment(url))
    assert result.returncode == 1
    assert "cannot reach Redis at 127.0.0.1:1/0" in result.stdout
    assert "s3cret" not in result.stdout + result.stderr  # never print a password
    assert redact(url) == "redis://:***@127.0.0.1:1/0"
    nested = "kafka://h:9092?store=postgresql://app:pw@db/app&x=1"
    assert redact(nested) == "kafka://h:9092?store=postgresql://app:***@db/app&x=1"
    assert redact("amqp://guest:guest@h:5672/") == "amqp://guest:***@h:5672/"
    assert redact("sqlite:///tmp/a.db") == "sqlite:///tmp/a.db"


def test_a_bad_app_argument_is_a_usage_error(tmp_path: Path) -> None:
    result = nerve("doctor", ":bus", env=environment(f"sqlite:///{tmp_path}/x.db"))
    assert result.returncode == 2
    assert "expected module:attribute" in result.stderr
    result = nerve("doctor", "tests.apps.nowhere", env=environment(f"sqlite:///{tmp_path}/x.db"))
    assert result.returncode == 2
    assert "no module named 'tests.apps.nowhere'" in result.stderr
    result = nerve("doctor", "tests.apps.slow:LOG", env=environment(f"sqlite:///{tmp_path}/x.db"))
    assert result.returncode == 2
    assert "is not an EventBus" in result.stderr


def wait_for(condition: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        if time.monotonic() > deadline:
            pytest.fail(f"{what} not within {timeout}s")
        time.sleep(0.02)


def lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


async def publish(url: str, count: int) -> list[str]:
    bus = EventBus(url)
    events = await bus.publish_many(
        [Event(event_type="slow.job", payload={"n": n}) for n in range(count)]
    )
    await bus.stop()
    return [e.event_id for e in events]


async def statuses(url: str, ids: list[str]) -> list[DeliveryState]:
    from tests.apps.slow import slow

    bus = EventBus(url)
    bus.subscribe("slow.job", slow, name="slow")
    found = [(await bus.status(i)).subscriptions["slow"] for i in ids]
    await bus.stop()
    return found


def test_sigterm_drains_in_flight_handlers_and_leaves_the_rest(url: str, tmp_path: Path) -> None:
    log = tmp_path / "slow.log"
    env = environment(url, SLOW_LOG=str(log), SLOW_SECONDS="1.5", NERVE_SHUTDOWN_GRACE="20")
    first = subprocess.Popen(  # noqa: S603  # our own CLI
        [sys.executable, "-m", "nerve", "worker", APP], cwd=ROOT, env=env
    )
    try:
        ids = asyncio.run(publish(url, 6))
        wait_for(lambda: len(lines(log)) >= 2, 30, "two handlers starting")
        first.send_signal(signal.SIGTERM)
        assert first.wait(timeout=30) == 0
    finally:
        if first.poll() is None:
            first.kill()
    started = [line for line in lines(log) if line.startswith("start")]
    done = [line for line in lines(log) if line.startswith("done")]
    # Every handler that began was allowed to finish (concurrency 2: no more than 2
    # running at the signal); nothing was started after it.
    assert sorted(s.split()[1] for s in started) == sorted(d.split()[1] for d in done)
    assert 2 <= len(done) < 6
    states = asyncio.run(statuses(url, ids))
    assert states.count(DeliveryState.DONE) == len(done)
    assert states.count(DeliveryState.PENDING) == 6 - len(done)

    # The next worker handles the rest.
    second = subprocess.Popen(  # noqa: S603  # our own CLI
        [sys.executable, "-m", "nerve", "worker", APP, "--workers", "2"], cwd=ROOT, env=env
    )
    try:
        wait_for(lambda: len([x for x in lines(log) if x.startswith("done")]) >= 6, 60, "all")
    finally:
        second.send_signal(signal.SIGTERM)
        second.wait(timeout=30)
    assert second.returncode == 0
    assert asyncio.run(statuses(url, ids)) == [DeliveryState.DONE] * 6
    done_numbers = [int(line.split()[1]) for line in lines(log) if line.startswith("done")]
    assert sorted(done_numbers) == list(range(6))  # each handled once


def test_worker_logs_one_json_line_per_outcome(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/bus.db?lease=2&poll=0.02"
    ids = asyncio.run(publish(url, 2))
    err = tmp_path / "worker.err"
    env = environment(url, SLOW_SECONDS="0", NERVE_LOG_FORMAT="json")
    with err.open("w") as stderr:
        process = subprocess.Popen(  # noqa: S603  # our own CLI
            [sys.executable, "-m", "nerve", "worker", APP], cwd=ROOT, env=env, stderr=stderr
        )
    try:

        def outcomes() -> list[dict[str, object]]:
            found = []
            for line in err.read_text().splitlines():
                if line.startswith("{"):
                    record = json.loads(line)
                    if record.get("logger") == "nerve.events":
                        found.append(record)
            return found

        wait_for(lambda: len(outcomes()) == 2, 20, "two outcome lines")
        lines_ = outcomes()
        assert sorted(str(r["event_id"]) for r in lines_) == sorted(ids)
        assert {r["outcome"] for r in lines_} == {"handled"}
        assert {r["subscription"] for r in lines_} == {"slow"}
        assert all(r["level"] == "INFO" and r["event_type"] == "slow.job" for r in lines_)
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
