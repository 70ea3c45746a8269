"""What only the SQLite transport has: its URL options, durability setting included."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from nerve import ConfigurationError, Settings
from nerve.transports import transport_from_url
from nerve.transports.sqlite import SQLiteTransport


def test_url_options_are_read_and_checked(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/a.db?lease=5&poll=0.2&retention=60&synchronous=full"
    transport = transport_from_url(url, Settings())
    assert isinstance(transport, SQLiteTransport)
    assert (transport.lease, transport.poll, transport.retention) == (5.0, 0.2, 60.0)
    assert transport.default_store_url == f"sqlite:///{tmp_path}/a.db"  # the same file
    with pytest.raises(ConfigurationError, match="unknown option"):
        transport_from_url(f"sqlite:///{tmp_path}/a.db?leese=5")
    with pytest.raises(ConfigurationError, match="options must be numbers"):
        transport_from_url(f"sqlite:///{tmp_path}/a.db?lease=soon")
    with pytest.raises(ConfigurationError, match="expected one of EXTRA, FULL, NORMAL, OFF"):
        transport_from_url(f"sqlite:///{tmp_path}/a.db?synchronous=sometimes")


@pytest.mark.parametrize(("setting", "level"), [("full", 2), ("NORMAL", 1), ("off", 0)])
async def test_the_durability_setting_reaches_sqlite(
    tmp_path: Path, setting: str, level: int
) -> None:
    transport = transport_from_url(f"sqlite:///{tmp_path}/a.db?synchronous={setting}")
    assert isinstance(transport, SQLiteTransport)
    await transport.connect()
    try:
        rows = await transport._db.run(transport._db.execute, "PRAGMA synchronous")
        assert rows == [(level,)]
    finally:
        await transport.close()


OPEN_ONE = """
import asyncio, os, sys, time
from nerve import EventBus

url, ready, go = sys.argv[1:4]
open(ready, "w").close()
while not os.path.exists(go):  # a barrier: every process opens the file at once
    time.sleep(0.001)

async def main() -> None:
    bus = EventBus(url)
    await bus.transport.connect()
    await bus.dlq.list()  # opens the store too
    await bus.stop()

asyncio.run(main())
"""


def test_processes_opening_a_new_file_together_all_succeed(tmp_path: Path) -> None:
    """Several workers started at once on a fresh file race to set it up (WAL mode, the
    tables); SQLite can answer a loser "database is locked" without waiting, so nerve
    tries again. A race: found by CI (a CLI publish and a worker starting together) and
    by 60 staggered starts (3 failed); this run does not catch it every time."""
    for round_ in range(5):
        url = f"sqlite:///{tmp_path}/fresh-{round_}.db"
        go = tmp_path / f"go-{round_}"
        ready = [tmp_path / f"ready-{round_}-{n}" for n in range(6)]
        starts = [
            subprocess.Popen(  # noqa: S603  # our own interpreter
                [sys.executable, "-c", OPEN_ONE, url, str(flag), str(go)],
                stderr=subprocess.PIPE,
                text=True,
            )
            for flag in ready
        ]
        deadline = time.monotonic() + 30
        while not all(flag.exists() for flag in ready):
            assert time.monotonic() < deadline, "the processes did not start"
            time.sleep(0.01)
        go.touch()
        for start in starts:
            _, err = start.communicate(timeout=60)
            assert start.returncode == 0, err
