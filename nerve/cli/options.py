"""What the ``nerve`` commands share: the Typer app, consoles, options and helpers."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape

from nerve.bus import EventBus
from nerve.exceptions import ConfigurationError, NerveError
from nerve.loading import load_bus
from nerve.urls import scheme_of

app = typer.Typer(help="nerve: event-driven AI agents on an event bus.", no_args_is_help=True)
console = Console(stderr=True)
out = Console(soft_wrap=True)

AppArg = Annotated[str, typer.Argument(help="module:attribute naming an EventBus, e.g. app:bus")]
# the operator commands: a bus of the transport and store, no handlers needed

UrlOption = Annotated[
    str | None, typer.Option("--url", "-u", help="transport URL (default: NERVE_URL)")
]
AppOption = Annotated[
    str | None,
    typer.Option("--app", "-a", help="module:attribute naming an EventBus, to use its store"),
]
JsonOption = Annotated[bool, typer.Option("--json", help="print JSON, one object a line")]


def ops_bus(url: str | None, target: str | None) -> EventBus:
    """The bus an operator command acts on: the app's, or a bare one of ``--url``."""
    if url:
        os.environ["NERVE_URL"] = url
    bus = load_bus(target) if target else EventBus()
    if not bus.transport.durable:
        raise ConfigurationError(
            f"{scheme_of(bus.url)}:// is in-process: another process cannot see its events; "
            "pass --url (or set NERVE_URL) to a durable transport, e.g. sqlite:///nerve.db"
        )
    return bus


def run_on(bus: EventBus, work: Callable[[EventBus], Awaitable[int]]) -> None:
    """Run ``work`` on the bus, stop it, exit with its code (1 on a nerve error)."""

    async def run() -> int:
        try:
            return await work(bus)
        finally:
            await bus.stop()

    try:
        code = asyncio.run(run())
    except ConfigurationError:
        raise
    except NerveError as exc:
        console.print(f"[red]error:[/red] {escape(str(exc))}")
        code = 1
    raise typer.Exit(code)


def print_json(value: Any) -> None:
    sys.stdout.write(json.dumps(value, default=str) + "\n")


def clock(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%H:%M:%S.%f")[:-3]


def parse_json(text: str, what: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigurationError(f"{what} is not JSON: {exc}") from exc
