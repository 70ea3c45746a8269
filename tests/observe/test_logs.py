"""Structured logs: one line per event outcome on ``nerve.events``, and JSON output."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from opentelemetry.sdk.trace import TracerProvider
from pydantic import ValidationError

from nerve import Event, EventBus, Reject
from nerve.observe.logs import (
    EVENTS_LOGGER,
    JSONFormatter,
    LogSettings,
    TextFormatter,
    configure_logging,
)
from nerve.observe.tracing import Tracing
from tests.conftest import FAST

ROOT = Path(__file__).resolve().parents[2]


def outcomes(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == EVENTS_LOGGER]


async def test_one_line_per_outcome_with_the_events_ids(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger=EVENTS_LOGGER)
    bus = EventBus("memory://")
    tries: list[int] = []

    @bus.on("order.placed", name="bill")
    async def bill(event: Event) -> None:
        await bus.publish(Event(event_type="order.billed"))

    @bus.on("order.billed", name="ship", retries=1, backoff=FAST)
    async def ship(event: Event) -> None:
        tries.append(1)
        if len(tries) == 1:
            raise TimeoutError("carrier slow")

    @bus.on("order.placed", name="audit")
    async def audit(event: Event) -> None:
        raise Reject("not auditable")

    async with bus:
        root = await bus.publish(Event(event_type="order.placed"))
        await bus.join(timeout=10)

    records = outcomes(caplog)
    by = {(r.subscription, r.attempt): r for r in records}  # type: ignore[attr-defined]
    assert len(records) == 4  # bill handled, audit dead-lettered, ship retrying + handled
    billed = by[("bill", 1)]
    assert billed.levelno == logging.INFO
    assert (
        vars(billed).items()
        >= {
            "outcome": "handled",
            "event_id": root.event_id,
            "event_type": "order.placed",
            "correlation_id": root.event_id,
            "causation_id": None,
            "subscription": "bill",
            "attempt": 1,
        }.items()
    )
    assert isinstance(billed.duration_ms, float)  # type: ignore[attr-defined]
    assert billed.getMessage().startswith(f"handled order.placed {root.event_id} in bill")

    retrying = by[("ship", 1)]
    assert retrying.levelno == logging.INFO
    assert (
        vars(retrying).items()
        >= {
            "outcome": "retrying",
            "event_type": "order.billed",
            "correlation_id": root.event_id,  # the chain's
            "causation_id": root.event_id,
            "error_type": "TimeoutError",
            "error": "carrier slow",
        }.items()
    )
    assert retrying.retry_in > 0  # type: ignore[attr-defined]
    assert by[("ship", 2)].outcome == "handled"  # type: ignore[attr-defined]

    dead = by[("audit", 1)]
    assert dead.levelno == logging.WARNING
    assert (
        vars(dead).items()
        >= {
            "outcome": "dead_lettered",
            "error_type": "Reject",
            "error": "not auditable",
        }.items()
    )
    assert "retry_in" not in vars(dead)


async def test_disabled_logger_logs_nothing(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger=EVENTS_LOGGER)
    bus = EventBus("memory://")

    @bus.on("quiet.job")
    async def quiet(event: Event) -> None:
        pass

    async with bus:
        await bus.publish(Event(event_type="quiet.job"))
        await bus.join(timeout=10)
    assert outcomes(caplog) == []


async def test_a_traced_attempt_logs_its_trace_id(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger=EVENTS_LOGGER)
    bus = EventBus("memory://")
    bus.observe(Tracing(TracerProvider()))

    @bus.on("traced.job")
    async def traced(event: Event) -> None:
        pass

    async with bus:
        event = await bus.publish(Event(event_type="traced.job"))
        await bus.join(timeout=10)
    [record] = outcomes(caplog)
    trace_id = event.metadata["traceparent"].split("-")[1]
    assert record.trace_id == trace_id  # type: ignore[attr-defined]
    assert len(record.span_id) == 16  # type: ignore[attr-defined]


def test_the_json_formatter_writes_every_extra_field() -> None:
    record = logging.LogRecord("nerve.events", logging.INFO, __file__, 1, "hi %s", ("you",), None)
    record.event_id = "e-1"
    record.attempt = 2
    record.when = object()  # not JSON: written as its str()
    line = json.loads(JSONFormatter().format(record))
    assert (
        line.items()
        >= {
            "level": "INFO",
            "logger": "nerve.events",
            "message": "hi you",
            "event_id": "e-1",
            "attempt": 2,
        }.items()
    )
    assert line["time"].endswith("+00:00")
    assert line["when"].startswith("<object object")
    try:
        raise ValueError("boom")
    except ValueError:
        failing = logging.LogRecord(
            "nerve", logging.ERROR, __file__, 1, "failed", (), sys.exc_info()
        )
    assert "ValueError: boom" in json.loads(JSONFormatter().format(failing))["exception"]


def test_log_settings_read_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NERVE_LOG_FORMAT", "json")
    monkeypatch.setenv("NERVE_LOG_LEVEL", "debug")
    assert LogSettings().format == "json"
    assert LogSettings().level == "DEBUG"  # any case; a level logging knows
    monkeypatch.setenv("NERVE_LOG_LEVEL", "LOUD")
    with pytest.raises(ValidationError, match="level"):
        LogSettings()


def test_nerve_log_format_json_makes_every_line_json(tmp_path: Path) -> None:
    """A process that calls configure_logging() (as the CLI does) logs JSON lines."""
    script = textwrap.dedent(
        """
        import asyncio
        from nerve import Event, EventBus
        from nerve.observe.logs import configure_logging

        configure_logging()
        bus = EventBus("memory://")

        @bus.on("json.job", name="jsonjob")
        async def handle(event: Event) -> None:
            pass

        async def main() -> None:
            async with bus:
                await bus.publish(Event(event_type="json.job"))
                await bus.join(timeout=10)

        asyncio.run(main())
        """
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("NERVE_")}
    env |= {"NERVE_LOG_FORMAT": "json", "PYTHONPATH": str(ROOT)}
    result = subprocess.run(  # noqa: S603  # our own script
        [sys.executable, "-c", script],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in result.stderr.splitlines()]
    [handled] = [line for line in lines if line.get("outcome") == "handled"]
    assert (
        handled.items()
        >= {
            "level": "INFO",
            "logger": "nerve.events",
            "subscription": "jsonjob",
            "event_type": "json.job",
            "attempt": 1,
        }.items()
    )


def test_the_text_formatter_keeps_one_line_per_record() -> None:
    forged = "x\n2026-01-01 00:00:00,000 INFO nerve: payment approved\x1b[2K\u2028"
    record = logging.LogRecord("nerve", logging.WARNING, __file__, 1, "got %s", (forged,), None)
    line = TextFormatter().format(record)
    assert "\n" not in line
    assert "\x1b" not in line
    assert "\u2028" not in line
    assert line.endswith(
        "got x\\n2026-01-01 00:00:00,000 INFO nerve: payment approved\\x1b[2K\\u2028"
    )


def test_configure_logging_writes_text_through_the_escaping_formatter() -> None:
    root = logging.getLogger()
    saved = list(root.handlers), root.level
    try:
        configure_logging(LogSettings(format="text"))
        (handler,) = root.handlers
        assert isinstance(handler.formatter, TextFormatter)
    finally:
        for handler in list(root.handlers):
            root.removeHandler(handler)
        for handler in saved[0]:
            root.addHandler(handler)
        root.setLevel(saved[1])
