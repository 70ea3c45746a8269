"""The operator commands (publish, dlq, status, trace, tail) as real processes, on SQLite
and Redis, against the chain app (tests/apps/chain.py) run by a real ``nerve worker``."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from nerve import DeliveryState, Event, EventBus, Settings
from nerve.flow import Throttle
from tests.cli.test_commands import ROOT, environment, nerve, wait_for
from tests.conftest import drop_redis_keys, eventually

APP = "tests.apps.chain:bus"


@pytest.fixture(params=["sqlite", "redis"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/bus.db?lease=2&poll=0.02"
        return
    found = f"redis://127.0.0.1:6379/0?prefix=ops-{uuid.uuid4().hex[:12]}&lease=2"
    yield found
    drop_redis_keys(found)


class Worker:
    """``nerve worker`` of the chain app, stopped with SIGTERM."""

    def __init__(self, env: dict[str, str]) -> None:
        self.process = subprocess.Popen(  # noqa: S603  # our own CLI
            [sys.executable, "-m", "nerve", "worker", APP], cwd=ROOT, env=env
        )

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


@pytest.fixture
def worker(url: str, tmp_path: Path) -> Iterator[Worker]:
    found = Worker(environment(url, CHAIN_BROKEN=str(tmp_path / "broken")))
    yield found
    found.stop()


def status_of(event_id: str, env: dict[str, str]) -> dict[str, object]:
    result = nerve("status", event_id, "--json", env=env)
    assert result.returncode in (0, 1), result.stderr
    found: dict[str, object] = json.loads(result.stdout)
    return found


def settled(event_id: str, env: dict[str, str]) -> bool:
    return bool(status_of(event_id, env)["settled"])


def test_publish_with_no_worker_then_a_worker_handles_it(url: str, tmp_path: Path) -> None:
    env = environment(url)
    result = nerve("publish", "chain.c", "--payload", '{"n": 1}', "--json", env=env)
    assert result.returncode == 0, result.stderr
    event_id = json.loads(result.stdout)["event_id"]

    # No worker has ever run: the event is known, no subscription is declared yet.
    assert status_of(event_id, env)["subscriptions"] == {}
    result = nerve("status", event_id, env=env)
    assert result.returncode == 0, result.stderr
    assert "chain.c" in result.stdout

    worker = Worker(environment(url))
    try:
        wait_for(lambda: status_of(event_id, env)["subscriptions"] == {"c": "done"}, 30, "done")
    finally:
        worker.stop()
    found = status_of(event_id, env)
    assert found == {
        "event_id": event_id,
        "event_type": "chain.c",
        "settled": True,
        "subscriptions": {"c": "done"},
        "reasons": {},
    }
    result = nerve("status", event_id, env=env)
    assert result.returncode == 0
    assert "done" in result.stdout
    # Now the worker's subscriptions are declared: a new event is pending for "c".
    result = nerve("publish", "chain.c", "--json", env=env)
    second = json.loads(result.stdout)["event_id"]
    assert status_of(second, env)["subscriptions"] == {"c": "pending"}


async def test_status_shows_a_deferred_run_and_why(url: str) -> None:
    bus = EventBus(url, settings=Settings(timer_poll=0.02))
    ran: list[str] = []

    @bus.on("paced.job", name="paced", throttle=Throttle(1, per=3600))
    async def paced(event: Event[Any]) -> None:
        ran.append(event.event_id)

    async with bus:
        first, second = await bus.publish_many([Event(event_type="paced.job") for _ in range(2)])
        await eventually(lambda: len(ran) == 1, timeout=30)
        held = second if ran == [first.event_id] else first

        async def deferred() -> bool:
            return (await bus.status(held.event_id)).subscriptions == {
                "paced": DeliveryState.DEFERRED
            }

        deadline = time.monotonic() + 30
        while not await deferred():
            assert time.monotonic() < deadline, await bus.status(held.event_id)
            await asyncio.sleep(0.02)
        env = environment(url)
        found = await asyncio.to_thread(status_of, held.event_id, env)
        assert found["subscriptions"] == {"paced": "deferred"}
        assert found["settled"] is False
        reasons = found["reasons"]
        assert isinstance(reasons, dict)
        assert str(reasons["paced"]).startswith("throttled"), reasons
        table = await asyncio.to_thread(nerve, "status", held.event_id, env=env)
        assert table.returncode == 0, table.stderr
        assert "deferred" in table.stdout
        assert "throttled" in table.stdout


def test_publish_many_from_stdin(url: str, worker: Worker) -> None:
    env = environment(url)
    lines = "".join(json.dumps({"n": n}) + "\n" for n in range(250))
    result = subprocess.run(  # our own CLI
        [sys.executable, "-m", "nerve", "publish", "chain.c", "--stdin", "--json"],
        cwd=ROOT,
        env=env,
        input=lines,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    ids = [json.loads(line)["event_id"] for line in result.stdout.splitlines()]
    assert len(ids) == len(set(ids)) == 250
    wait_for(lambda: settled(ids[-1], env), 30, "the last handled")
    # whole events, without a type argument; and a bad line is a usage error
    events = json.dumps({"event_type": "chain.c", "payload": {"x": 1}}) + "\n"
    result = subprocess.run(
        [sys.executable, "-m", "nerve", "publish", "--stdin"],
        cwd=ROOT,
        env=env,
        input=events,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "published 1 events" in result.stdout
    bad = nerve("publish", "chain.c", "--payload", "{nope", env=env)
    assert bad.returncode == 2
    assert "--payload is not JSON" in bad.stderr


def test_trace_prints_the_three_levels_in_order(url: str, worker: Worker) -> None:
    env = environment(url)
    result = nerve("publish", "chain.a", "--payload", '{"q": 1}', "--json", env=env)
    assert result.returncode == 0, result.stderr
    published = json.loads(result.stdout)
    correlation = published["correlation_id"]

    def three_done() -> bool:
        found = nerve("trace", correlation, "--json", env=env)
        text = found.stdout
        return (
            found.returncode == 0
            and text.count('"state":"done"') + text.count('"state": "done"') >= 3
        )

    wait_for(three_done, 30, "the chain handled")
    result = nerve("trace", correlation, env=env)
    assert result.returncode == 0, result.stderr
    text = result.stdout
    a, b, c = text.index("chain.a"), text.index("chain.b"), text.index("chain.c")
    assert a < b < c
    lines = text.splitlines()
    indent = {
        kind: next(len(line) - len(line.lstrip(" │├└─")) for line in lines if kind in line)
        for kind in ("chain.a", "chain.b", "chain.c")
    }
    assert indent["chain.a"] < indent["chain.b"] < indent["chain.c"]  # a tree, not a list
    assert text.count("done") >= 3
    assert "attempt 1" in text
    # by an event id of the chain as well; JSON nests the same
    tree = json.loads(nerve("trace", published["event_id"], "--json", env=env).stdout)
    assert tree[0]["record"]["event"]["event_type"] == "chain.a"
    child = tree[0]["children"][0]
    assert child["record"]["event"]["event_type"] == "chain.b"
    assert child["children"][0]["record"]["event"]["event_type"] == "chain.c"
    missing = nerve("trace", "no-such-chain", env=env)
    assert missing.returncode == 1
    assert "no events" in missing.stderr


def test_dlq_list_show_replay_purge(url: str, worker: Worker, tmp_path: Path) -> None:
    env = environment(url)
    broken = tmp_path / "broken"
    broken.touch()
    ids = [
        json.loads(
            nerve("publish", "chain.flaky", "--payload", f'{{"n": {n}}}', "--json", env=env).stdout
        )["event_id"]
        for n in range(3)
    ]

    def dead() -> list[dict[str, object]]:
        found = nerve("dlq", "list", "--json", env=env)
        assert found.returncode == 0, found.stderr
        return [json.loads(line) for line in found.stdout.splitlines()]

    wait_for(lambda: len(dead()) == 3, 30, "three dead letters")
    assert {d["event"]["event_id"] for d in dead()} == set(ids)  # type: ignore[index]
    table = nerve("dlq", "list", env=env)
    assert table.returncode == 0
    assert "flaky" in table.stdout
    assert "RuntimeError: broken" in table.stdout
    assert "3 dead letter(s)" in table.stderr

    shown = nerve("dlq", "show", ids[0], env=env)
    assert shown.returncode == 0, shown.stderr
    assert "chain.flaky" in shown.stdout
    assert "attempt 1" in shown.stdout
    assert "RuntimeError" in shown.stdout
    assert "Traceback" in shown.stdout
    assert nerve("dlq", "show", "nope", env=env).returncode == 1
    assert status_of(ids[0], env)["subscriptions"] == {"flaky": "dead_lettered"}

    # Fix the cause; replay one by id: the running worker handles it.
    broken.unlink()
    replayed = nerve("dlq", "replay", ids[0], env=env)
    assert replayed.returncode == 0, replayed.stderr
    assert "replayed 1 dead letter(s)" in replayed.stdout
    wait_for(lambda: status_of(ids[0], env)["subscriptions"] == {"flaky": "done"}, 30, "replay")
    assert nerve("dlq", "replay", ids[0], env=env).returncode == 1  # nothing left of it

    # A wide selection asks first; "n" aborts.
    refused = subprocess.run(
        [sys.executable, "-m", "nerve", "dlq", "replay", "--all"],
        cwd=ROOT,
        env=env,
        input="n\n",
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert refused.returncode == 1
    assert "aborted" in refused.stderr
    assert len(dead()) == 2
    assert nerve("dlq", "replay", env=env).returncode == 2  # no selection: usage error

    purged = nerve("dlq", "purge", ids[1], "--json", env=env)
    assert json.loads(purged.stdout) == {"purged": 1}
    replayed = nerve("dlq", "replay", "--subscription", "flaky", "--yes", env=env)
    assert replayed.returncode == 0
    assert "replayed 1 dead letter(s)" in replayed.stdout
    wait_for(lambda: status_of(ids[2], env)["subscriptions"] == {"flaky": "done"}, 30, "replay")
    assert dead() == []
    assert nerve("dlq", "purge", "--all", "--yes", env=env).returncode == 1  # none left


def test_tail_shows_events_published_while_it_runs(url: str, tmp_path: Path) -> None:
    env = environment(url)
    nerve("publish", "chain.c", env=env)  # before tail: not shown (no --last)
    tail = subprocess.Popen(  # our own CLI
        [
            sys.executable,
            "-m",
            "nerve",
            "tail",
            "chain.*",
            "--json",
            "--count",
            "2",
            "--timeout",
            "50",
            "--interval",
            "0.05",
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        # tail takes its cursor when it starts: publish until it has seen two (the first
        # ones may precede its cursor), a deadline bounding the wait.
        published: list[str] = []
        deadline = time.monotonic() + 40
        while tail.poll() is None and time.monotonic() < deadline:
            for kind in ("other.x", "chain.b"):
                result = nerve("publish", kind, "--json", env=env)
                if kind == "chain.b":
                    published.append(json.loads(result.stdout)["event_id"])
        stdout, stderr = tail.communicate(timeout=30)
    finally:
        if tail.poll() is None:
            tail.kill()
            tail.wait()
    assert tail.returncode == 0, stderr
    shown = [json.loads(line) for line in stdout.splitlines()]
    assert len(shown) == 2
    assert all(s["event"]["event_type"] == "chain.b" for s in shown)  # the pattern filters
    ids = [s["event"]["event_id"] for s in shown]
    assert ids == [i for i in published if i in ids]  # in publish order
    assert set(ids) <= set(published)

    # --last shows the recent ones; a --timeout with --count unmet exits 1
    recent = nerve("tail", "--last", "1", "--count", "1", "--timeout", "5", env=env)
    assert recent.returncode == 0, recent.stderr
    assert "chain.b" in recent.stdout
    quiet = nerve("tail", "nothing.#", "--count", "1", "--timeout", "0.3", env=env)
    assert quiet.returncode == 1


def test_the_cli_refuses_an_in_process_transport() -> None:
    result = nerve("publish", "a.b", env=environment("memory://"))
    assert result.returncode == 2
    assert "memory:// is in-process" in result.stderr
