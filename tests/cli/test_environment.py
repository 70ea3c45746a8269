"""The CLI changes no global state: importing its modules registers no command and writes
no environment variable, and the commands that used to set ``NERVE_URL`` (the operator
commands' ``--url``, ``nerve serve``) hand the URL to the bus as settings instead."""

from __future__ import annotations

import json
import logging
import os
import pickle
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.main import get_command
from typer.testing import CliRunner

from nerve.cli import build_app
from nerve.exceptions import ConfigurationError
from tests.cli.test_commands import ROOT

IMPORT_EVERY_MODULE = """
import importlib, os, pkgutil, sys

import typer

before = dict(os.environ)
import nerve.cli

names = [
    "nerve.__main__",
    "nerve.loading",
    *(f"nerve.cli.{found.name}" for found in pkgutil.iter_modules(nerve.cli.__path__)),
]
for name in names:
    importlib.import_module(name)
assert dict(os.environ) == before, set(os.environ.items()) ^ set(before.items())
apps = [
    f"{name}.{attribute}"
    for name in names
    for attribute, value in vars(sys.modules[name]).items()
    if isinstance(value, typer.Typer)
]
assert not apps, f"Typer apps made on import: {apps}"
print(" ".join(sorted(names)))
"""


def test_importing_the_cli_registers_nothing_and_leaves_the_environment() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NERVE_")}
    # a fresh interpreter: every module is imported for the first time
    result = subprocess.run(  # noqa: S603  # our own interpreter on our own code
        [sys.executable, "-c", IMPORT_EVERY_MODULE],
        cwd=ROOT,
        env={**env, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    imported = result.stdout.split()
    assert {"nerve.__main__", "nerve.cli.apps", "nerve.cli.dlq", "nerve.cli.events"} <= set(
        imported
    )
    assert result.stderr == ""  # importing nerve.__main__ does not run the CLI


def test_build_app_makes_a_new_app_with_every_command() -> None:
    first, second = build_app(), build_app()
    assert first is not second
    commands = get_command(first).commands  # type: ignore[attr-defined]
    assert list(commands) == [
        "serve",
        "worker",
        "doctor",
        "publish",
        "status",
        "trace",
        "tail",
        "waits",
        "mcp",
        "dlq",
        "approvals",
    ]
    assert list(commands["dlq"].commands) == ["list", "show", "replay", "purge"]
    assert list(commands["approvals"].commands) == ["list", "approve", "reject"]


@pytest.fixture
def make_app(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[], str]]:
    """Write app modules never imported before (``bus = EventBus()``), named module:bus."""
    monkeypatch.syspath_prepend(str(tmp_path))
    made: list[str] = []

    def make() -> str:
        name = f"cli_environment_app_{uuid.uuid4().hex[:12]}"
        (tmp_path / f"{name}.py").write_text("from nerve import EventBus\n\nbus = EventBus()\n")
        made.append(name)
        return f"{name}:bus"

    yield make
    for name in made:
        sys.modules.pop(name, None)


@pytest.fixture
def root_logging() -> Iterator[None]:
    """``nerve serve`` configures the root logger: put it back as it was."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.mark.usefixtures("root_logging")
def test_commands_given_a_url_leave_the_environment(
    tmp_path: Path, make_app: Callable[[], str]
) -> None:
    runner = CliRunner()
    url = f"sqlite:///{tmp_path}/bus.db"
    before = dict(os.environ)

    bare = runner.invoke(build_app(), ["publish", "env.bare", "--url", url, "--json"])
    assert bare.exit_code == 0, bare.output
    app = make_app()
    of_app = runner.invoke(
        build_app(), ["publish", "env.app", "--app", app, "--url", url, "--json"]
    )
    assert of_app.exit_code == 0, of_app.output
    served = runner.invoke(
        build_app(), ["serve", make_app(), "--workers", "2", "--url", "memory://"]
    )
    assert isinstance(served.exception, ConfigurationError)
    assert "2 workers cannot share memory://" in str(served.exception)  # --url reached the app

    assert dict(os.environ) == before
    # Both events are in the --url's file: the app's EventBus() took --url as it was imported.
    for result, event_type in ((bare, "env.bare"), (of_app, "env.app")):
        event_id = json.loads(result.stdout)["event_id"]
        found = runner.invoke(build_app(), ["status", event_id, "--url", url, "--json"])
        assert found.exit_code == 0, found.output
        assert json.loads(found.stdout)["event_type"] == event_type
    assert dict(os.environ) == before


def test_serve_with_several_workers_hands_them_their_apps_without_the_environment(
    tmp_path: Path, make_app: Callable[[], str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # uvicorn's supervisor is stood in for (it would serve for good): what it is given
    # must carry the targets and the URL to the workers, pickled, and nothing is written
    # to os.environ on the way.
    handed: list[bytes] = []

    class Supervisor:
        def __init__(self, config: Any, sockets: list[Any]) -> None:
            handed.append(pickle.dumps(config.app))
            for sock in sockets:
                sock.close()

        def run(self) -> None:
            pass

    monkeypatch.setattr("uvicorn.supervisors.Multiprocess", Supervisor)
    url = f"sqlite:///{tmp_path}/bus.db"
    before = dict(os.environ)
    app = make_app()
    result = CliRunner().invoke(
        build_app(), ["serve", app, "--workers", "2", "--url", url, "--port", "0"]
    )
    assert result.exit_code == 0, result.output
    assert dict(os.environ) == before
    (factory,) = [pickle.loads(data) for data in handed]  # noqa: S301  # our own bytes
    assert (factory.targets, factory.url) == ((app,), url)
    built = factory()  # as each worker process does
    assert callable(built)
