"""``nerve serve`` under clients that misbehave: a huge head, slow heads and bodies, idle
connections, too many connections. Each is cut off with an answer (or a 503) while other
requests are still served at once, and the server's memory does not follow the client."""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from nerve import Event, EventBus
from nerve.http import HTTPSettings
from tests.cli.test_commands import environment, nerve
from tests.http.conftest import serve
from tests.http.test_serve import start, stop

KEY = "limits-key"
AUTH = {"Authorization": f"Bearer {KEY}"}
HEADER_TIMEOUT = 1.0
BODY_TIMEOUT = 1.0
MAX_HEADER_BYTES = 16384
MAX_CONNECTIONS = 6


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[subprocess.Popen[str], str]]:
    tmp = tmp_path_factory.mktemp("limits")
    env = environment(
        f"sqlite:///{tmp}/bus.db",
        NERVE_API_KEYS=KEY,
        NERVE_HEADER_TIMEOUT=str(HEADER_TIMEOUT),
        NERVE_BODY_TIMEOUT=str(BODY_TIMEOUT),
        NERVE_MAX_HEADER_BYTES=str(MAX_HEADER_BYTES),
        NERVE_MAX_CONNECTIONS=str(MAX_CONNECTIONS),
        SLOW_SECONDS="0",
    )
    output = tmp / "serve.out"
    process, base = start(env, "tests.apps.slow", output=output)
    yield process, base
    stop(process, output)
    assert "Traceback" not in output.read_text()


def connect(base: str) -> socket.socket:
    host, port = base.removeprefix("http://").split(":")
    return socket.create_connection((host, int(port)), timeout=10)


def read_all(sock: socket.socket, timeout: float) -> tuple[bytes, float]:
    """Everything until the server closes, and when it closed (monotonic)."""
    sock.settimeout(timeout)
    data = b""
    try:
        while chunk := sock.recv(65536):
            data += chunk
    except ConnectionResetError:
        pass
    return data, time.monotonic()


def problem(answer: bytes, status: int, error: str) -> None:
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 %d " % status), answer[:300]
    assert b"content-type: application/json" in head.lower()
    assert json.loads(body)["error"] == error


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def served_at_once(base: str) -> None:
    """A normal request, answered within a second."""
    began = time.monotonic()
    response = httpx.post(f"{base}/events", json={"event_type": "a.b"}, headers=AUTH, timeout=5)
    assert response.status_code == 202, response.text
    assert time.monotonic() - began < 1.0


def test_a_huge_header_is_answered_431_without_being_buffered(
    server: tuple[subprocess.Popen[str], str],
) -> None:
    process, base = server
    before = rss_kib(process.pid)
    with connect(base) as sock:
        sock.sendall(b"POST /events HTTP/1.1\r\nHost: nerve\r\nX-Big: ")
        try:
            for _ in range(256):  # up to 16 MiB, 64 KiB at a time
                sock.sendall(b"a" * 65536)
        except OSError:  # refused and closed: the rest is not read
            pass
        answer, _ = read_all(sock, 10)
    problem(answer, 431, "too_large")
    assert rss_kib(process.pid) - before < 8 * 1024  # KiB: not the header's 16 MiB
    served_at_once(base)


def test_a_head_sent_a_byte_at_a_time_is_cut_off_and_others_are_served(
    server: tuple[subprocess.Popen[str], str],
) -> None:
    _process, base = server
    with connect(base) as sock:
        began = time.monotonic()
        sock.sendall(b"P")
        sock.settimeout(0.25)
        answer = b""
        for byte in b"OST /events HTTP/1.1\r\nHost: nerve\r\n" * 10:
            try:
                answer += sock.recv(65536)
            except TimeoutError:
                sock.sendall(bytes([byte]))  # one byte every quarter second
                served_at_once(base)
                continue
            break
        rest, closed = read_all(sock, 5)
    problem(answer + rest, 408, "timeout")
    assert closed - began < HEADER_TIMEOUT + 1.5  # from the first byte, however many came


def test_a_connection_that_sends_nothing_is_closed(
    server: tuple[subprocess.Popen[str], str],
) -> None:
    _process, base = server
    with connect(base) as sock:
        began = time.monotonic()
        served_at_once(base)
        answer, closed = read_all(sock, 5)
    problem(answer, 408, "timeout")
    assert closed - began < HEADER_TIMEOUT + 1.5


def test_a_body_sent_a_byte_at_a_time_is_answered_408_and_closed(
    server: tuple[subprocess.Popen[str], str],
) -> None:
    _process, base = server
    head = (
        "POST /events HTTP/1.1\r\nHost: nerve\r\nContent-Type: application/json\r\n"
        f"Authorization: Bearer {KEY}\r\nContent-Length: 1000\r\n\r\n"
    )
    with connect(base) as sock:
        began = time.monotonic()
        sock.sendall(head.encode() + b'{"event_type": "a.b", "payload": "')
        sock.settimeout(0.25)
        answer = b""
        for _ in range(40):
            try:
                answer += sock.recv(65536)
                break
            except TimeoutError:
                sock.sendall(b"x")
                served_at_once(base)
        rest, closed = read_all(sock, 5)
    problem(answer + rest, 408, "timeout")
    assert closed - began < BODY_TIMEOUT + 2.5


def test_too_many_connections_are_answered_503(
    server: tuple[subprocess.Popen[str], str],
) -> None:
    _process, base = server
    idle = [connect(base) for _ in range(MAX_CONNECTIONS)]
    try:
        time.sleep(0.2)
        response = httpx.get(f"{base}/healthz", timeout=5)
        assert response.status_code == 503
    finally:
        for sock in idle:
            sock.close()
    time.sleep(0.2)
    served_at_once(base)


def test_head_over_http_has_the_headers_of_get_and_no_body(
    server: tuple[subprocess.Popen[str], str],
) -> None:
    _process, base = server
    with httpx.Client(base_url=base, timeout=5) as client:  # one connection, kept alive
        head = client.head("/healthz")
        assert (head.status_code, head.content) == (200, b"")
        assert head.headers["content-length"] == client.get("/healthz").headers["content-length"]
        assert client.get("/healthz").json() == {"status": "ok"}


def test_without_a_key_only_loopback_is_served(tmp_path: Path) -> None:
    env = environment(f"sqlite:///{tmp_path}/bus.db")
    refused = nerve("serve", "tests.apps.slow", "--host", "0.0.0.0", env=env)  # noqa: S104
    assert refused.returncode == 2
    assert "no API key is configured (NERVE_API_KEYS)" in refused.stderr
    assert "loopback only" in refused.stderr
    output = tmp_path / "serve.out"
    process, _base = start(env, "tests.apps.slow", output=output)
    try:
        assert "WARNING: no API key is configured (NERVE_API_KEYS)" in output.read_text()
    finally:
        stop(process, output)


async def test_a_body_that_takes_too_long_is_a_408_in_any_server() -> None:
    # The app's own deadline (not the server's): create_app served by anything.
    bus = EventBus("memory://")
    seen: list[Event[Any]] = []

    @bus.on("#", name="record")
    async def record(event: Event[Any]) -> None:
        seen.append(event)

    async def trickle() -> AsyncIterator[bytes]:
        yield b'{"event_type": "a.b", "payload": "'
        for _ in range(20):
            await asyncio.sleep(0.1)
            yield b"x"
        yield b'"}'

    settings = HTTPSettings(api_keys=[KEY], body_timeout=0.3)
    async with serve(bus, settings) as client:
        began = time.monotonic()
        response = await client.post(
            "/events", content=trickle(), headers={**AUTH, "Content-Type": "application/json"}
        )
        assert response.status_code == 408, response.text
        assert response.json()["error"] == "timeout"
        assert response.headers["connection"] == "close"
        assert time.monotonic() - began < 1.5
        quick = await client.post("/events", json={"event_type": "a.b"}, headers=AUTH)
        assert quick.status_code == 202  # the deadline was this request's alone
        await bus.join(5)
    assert len(seen) == 1
