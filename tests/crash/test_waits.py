"""Crash tests of durable waits: a worker SIGKILLed anywhere in the wait cycle loses no run.

A ``nerve worker`` process runs ``tests.crash.wait_app`` (step ``first``, ``wait_for``
the order's decision, step ``second``) and kills itself with SIGKILL at one point of
the cycle: inside ``first`` (before the wait is registered), right after the wait is
registered (before its delivery is acknowledged), or in the resumed run (after
``wait_for`` returned, before ``second``). A fresh worker is started and the decision
published, and the run must finish: ``second`` recorded, each step's body run once (the
killed ``first`` twice: it ran, but its result was never recorded), the wait and its
timers gone, the event done. A fourth case kills the process that answers the wait (the
publisher of the decision, once it won the answer and before it recorded it): the
worker's timer loop finishes the answer.

The decision is published at a different moment in each case, so each path that
answers a wait is crossed: looked back for by the registering run (published before
the wait existed), matched by the publisher's event log while no worker runs, matched
while the run is suspended, and answered by the answer timer.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from nerve import Event, EventBus
from nerve.records import DeliveryState
from nerve.waits import ANSWER_STEP, answer_timer_id, timeout_timer_id, wait_id
from tests.conftest import TRANSPORTS, drop_test_data

ROOT = Path(__file__).resolve().parents[2]
#: Seconds a case may take to reach each of its stages.
STAGE = 20.0
#: SQLite needs no broker; NATS (JetStream, its own store) is the broker transport here
#: (Redis's store keeps no waits yet).
WAIT_TRANSPORTS = [name for name in ("sqlite", "nats") if name in TRANSPORTS]


@pytest.fixture(params=WAIT_TRANSPORTS)
def url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    url = TRANSPORTS[request.param](tmp_path, uuid.uuid4().hex[:12])
    yield url
    drop_test_data(url)


class Case:
    """One crash case: its files, its worker processes, and the test's own bus."""

    def __init__(self, tmp_path: Path, url: str, kill_at: str) -> None:
        self.tmp_path = tmp_path
        self.effects = tmp_path / "effects.txt"
        self.marker = tmp_path / "killed.txt"
        self.env = {
            **{k: v for k, v in os.environ.items() if k != "NERVE_STORE_URL"},
            "NERVE_URL": url,
            "NERVE_SHUTDOWN_GRACE": "5",
            "NERVE_TIMER_POLL": "0.05",
            "WAIT_EFFECTS": str(self.effects),
            "WAIT_KILL_AT": kill_at,
            "WAIT_KILL_MARKER": str(self.marker),
            "PYTHONPATH": str(ROOT),
        }
        self.processes: list[subprocess.Popen[bytes]] = []
        self.bus = EventBus(url)
        # The app's subscription exists before its event is published (as in test_crash).
        self.bus.subscribe("wc.order", _never_run, name="order")

    def start(self, *args: str) -> subprocess.Popen[bytes]:
        """A worker of the app, or (with ``args``) the app run as a publishing script."""
        command = args or ("-m", "nerve", "worker", "tests.crash.wait_app:bus")
        with (self.tmp_path / f"process-{len(self.processes)}.log").open("wb") as log:
            process = subprocess.Popen(  # noqa: S603  # our own CLI and app
                [sys.executable, *command], cwd=ROOT, env=self.env, stdout=log, stderr=log
            )
        self.processes.append(process)
        return process

    async def killed(self, process: subprocess.Popen[bytes], point: str) -> None:
        """Wait for ``process`` to have killed itself at ``point``."""
        code = await asyncio.to_thread(process.wait, STAGE)
        assert code == -signal.SIGKILL, f"exited {code}: {self.logs()}"
        assert self.marker.read_text().split()[0] == point

    async def publish(self, event_type: str, order_id: int) -> str:
        event = Event(event_type=event_type, payload={"id": order_id, "verdict": "ok"})
        return (await self.bus.publish(event)).event_id

    async def state(self, event_id: str) -> DeliveryState | None:
        return (await self.bus.status(event_id)).subscriptions.get("order")

    async def until(self, what: str, check: Callable[[], Awaitable[bool]]) -> None:
        deadline = time.monotonic() + STAGE
        while not await check():
            if time.monotonic() > deadline:
                pytest.fail(f"not {what} within {STAGE}s: {self.ran()}\n{self.logs()}")
            await asyncio.sleep(0.05)

    async def waiting(self, event_id: str) -> None:
        async def check() -> bool:
            return await self.state(event_id) is DeliveryState.WAITING

        await self.until("waiting", check)

    async def done(self, event_id: str) -> None:
        async def check() -> bool:
            return await self.state(event_id) is DeliveryState.DONE

        await self.until("done", check)

    def ran(self) -> Counter[str]:
        """How many times each step's body ran, in every process."""
        if not self.effects.exists():
            return Counter()
        return Counter(line.split()[0] for line in self.effects.read_text().splitlines())

    def logs(self) -> str:
        return "\n".join(p.read_text() for p in sorted(self.tmp_path.glob("process-*.log")))

    async def close(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in self.processes:
            await asyncio.to_thread(process.wait, 30)
        await self.bus.stop()


async def _never_run(event: Event) -> None:
    raise AssertionError("the test's bus is never started")


async def crash(case: Case, kill_at: str) -> str:
    """Run the case's worker to its kill and a fresh one to the end; the order's id."""
    order = await case.publish("wc.order", 1)
    first = case.start()
    if kill_at == "first":
        await case.killed(first, "first")
        # Decided before the wait exists: the next run's look back finds it.
        await case.publish("wc.decided", 1)
        case.start()
    elif kill_at == "registered":
        await case.killed(first, "registered")
        # Matched by this bus's event log while no worker runs: answered, redelivered
        # (and the killed worker's unacknowledged delivery comes back too).
        await case.publish("wc.decided", 1)
        case.start()
    elif kill_at == "resumed":
        await case.waiting(order)
        await case.publish("wc.decided", 1)
        await case.killed(first, "resumed")
        case.start()
    else:  # "answering": the decision's publisher dies once it won the answer
        await case.waiting(order)
        publisher = case.start("-m", "tests.crash.wait_app", "1")
        await case.killed(publisher, "answering")
        # The answer timer is left to come due; the running worker finishes it.
    await case.done(order)
    return order


@pytest.mark.timeout(120)
@pytest.mark.parametrize("kill_at", ["first", "registered", "resumed", "answering"])
def test_a_killed_worker_loses_no_waiting_run(url: str, tmp_path: Path, kill_at: str) -> None:
    case = Case(tmp_path, url, kill_at)

    async def scenario() -> tuple[str, dict[str, Any]]:
        try:
            order = await crash(case, kill_at)
            store = await case.bus._ready_store()  # the run's records
            waited = wait_id("order", order, "wait:1")
            left = {
                "steps": [
                    await store.step_result("order", order, name)
                    for name in ("first", ANSWER_STEP + "wait:1", "second")
                ],
                "waits": await store.waits(event_id=order),
                "timers": [
                    await store.timer(timer_id)
                    for timer_id in (answer_timer_id(waited), timeout_timer_id(waited))
                ],
            }
            return order, left
        finally:
            await case.close()  # a duplicate delivery still in flight settles first

    order, left = asyncio.run(scenario())
    ran = case.ran()
    assert ran == {"first": 2 if kill_at == "first" else 1, "second": 1}, (order, ran)
    assert None not in left["steps"], left
    assert left["waits"] == [], left
    assert left["timers"] == [None, None], left
