"""Broker processes of a test's own (the shared ones must never be killed): free ports, and
waiting until a started server answers."""

from __future__ import annotations

import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest


def free_ports(count: int) -> list[int]:
    """``count`` distinct ports free on 127.0.0.1 now."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def answers(port: int, hello: bytes, expected: bytes) -> bool:
    """The server on ``port`` answers ``hello`` with a reply starting ``expected``."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
            sock.sendall(hello)
            return sock.recv(len(expected)) == expected
    except OSError:
        return False


def wait_up(
    process: subprocess.Popen[bytes],
    ready: Callable[[], bool],
    what: str,
    log: Path,
    *,
    timeout: float,
    poll: float = 0.05,
) -> None:
    """Wait until ``ready()``; fail the test if ``process`` exits or ``timeout`` passes."""
    deadline = time.monotonic() + timeout
    while not ready():
        if process.poll() is not None:
            pytest.fail(f"{what} exited: see {log}")
        if time.monotonic() > deadline:
            pytest.fail(f"{what} was not up within {timeout}s")
        time.sleep(poll)  # polling a port that is not open yet
