"""``nerve waits`` and ``nerve approvals list|approve|reject``.

As real processes on SQLite and Redis, against the approving app (tests/apps/approving.py)
run by a real ``nerve worker``: a decision made by the command reaches the run waiting in
the worker. And in process, on ``memory://``: what the commands print and how they fail.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import typer

from nerve import Event, EventBus, wait_for
from nerve.approvals import Decision, approval
from nerve.cli.operator_bus import run_on
from nerve.cli.waiting import decide_approval, list_approvals, list_waits
from tests.cli.test_commands import ROOT, environment, lines, nerve
from tests.cli.test_commands import wait_for as wait_until
from tests.cli.test_events import Worker
from tests.conftest import drop_redis_keys, eventually

APP = "tests.apps.approving:bus"


@pytest.fixture(params=["sqlite", "redis"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/bus.db?lease=2&poll=0.02"
        return
    found = f"redis://127.0.0.1:6379/0?prefix=wait-{uuid.uuid4().hex[:12]}&lease=2"
    yield found
    drop_redis_keys(found)


class ApprovingWorker(Worker):
    """``nerve worker`` of the approving app, stopped with SIGTERM."""

    def __init__(self, env: dict[str, str]) -> None:
        self.process = subprocess.Popen(  # noqa: S603  # our own CLI
            [sys.executable, "-m", "nerve", "worker", APP], cwd=ROOT, env=env
        )


def json_lines(*args: str, env: dict[str, str]) -> list[dict[str, Any]]:
    result = nerve(*args, "--json", env=env)
    assert result.returncode == 0, result.stderr
    return [json.loads(line) for line in result.stdout.splitlines()]


def test_approve_from_the_command_line_resumes_the_run_in_the_worker(
    url: str, tmp_path: Path
) -> None:
    log = tmp_path / "decided.log"
    env = environment(url, APPROVING_LOG=str(log))
    worker = ApprovingWorker(env)
    try:
        for refund in ("r-1", "r-2"):
            payload = json.dumps({"id": refund, "amount": 250})
            published = nerve("publish", "refund.requested", "--payload", payload, env=env)
            assert published.returncode == 0, published.stderr
        found: list[dict[str, Any]] = []

        def both_pending() -> bool:
            found[:] = json_lines("approvals", "list", env=env)
            return len(found) == 2

        wait_until(both_pending, 60, "two pending approvals")
        by_refund = {item["payload"]["refund_id"]: item for item in found}
        assert by_refund["r-1"]["name"] == "refund.approve"
        assert by_refund["r-1"]["subscription"] == "refunds"
        first, second = by_refund["r-1"]["approval_id"], by_refund["r-2"]["approval_id"]

        table = nerve("approvals", "list", env=env)
        assert table.returncode == 0, table.stderr
        assert first in table.stdout
        assert second in table.stdout
        assert '"amount": 250' in table.stdout
        assert "2 pending approval(s)" in table.stderr

        waiting = json_lines("waits", env=env)
        assert {w["awaited"] for w in waiting} == {"approval.decided"}
        assert {w["match"]["payload.approval_id"] for w in waiting} == {first, second}
        assert all(w["deadline"] for w in waiting)  # bounded by the default timeout
        table = nerve("waits", "--subscription", "refunds", env=env)
        assert table.returncode == 0, table.stderr
        assert "approval:refund.approve" in table.stdout
        assert "2 waiting run(s)" in table.stderr

        approved = nerve(
            "approvals", "approve", first, "--by", "ann", "--comment", "ok", "--json", env=env
        )
        assert approved.returncode == 0, approved.stderr
        decision = json.loads(approved.stdout)
        assert (decision["approval_id"], decision["status"], decision["by"]) == (
            first,
            "approved",
            "ann",
        )
        rejected = nerve("approvals", "reject", second, "-m", "too much", env=env)
        assert rejected.returncode == 0, rejected.stderr
        assert rejected.stdout.strip() == f"rejected {second}"

        wait_until(lambda: len(lines(log)) == 2, 60, "both runs to resume")
        assert sorted(lines(log)) == ["r-1 approved ann ok", "r-2 rejected None too much"]

        again = nerve("approvals", "reject", first, env=env)
        assert again.returncode == 1
        assert again.stderr.startswith("error: approval")
        assert "is not pending" in again.stderr
        assert "Traceback" not in again.stderr
        assert json_lines("approvals", "list", env=env) == []
        assert json_lines("waits", env=env) == []
    finally:
        worker.stop()


def test_an_unknown_approval_is_an_error_with_no_worker_running(tmp_path: Path) -> None:
    env = environment(f"sqlite:///{tmp_path}/bus.db")
    result = nerve("approvals", "approve", "no-such-approval", env=env)
    assert result.returncode == 1
    assert result.stderr.strip() == (
        "error: approval no-such-approval is not pending (decided, timed out or unknown)"
    )


# In process, on memory://: the commands' work, as run_on runs it.


def test_an_approval_that_is_not_pending_exits_1_with_one_line(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(typer.Exit) as exited:
        run_on(
            EventBus("memory://"),
            lambda bus: decide_approval(bus, "gone", True, "ann", None, False),
        )
    assert exited.value.exit_code == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.strip() == (
        "error: approval gone is not pending (decided, timed out or unknown)"
    )


async def test_list_approve_and_waits_print_what_they_found(
    capsys: pytest.CaptureFixture[str],
) -> None:
    bus = EventBus("memory://")
    decided: list[Decision] = []

    @bus.on("refund.requested", name="refunds")
    async def refund(event: Event[Any]) -> None:
        decided.append(await approval("refund.approve", payload={"amount": 9}, timeout=600))

    @bus.on("build.started", name="deployer")
    async def deploy(event: Event[Any]) -> None:
        await wait_for("build.finished", match={"payload.build": 7}, timeout=60)

    await bus.start()
    try:
        run = await bus.publish(Event(event_type="refund.requested", payload={}))
        await bus.publish(Event(event_type="build.started", payload={}))
        await until_waiting(bus, 2)

        assert await list_approvals(bus, 100, as_json=True) == 0
        [item] = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
        assert (item["name"], item["payload"], item["event_id"]) == (
            "refund.approve",
            {"amount": 9},
            run.event_id,
        )
        assert await list_approvals(bus, 100, as_json=False) == 0
        printed = capsys.readouterr()
        assert item["approval_id"] in printed.out
        assert '{"amount": 9}' in printed.out
        assert "1 pending approval(s)" in printed.err

        assert await list_waits(bus, None, None, 100, as_json=True) == 0
        waits = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
        assert sorted(w["awaited"] for w in waits) == ["approval.decided", "build.finished"]
        assert await list_waits(bus, "deployer", None, 100, as_json=False) == 0
        printed = capsys.readouterr()
        assert "build.finished" in printed.out
        assert '{"payload.build": 7}' in printed.out
        assert "approval.decided" not in printed.out
        assert "1 waiting run(s)" in printed.err

        aid = item["approval_id"]
        assert await decide_approval(bus, aid, False, "bob", "no", as_json=False) == 0
        assert capsys.readouterr().out.strip() == f"rejected {aid} by bob"
        await eventually(lambda: len(decided) == 1)
        assert (decided[0].status, decided[0].by, decided[0].comment) == ("rejected", "bob", "no")
    finally:
        await bus.stop()


async def until_waiting(bus: EventBus, count: int) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 10
    while len(await bus.waits()) < count:
        if loop.time() > deadline:
            pytest.fail(f"{count} runs did not reach their waits: {await bus.waits()}")
        await asyncio.sleep(0.01)
