"""The bus a command acts on (the operator commands' ``publish``, ``dlq``, ``status``,
``trace``, ``tail``, ``waits``, ``approvals``, and ``doctor``), and running the command's
work on it to an exit code."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from contextlib import nullcontext

import typer

from nerve.bus import EventBus
from nerve.cli.output import error
from nerve.exceptions import ConfigurationError, NerveError
from nerve.loading import load_bus
from nerve.settings import Settings, environment_override
from nerve.urls import scheme_of


def bus_of(url: str | None, target: str | None) -> EventBus:
    """The app's bus, or a bare one of ``--url``.

    ``--url`` stands for ``NERVE_URL`` (for the app, as it is imported), without writing
    the environment.
    """
    if target:
        with environment_override(url=url) if url else nullcontext():
            return load_bus(target)
    return EventBus(settings=Settings(url=url) if url else None)


def operator_bus(url: str | None, target: str | None) -> EventBus:
    """The bus an operator command acts on (:func:`bus_of`): on a durable transport."""
    bus = bus_of(url, target)
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
        error(str(exc))
        code = 1
    raise typer.Exit(code)
