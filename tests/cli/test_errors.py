"""Every error a user can cause is one line on stderr and an exit code (2: usage or
configuration), never a traceback, and says what the user wrote as they wrote it: Rich
markup reads nothing in it, control characters are escaped, no spurious field is named."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.cli.test_commands import ROOT, environment, nerve

PATTERN = r"'^[a-z0-9_-]+(?:\.[a-z0-9_-]+)*$'"


def one_error_line(result: subprocess.CompletedProcess[str], code: int = 2) -> str:
    assert result.returncode == code, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    return lines[0].removeprefix("error: ")


def test_a_bad_event_type_is_one_line_naming_only_it(tmp_path: Path) -> None:
    env = environment(f"sqlite:///{tmp_path}/bus.db")
    line = one_error_line(nerve("publish", "X.Y", env=env))
    assert line == f"EVENT_TYPE 'X.Y': String should match pattern {PATTERN}"
    # a line of --stdin: the regex's classes are kept; no correlation_id error is made up
    result = subprocess.run(  # our own CLI
        [sys.executable, "-m", "nerve", "publish", "--stdin"],
        cwd=ROOT,
        env=env,
        input='{"event_type": "a.b"}\n{"event_type": "Nope", "payload": 1}\n',
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    line = one_error_line(result)
    assert line == f"line 2: event_type 'Nope': String should match pattern {PATTERN}"


def test_an_option_that_does_not_validate_is_named_with_its_input_escaped(
    tmp_path: Path,
) -> None:
    env = environment(f"sqlite:///{tmp_path}/bus.db")
    line = one_error_line(nerve("publish", "a.b", "--correlation-id", "a\nb\u2028c", env=env))
    assert line == (
        r"--correlation-id 'a\nb\u2028c': should be printable: no control characters "
        "or line breaks"
    )


def test_a_setting_that_does_not_validate_is_named_by_its_variable(tmp_path: Path) -> None:
    env = environment(f"sqlite:///{tmp_path}/bus.db", NERVE_SHUTDOWN_GRACE="soon")
    line = one_error_line(nerve("status", "x", env=env))
    assert line == (
        "NERVE_SHUTDOWN_GRACE 'soon': Input should be a valid number, unable to parse "
        "string as a number"
    )


def test_a_log_setting_that_does_not_validate_is_named_by_its_variable(tmp_path: Path) -> None:
    env = environment(f"sqlite:///{tmp_path}/bus.db", NERVE_LOG_FORMAT="xml")
    line = one_error_line(nerve("worker", "tests.apps.slow", env=env))
    assert line == "NERVE_LOG_FORMAT 'xml': Input should be 'text' or 'json'"
    env = environment(f"sqlite:///{tmp_path}/bus.db", NERVE_LOG_LEVEL="LOUD")
    line = one_error_line(nerve("worker", "tests.apps.slow", env=env))
    assert line.startswith("NERVE_LOG_LEVEL 'LOUD': Input should be 'DEBUG'")


def test_a_url_with_a_bad_port_is_one_line(tmp_path: Path) -> None:
    env = environment(f"sqlite:///{tmp_path}/bus.db")
    result = nerve("status", "some-id", "--url", "redis://u:secret@x:notaport/0", env=env)
    line = one_error_line(result)
    assert "is not a valid URL" in line
    assert "secret" not in line


def test_a_pattern_that_matches_nothing_ever_is_refused(tmp_path: Path) -> None:
    env = environment(f"sqlite:///{tmp_path}/bus.db")
    line = one_error_line(nerve("tail", "support.[a-z]", "--timeout", "0", env=env))
    assert line.startswith(
        "invalid pattern 'support.[a-z]': use dot-separated segments of [a-z0-9_-]"
    )


def test_brackets_in_a_message_are_printed_as_they_are(tmp_path: Path) -> None:
    # The redis client library missing: the message names the extra to install.
    result = subprocess.run(  # our own CLI
        [
            sys.executable,
            "-c",
            "import sys; sys.modules['redis'] = None; from nerve.cli import main; main()",
            "publish",
            "a.b",
            "--url",
            "redis://127.0.0.1:6379/0",
        ],
        cwd=ROOT,
        env=environment(f"sqlite:///{tmp_path}/bus.db"),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    line = one_error_line(result)
    assert line == "the redis:// transport needs redis.asyncio: pip install 'nerve[redis]'"


def test_a_missing_attribute_is_named(tmp_path: Path) -> None:
    env = environment(f"sqlite:///{tmp_path}/bus.db")
    for command in ("serve", "worker", "doctor"):
        line = one_error_line(nerve(command, "tests.apps.slow:buss", env=env))
        assert line == (
            "tests.apps.slow:buss: module 'tests.apps.slow' has no attribute 'buss' "
            "(its EventBus: bus)"
        )
    line = one_error_line(nerve("doctor", "tests.apps:bus", env=env))
    assert line == "tests.apps:bus: module 'tests.apps' has no attribute 'bus' (it has no EventBus)"
    line = one_error_line(nerve("doctor", "tests.apps.slow:LOG", env=env))
    assert line == "tests.apps.slow:LOG: LOG is not an EventBus (str)"


def test_several_workers_on_an_in_process_transport_are_refused() -> None:
    # In a session of its own: were workers started, they are stopped with their parent.
    process = subprocess.Popen(  # our own CLI
        [sys.executable, "-m", "nerve", "worker", "tests.apps.slow", "--workers", "2"],
        cwd=ROOT,
        env=environment("memory://"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        stdout, stderr = process.communicate(timeout=15)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            process.communicate()
    result = subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)
    assert one_error_line(result) == (
        "2 workers cannot share memory:// (in-process): use a durable transport, "
        "e.g. NERVE_URL=sqlite:///nerve.db"
    )


def test_one_worker_on_an_in_process_transport_is_warned(tmp_path: Path) -> None:
    err = tmp_path / "worker.err"
    with err.open("w") as stderr:
        worker = subprocess.Popen(  # our own CLI
            [sys.executable, "-m", "nerve", "worker", "tests.apps.slow"],
            cwd=ROOT,
            env=environment("memory://"),
            stderr=stderr,
        )
    try:
        deadline = time.monotonic() + 20
        while "subscriptions on memory://" not in err.read_text():
            assert worker.poll() is None, err.read_text()
            assert time.monotonic() < deadline, err.read_text()
            time.sleep(0.05)
    finally:
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(timeout=30) == 0
    assert err.read_text().splitlines()[0] == (
        "warning: memory:// (in-process): this worker receives only the events its own "
        "handlers publish; for events from other processes use a durable transport, "
        "e.g. NERVE_URL=sqlite:///nerve.db"
    )


def test_doctor_takes_a_url_and_prints_json(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/bus.db"
    bare = nerve("doctor", "--url", url, "--json", env=environment("memory://"))
    assert bare.returncode == 0, bare.stderr
    assert json.loads(bare.stdout) == {
        "ok": True,
        "transport": {"url": url, "ok": True, "error": None},
        "store": {"url": url, "ok": True, "error": None, "note": None, "dead_letters": 0},
        "subscriptions": [],
    }
    # an app's bus, --url standing for NERVE_URL as it is imported
    app = nerve("doctor", "tests.apps.slow", "--url", url, "--json", env=environment("memory://"))
    assert app.returncode == 0, app.stderr
    assert json.loads(app.stdout)["subscriptions"] == ["slow"]
    assert json.loads(app.stdout)["transport"]["url"] == url

    unreachable = "redis://:s3cret@127.0.0.1:1/0"
    failed = nerve("doctor", "--url", unreachable, "--json", env=environment("memory://"))
    assert failed.returncode == 1
    report = json.loads(failed.stdout)
    assert report["ok"] is False
    assert report["transport"]["ok"] is False
    assert report["transport"]["url"] == "redis://:***@127.0.0.1:1/0"
    assert "cannot reach Redis at 127.0.0.1:1/0" in report["transport"]["error"]
    assert "s3cret" not in failed.stdout + failed.stderr


def test_version() -> None:
    from nerve import __version__

    result = nerve("--version", env=environment("memory://"))
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"nerve {__version__}\n"
