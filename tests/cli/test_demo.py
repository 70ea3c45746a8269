"""``bash scripts/demo`` (examples/demo.py): its server comes back on its port at once, and
never outlives the demo, however the demo ends."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from examples.demo import free_port, start_server, stop_server
from tests.cli.test_commands import ROOT, environment

APPS = ["tests.apps.chain"]


def any_free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def lingering(port: int) -> None:
    """Leave a connection of ``port`` in TIME_WAIT: its server side closes first."""
    with socket.socket() as listener:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", port))
        listener.listen()
        with socket.create_connection(("127.0.0.1", port)) as client:
            accepted, _ = listener.accept()
            accepted.close()  # the active close: TIME_WAIT is on the server's side
            client.recv(1)  # the server's FIN
    # ss (iproute2) shows it, where the machine has it
    try:
        states = subprocess.run(  # noqa: S603  # iproute2's ss, a fixed command
            ["ss", "-tan", f"sport = :{port}"],  # noqa: S607
            capture_output=True,
            text=True,
            check=False,
        ).stdout
    except FileNotFoundError:
        return
    assert "TIME-WAIT" in states, states


def test_a_port_in_time_wait_is_free_for_the_server() -> None:
    port = any_free_port()
    lingering(port)
    assert free_port(port) == port


def ready(port: int, server: subprocess.Popen[bytes], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while True:
        assert server.poll() is None, f"the server exited with {server.returncode}"
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as answer:
                if answer.status == 200:
                    return
        except OSError:
            pass
        assert time.monotonic() < deadline, "not ready"
        time.sleep(0.05)


def test_the_server_starts_twice_in_a_row_on_one_port(tmp_path: Path) -> None:
    env = environment(f"sqlite:///{tmp_path}/demo.db")
    port = free_port(any_free_port())
    for _ in range(2):
        assert free_port(port) == port  # the first run's connections are in TIME_WAIT
        server = start_server(APPS, port, env)
        try:
            ready(port, server)  # a request: the server closes its connection
        finally:
            stop_server(server)
        # uvicorn stops gracefully on SIGTERM, then raises it again to end as SIGTERM would
        assert server.returncode == -signal.SIGTERM


def gone(pid: int) -> bool:
    """The process has exited (a zombie not yet reaped has exited too)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] == "Z"


DEMO = """
import sys, time
from examples.demo import start_server
server = start_server(["tests.apps.chain"], int(sys.argv[1]), dict(__import__("os").environ))
print(server.pid, flush=True)
time.sleep(120)
"""


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="reads /proc")
@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM])
def test_the_server_ends_with_the_demo(tmp_path: Path, sig: signal.Signals) -> None:
    port = free_port(any_free_port())
    demo = subprocess.Popen(  # noqa: S603  # the demo's own start_server, in a process we end
        [sys.executable, "-c", DEMO, str(port)],
        cwd=ROOT,
        env=environment(f"sqlite:///{tmp_path}/demo.db"),
        stdout=subprocess.PIPE,
        text=True,
    )
    assert demo.stdout is not None
    server = int(demo.stdout.readline())
    try:
        deadline = time.monotonic() + 30
        while not ready_once(port):
            assert time.monotonic() < deadline, "not ready"
            time.sleep(0.05)
        demo.send_signal(sig)
        demo.wait(timeout=10)
        deadline = time.monotonic() + 20
        while not gone(server):
            assert time.monotonic() < deadline, "the server outlived the demo"
            time.sleep(0.05)
    finally:
        if demo.poll() is None:
            demo.kill()
            demo.wait()
        demo.stdout.close()
        if not gone(server):
            os.kill(server, signal.SIGKILL)


def ready_once(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as answer:
            return bool(answer.status == 200)
    except OSError:
        return False
