"""A SQLite bus process killed mid-stream loses nothing it had accepted."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.timeout(120)
def test_events_published_before_a_sigkill_are_all_handled_after_a_restart(
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path}/bus.db?lease=2&poll=0.02"
    effects = tmp_path / "effects.db"
    with sqlite3.connect(effects) as conn:
        conn.execute("CREATE TABLE effects (event_id TEXT, pid INTEGER)")
    env = {
        **os.environ,
        "NERVE_URL": url,
        "CRASH_EFFECTS_DB": str(effects),
        "PYTHONPATH": str(ROOT),
    }
    # A worker and a publisher run; both are SIGKILLed mid-stream.
    worker = subprocess.Popen(  # our own CLI
        [sys.executable, "-m", "nerve", "worker", "tests.crash.app:bus"], cwd=ROOT, env=env
    )
    publisher = subprocess.Popen(
        [sys.executable, "-m", "tests.crash.publisher"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert publisher.stdout is not None
    accepted: list[str] = []
    deadline = time.monotonic() + 60
    while len(accepted) < 3000:  # publish returned for these: they must not be lost
        line = publisher.stdout.readline()
        assert line, "the publisher stopped early"
        accepted.append(line.strip())
        assert time.monotonic() < deadline
    for process in (publisher, worker):
        process.send_signal(signal.SIGKILL)
        process.wait()
    accepted.extend(line.strip() for line in publisher.stdout.read().splitlines() if line.strip())
    publisher.stdout.close()

    restarted = subprocess.Popen(
        [sys.executable, "-m", "nerve", "worker", "tests.crash.app:bus"], cwd=ROOT, env=env
    )
    try:
        while True:
            with sqlite3.connect(effects, timeout=30) as conn:
                handled = {row[0] for row in conn.execute("SELECT event_id FROM effects")}
            if handled >= set(accepted):
                break
            missing = len(set(accepted) - handled)
            assert time.monotonic() < deadline + 30, f"{missing} accepted events never handled"
            time.sleep(0.1)
    finally:
        restarted.send_signal(signal.SIGTERM)
        restarted.wait(timeout=30)
    assert handled >= set(accepted)
