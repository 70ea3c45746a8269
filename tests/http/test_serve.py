"""``nerve serve``: a real server process, real HTTP on 127.0.0.1, a durable SQLite file."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.cli.test_commands import ROOT, environment, lines, nerve, wait_for

KEY = "serve-key"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start(env: dict[str, str], *args: str, output: Path) -> tuple[subprocess.Popen[str], str]:
    port = free_port()
    command = [sys.executable, "-m", "nerve", "serve", *args, "--port", str(port)]
    with output.open("a") as out:
        process = subprocess.Popen(  # noqa: S603  # our own CLI
            command, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, text=True
        )
    base = f"http://127.0.0.1:{port}"

    def up() -> bool:
        if process.poll() is not None:
            pytest.fail(f"nerve serve exited: {output.read_text()}")
        try:
            return httpx.get(f"{base}/readyz", timeout=1).status_code == 200
        except httpx.TransportError:
            return False

    wait_for(up, 30, "nerve serve ready")
    return process, base


def stop(process: subprocess.Popen[str], output: Path) -> None:
    """SIGTERM, then check the shutdown was graceful (uvicorn re-raises the signal)."""
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=30) in (0, -signal.SIGTERM)
    assert "Application shutdown complete." in output.read_text()


@pytest.fixture
def processes() -> Iterator[list[subprocess.Popen[str]]]:
    started: list[subprocess.Popen[str]] = []
    yield started
    for process in started:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_serve_accepts_events_and_its_handlers_run_then_stops_on_sigterm(
    tmp_path: Path, processes: list[subprocess.Popen[str]]
) -> None:
    log = tmp_path / "slow.log"
    env = environment(
        f"sqlite:///{tmp_path}/bus.db", NERVE_API_KEYS=KEY, SLOW_LOG=str(log), SLOW_SECONDS="0"
    )
    output = tmp_path / "serve.out"
    process, base = start(env, "tests.apps.slow", output=output)
    processes.append(process)
    auth = {"Authorization": f"Bearer {KEY}"}
    response = httpx.post(
        f"{base}/events", json={"event_type": "slow.job", "payload": {"n": 1}}, headers=auth
    )
    assert response.status_code == 202
    event_id = response.json()["event_id"]

    def settled() -> bool:
        status = httpx.get(f"{base}/events/{event_id}", headers=auth).json()
        return bool(status["settled"]) and status["subscriptions"] == {"slow": "done"}

    wait_for(settled, 10, "the event handled")
    assert lines(log) == ["start 1", "done 1"]
    assert httpx.post(f"{base}/events", json={"event_type": "slow.job"}).status_code == 401
    stop(process, output)


def test_events_accepted_before_a_stop_are_handled_after_a_restart(
    tmp_path: Path, processes: list[subprocess.Popen[str]]
) -> None:
    log = tmp_path / "slow.log"
    env = environment(f"sqlite:///{tmp_path}/bus.db", SLOW_LOG=str(log), SLOW_SECONDS="0.5")
    env["NERVE_SHUTDOWN_GRACE"] = "0"
    output = tmp_path / "serve.out"
    process, base = start(env, "tests.apps.slow", output=output)
    processes.append(process)
    batch = [{"event_type": "slow.job", "payload": {"n": n}} for n in range(20)]
    response = httpx.post(f"{base}/events/batch", json=batch)
    assert response.status_code == 202
    wait_for(lambda: any(line.startswith("start") for line in lines(log)), 10, "a handler")
    stop(process, output)  # most of the 20 are still waiting: 2 at a time, 0.5 s each
    unfinished = {f"done {n}" for n in range(20)} - set(lines(log))
    assert unfinished, "the server finished everything before the stop: nothing to test"

    env["SLOW_SECONDS"] = "0"
    output.write_text("")
    again, _ = start(env, "tests.apps.slow", output=output)
    processes.append(again)
    wait_for(lambda: unfinished <= set(lines(log)), 20, "every accepted event handled")
    stop(again, output)


def test_serve_refuses_several_workers_on_an_in_process_bus() -> None:
    result = nerve("serve", "tests.apps.slow", "--workers", "2", env=environment("memory://"))
    assert result.returncode == 2
    assert "2 workers cannot share memory://" in result.stderr


def test_several_workers_build_their_apps_from_the_command_line(
    tmp_path: Path, processes: list[subprocess.Popen[str]]
) -> None:
    # The targets and --url reach each worker process inside uvicorn's pickled config
    # (nerve.http.serve.ServedApps), not through the environment: NERVE_URL here names
    # another file, which must stay untouched.
    log = tmp_path / "slow.log"
    elsewhere = tmp_path / "elsewhere.db"
    env = environment(f"sqlite:///{elsewhere}", SLOW_LOG=str(log), SLOW_SECONDS="0")
    output = tmp_path / "serve.out"
    url = f"sqlite:///{tmp_path}/bus.db"
    process, base = start(env, "tests.apps.slow", "--workers", "2", "--url", url, output=output)
    processes.append(process)
    batch = [{"event_type": "slow.job", "payload": {"n": n}} for n in range(10)]
    assert httpx.post(f"{base}/events/batch", json=batch).status_code == 202
    wait_for(lambda: len([x for x in lines(log) if x.startswith("done")]) == 10, 20, "handled")
    assert (tmp_path / "bus.db").exists()
    assert not elsewhere.exists()
    started = "Application startup complete."
    wait_for(lambda: output.read_text().count(started) == 2, 20, "both worker processes up")
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=30) in (0, -signal.SIGTERM)
