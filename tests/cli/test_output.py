"""What the commands print can be copied into other commands: an id is never cut, and
nothing is cropped or wrapped when stdout is not a terminal (whatever ``COLUMNS`` says);
in a terminal, an id is whole however narrow the table gets."""

from __future__ import annotations

import asyncio
import fcntl
import os
import re
import struct
import subprocess
import sys
import termios

import pytest

from nerve import Event, EventBus
from tests.cli.test_commands import ROOT, environment, nerve

TYPE = "a-rather-long.event-type.that-fills.the-columns"
SUBSCRIPTION = "a-subscription-with-a-rather-long-name"
MESSAGE = "the upstream answered 503 " * 6 + "[a-z] pip install 'nerve[redis]' [red]x[/red]"
#: A message of two lines, in a table or a tree: one line, its break escaped.
TWO_LINES = f"{MESSAGE}\nand \x1b[31mmore"
ONE_LINE = f"{MESSAGE}\\nand \\x1b[31mmore"


async def make_history(url: str) -> tuple[str, str]:
    """A chain root -> TYPE, TYPE dead-lettered: (the root's id, the dead event's id)."""
    bus = EventBus(url)

    @bus.on("chain.root", name="root-handler-with-a-rather-long-name")
    async def root(event: Event) -> None:
        await bus.publish(Event(event_type=TYPE, payload={"text": "x" * 200}))

    @bus.on(TYPE, name=SUBSCRIPTION, retries=0)
    async def fail(event: Event) -> None:
        raise RuntimeError(TWO_LINES)

    await bus.start()
    published = await bus.publish(Event(event_type="chain.root"))
    await bus.drain()
    dead = await bus.dlq.list()
    await bus.stop()
    return published.event_id, dead[0].event.event_id


@pytest.fixture(scope="module")
def history(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str, str]:
    url = f"sqlite:///{tmp_path_factory.mktemp('output')}/bus.db"
    root, dead = asyncio.run(make_history(url))
    return url, root, dead


def piped(*args: str, url: str) -> str:
    result = nerve(*args, env=environment(url, COLUMNS="80"))  # stdout is a pipe
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_dlq_list_piped_is_whole(history: tuple[str, str, str]) -> None:
    url, _, dead = history
    text = piped("dlq", "list", url=url)
    (row,) = [line for line in text.splitlines() if dead in line]
    for whole in (dead, TYPE, SUBSCRIPTION, f"RuntimeError: {ONE_LINE}"):
        assert whole in row  # one line: not cropped, not wrapped
    assert "…" not in text


def test_status_and_trace_piped_are_whole(history: tuple[str, str, str]) -> None:
    url, root, dead = history
    status = piped("status", dead, url=url)
    assert f"{TYPE} {dead}" in status.splitlines()
    assert SUBSCRIPTION in status
    trace = piped("trace", root, url=url)
    lines = trace.splitlines()
    assert lines[0] == f"chain {root}"
    (dead_line,) = [line for line in lines if dead in line]
    assert TYPE in dead_line
    (outcome,) = [line for line in lines if f"dead_lettered {SUBSCRIPTION}" in line]
    assert f"RuntimeError: {ONE_LINE}" in outcome
    assert "…" not in trace
    shown = piped("dlq", "show", dead, url=url)
    assert f"RuntimeError: {ONE_LINE}" in shown  # an attempt a line; then the traceback
    assert f"{TYPE} {dead} in {SUBSCRIPTION}" in shown


def in_a_terminal(*args: str, url: str, columns: int) -> str:
    """``nerve ARGS`` with stdout on a pseudo-terminal ``columns`` wide, colours dropped."""
    leader, follower = os.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 50, columns, 0, 0))
    env = {k: v for k, v in environment(url).items() if k not in ("COLUMNS", "FORCE_COLOR")}
    try:
        process = subprocess.Popen(  # noqa: S603  # our own CLI
            [sys.executable, "-m", "nerve", *args],
            cwd=ROOT,
            env={**env, "NO_COLOR": "1", "TERM": "xterm"},
            stdout=follower,
            stderr=subprocess.DEVNULL,
        )
        os.close(follower)
        chunks = []
        while True:
            try:
                chunk = os.read(leader, 65536)
            except OSError:  # the terminal closed: the process is done
                break
            if not chunk:
                break
            chunks.append(chunk)
        assert process.wait(timeout=60) == 0
    finally:
        os.close(leader)
    text = b"".join(chunks).decode()
    return re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", text).replace("\r", "")


def test_in_a_narrow_terminal_an_id_is_whole(history: tuple[str, str, str]) -> None:
    url, root, dead = history
    table = in_a_terminal("dlq", "list", url=url, columns=70)
    assert any(dead in line for line in table.splitlines()), table
    assert max(len(line) for line in table.splitlines()) <= 70  # the rest made room
    tree = in_a_terminal("trace", root, url=url, columns=70)
    assert any(dead in line for line in tree.splitlines()), tree
    status = in_a_terminal("status", dead, url=url, columns=70)
    assert any(dead in line for line in status.splitlines()), status
