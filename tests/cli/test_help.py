"""``--help`` says how the commands are typed: a flag takes no value, an argument reads as
the docs write it (``APP``, ``[EVENT_ID]``, ``APP...``), ``--json`` says what it prints."""

from __future__ import annotations

import re

import pytest
from typer.main import get_command
from typer.testing import CliRunner

from nerve.cli import build_app

USAGES = {
    (): "nerve [OPTIONS] COMMAND [ARGS]...",
    ("serve",): "nerve serve [OPTIONS] APP...",
    ("worker",): "nerve worker [OPTIONS] APP",
    ("doctor",): "nerve doctor [OPTIONS] [APP]",
    ("publish",): "nerve publish [OPTIONS] [EVENT_TYPE]",
    ("status",): "nerve status [OPTIONS] EVENT_ID",
    ("trace",): "nerve trace [OPTIONS] CORRELATION_ID",
    ("tail",): "nerve tail [OPTIONS] [PATTERN]",
    ("dlq",): "nerve dlq [OPTIONS] COMMAND [ARGS]...",
    ("dlq", "list"): "nerve dlq list [OPTIONS]",
    ("dlq", "show"): "nerve dlq show [OPTIONS] EVENT_ID",
    ("dlq", "replay"): "nerve dlq replay [OPTIONS] [EVENT_ID]",
    ("dlq", "purge"): "nerve dlq purge [OPTIONS] [EVENT_ID]",
    ("waits",): "nerve waits [OPTIONS]",
    ("approvals",): "nerve approvals [OPTIONS] COMMAND [ARGS]...",
    ("approvals", "list"): "nerve approvals list [OPTIONS]",
    ("approvals", "approve"): "nerve approvals approve [OPTIONS] APPROVAL_ID",
    ("approvals", "reject"): "nerve approvals reject [OPTIONS] APPROVAL_ID",
    ("mcp",): "nerve mcp [OPTIONS] APP",
}


def help_of(*command: str) -> str:
    result = CliRunner().invoke(build_app(), [*command, "--help"], prog_name="nerve")
    assert result.exit_code == 0, result.output
    return result.output


def test_every_command_is_covered() -> None:
    root = get_command(build_app())
    found: set[tuple[str, ...]] = {()}
    found |= {(name,) for name in root.commands}  # type: ignore[attr-defined]
    for group in ("dlq", "approvals"):
        found |= {(group, name) for name in root.commands[group].commands}  # type: ignore[attr-defined]
    assert found == set(USAGES)


@pytest.mark.parametrize("command", list(USAGES), ids=" ".join)
def test_usage_lines_name_arguments_as_the_docs_do(command: tuple[str, ...]) -> None:
    lines = [line.strip() for line in help_of(*command).splitlines()]
    assert f"Usage: {USAGES[command]}" in lines


@pytest.mark.parametrize("command", list(USAGES), ids=" ".join)
def test_flags_show_no_value(command: tuple[str, ...]) -> None:
    text = help_of(*command)
    assert "--help" in text
    assert "<bool>" not in text
    assert "--help  " in text or re.search(r"--help\s+Show", text)


def test_a_flag_takes_no_value() -> None:
    # --json is a flag: shown bare, and given bare
    text = help_of("status")
    assert re.search(r"--json\s+print one JSON object", text), text
    refused = CliRunner().invoke(build_app(), ["status", "x", "--json", "true"])
    assert refused.exit_code == 2


def test_json_says_what_it_prints() -> None:
    assert re.search(r"--json\s+print JSON, one object a line", help_of("dlq", "list"))
    assert re.search(r"--json\s+print JSON, one object a line", help_of("tail"))
    assert re.search(r"--json\s+print JSON, one object a line", help_of("waits"))
    assert re.search(r"--json\s+print JSON, one object a line", help_of("approvals", "list"))
    trace = help_of("trace")
    assert "one object a line" not in trace
    assert re.search(r"--json\s+print the chain as one JSON array of trees", trace)
    for command in (
        ("status",),
        ("doctor",),
        ("dlq", "purge"),
        ("dlq", "replay"),
        ("approvals", "approve"),
        ("approvals", "reject"),
    ):
        assert re.search(r"--json\s+print one JSON object", help_of(*command)), command


def test_doctor_has_the_operator_options() -> None:
    text = help_of("doctor")
    for option in ("--url", "--json"):
        assert option in text


def test_version_is_listed() -> None:
    assert re.search(r"--version\s+print nerve's version", help_of())
