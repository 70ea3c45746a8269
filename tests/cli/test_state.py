"""Where the state lives, as the running commands check it: a memory store on a durable
transport is refused for several processes (``--workers N``) with the fix named, warned
for one; a SQLite store apart from the broker is named as one host's by ``nerve doctor``
and at start. The library takes a memory store when it is asked for explicitly."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

from nerve import EventBus
from tests.cli.test_commands import ROOT, environment, nerve
from tests.cli.test_errors import one_error_line

APP = "tests.apps.slow"


def redis_url() -> str:
    """A Redis transport URL of the test's own (nothing is written by a refused command)."""
    return f"redis://127.0.0.1:6379/0?prefix=cli-{uuid.uuid4().hex[:12]}"


def amqp_url() -> str:
    return f"amqp://guest:guest@127.0.0.1:5672/?prefix=cli-{uuid.uuid4().hex[:12]}"


def test_the_library_takes_a_memory_store_when_asked_for_explicitly() -> None:
    assert EventBus(f"{amqp_url()}&store=memory://").store_url == "memory://"
    assert EventBus(redis_url(), store="memory://").store_url == "memory://"


def test_several_workers_on_a_memory_store_are_refused_with_the_fix() -> None:
    redis, amqp = redis_url(), amqp_url()
    named = [  # in the environment, in the transport URL
        ("redis", environment(redis, NERVE_STORE_URL="memory://")),
        ("amqp", environment(f"{amqp}&store=memory://")),
    ]
    for scheme, env in named:
        for command in (["worker", APP], ["serve", APP]):
            line = one_error_line(nerve(*command, "--workers", "3", env=env, timeout=30))
            assert line.startswith(
                f"nerve {command[0]} --workers 3: a memory store cannot be shared by 3 "
                f"processes on {scheme}://"
            ), line
            assert "give a shared store: NERVE_STORE_URL=redis://... or postgresql://..." in line
            default = redis if scheme == "redis" else "sqlite:///"
            assert f"or leave it unset for the transport's default ({default}" in line


def test_one_worker_on_a_memory_store_is_warned_that_its_state_dies_with_it(
    tmp_path: Path,
) -> None:
    err = tmp_path / "worker.err"
    env = environment(redis_url(), NERVE_STORE_URL="memory://")
    with err.open("w") as stderr:
        worker = subprocess.Popen(  # noqa: S603  # our own CLI
            [sys.executable, "-m", "nerve", "worker", APP],
            cwd=ROOT,
            env=env,
            stderr=stderr,
        )
    try:
        deadline = time.monotonic() + 20
        while "warning:" not in err.read_text():
            assert worker.poll() is None, err.read_text()
            assert time.monotonic() < deadline, err.read_text()
            time.sleep(0.05)
    finally:
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(timeout=30) == 0
    [warning] = [line for line in err.read_text().splitlines() if line.startswith("warning:")]
    assert warning.startswith(
        "warning: the store is in this process's memory, on redis://: dead letters, done "
        "marks and step results die with it"
    ), warning
    assert "NERVE_STORE_URL" in warning


def test_doctor_names_a_store_file_of_one_host(tmp_path: Path) -> None:
    url = f"amqp://guest:guest@127.0.0.1:5672/?prefix=cli-{uuid.uuid4().hex[:12]}"
    env = environment(url, NERVE_STATE_DIR=str(tmp_path))
    result = nerve("doctor", "--json", env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    store = json.loads(result.stdout)["store"]
    assert store["url"] == f"sqlite:///{tmp_path}/nerve-{url.rsplit('=', 1)[1]}.db"
    assert store["note"].startswith(f"the store {store['url']} is a file of this host")
    assert "redis://... or postgresql://..." in store["note"]
    table = nerve("doctor", env=env)
    assert "is a file of this host" in table.stdout

    # a memory store, named: doctor says what it costs; a shared one: nothing
    memory = nerve("doctor", "--json", env={**env, "NERVE_STORE_URL": "memory://"})
    assert json.loads(memory.stdout)["store"]["note"].startswith("the store is in this process")
    shared = nerve("doctor", "--json", env={**environment(redis_url())})
    assert json.loads(shared.stdout)["store"]["note"] is None
