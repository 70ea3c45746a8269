"""Running apps: ``nerve serve`` (HTTP and handlers), ``nerve worker``, ``nerve doctor``."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from nerve.bus import EventBus
from nerve.cli.options import AppArg
from nerve.cli.output import console
from nerve.exceptions import ConfigurationError, NerveError
from nerve.loading import load_bus
from nerve.observe.logs import configure_logging
from nerve.settings import environment_override
from nerve.urls import redact, scheme_of

#: Where ``nerve serve`` keeps events when NERVE_URL is not set: a SQLite file here.
SERVE_DEFAULT_URL = "sqlite:///nerve.db"


def serve(
    targets: Annotated[
        list[str],
        typer.Argument(
            help="module:attribute naming an EventBus (attribute default: bus); "
            "several apps are served as one"
        ),
    ],
    host: Annotated[str, typer.Option(help="address to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="port to listen on")] = 8000,
    workers: Annotated[
        int, typer.Option("--workers", "-w", min=1, help="processes, each with HTTP and handlers")
    ] = 1,
    url: Annotated[
        str | None,
        typer.Option(help=f"transport URL (default: NERVE_URL, else {SERVE_DEFAULT_URL})"),
    ] = None,
    log_level: Annotated[str, typer.Option(help="uvicorn's log level")] = "info",
) -> None:
    """Serve the HTTP app (events, webhooks, DLQ, metrics) with the apps' handlers running.

    Without NERVE_URL the events are kept in a SQLite file (nerve.db, here), so nothing
    accepted is lost across restarts and several --workers share them.
    """
    import uvicorn  # only this command needs the server

    from nerve.http.app import create_app, intake_first
    from nerve.http.serve import APPS_VARIABLE, combine, server_options
    from nerve.http.settings import HTTPSettings

    url = url or os.environ.get("NERVE_URL", SERVE_DEFAULT_URL)
    json_logs = configure_logging().format == "json"
    with environment_override(url=url):  # NERVE_URL for the apps, as they are imported
        bus = combine(targets)  # fail here, once, if an app cannot load
    if workers > 1 and not bus.transport.durable:
        raise ConfigurationError(
            f"{workers} workers cannot share {scheme_of(bus.url)}:// (in-process): "
            "use a durable transport, e.g. --url sqlite:///nerve.db"
        )
    grace = int(bus.settings.shutdown_grace) + 1
    console.print(
        f"nerve serve: {len(bus.subscriptions)} subscriptions on {redact(bus.url)}; "
        f"POST events to http://{host}:{port}/events"
    )
    options: dict[str, Any] = {"host": host, "port": port, "log_level": log_level}
    options |= server_options(HTTPSettings(), host)  # limits; loopback only without a key
    if json_logs:
        options["log_config"] = None  # uvicorn's records reach the root's JSON handler
    if workers == 1:
        uvicorn.run(intake_first(create_app(bus)), **options, timeout_graceful_shutdown=grace)
        return
    # Each worker process builds its own app from the targets (uvicorn imports a string).
    # uvicorn spawns the workers, which inherit this process's environment: the one way
    # to hand them the targets and the URL, so here (only) the environment is written.
    os.environ[APPS_VARIABLE] = ",".join(targets)
    os.environ["NERVE_URL"] = url
    uvicorn.run(
        "nerve.http.serve:app_from_env",
        factory=True,
        workers=workers,
        **options,
        timeout_graceful_shutdown=grace,
    )


def worker(
    target: AppArg,
    workers: Annotated[int, typer.Option("--workers", "-w", min=1, help="worker processes")] = 1,
) -> None:
    """Run the app's subscriptions until SIGTERM / Ctrl-C, then drain gracefully.

    With --workers N, N processes share every subscription's events (on a durable
    transport); one that dies is restarted, and SIGTERM stops them all.
    """
    if workers == 1:
        configure_logging()
        bus = load_bus(target)
        console.print(
            f"nerve worker {os.getpid()}: {len(bus.subscriptions)} subscriptions on "
            f"{redact(bus.url)}"
        )
        asyncio.run(_serve(bus))
        return
    _supervise(target, workers)


async def _serve(bus: EventBus) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await bus.start()
    try:
        await stop.wait()
    finally:
        await bus.stop()


def _supervise(target: str, count: int) -> None:
    """Keep ``count`` single-process workers running until told to stop."""
    command = [sys.executable, "-m", "nerve", "worker", target, "--workers", "1"]
    children = [subprocess.Popen(command) for _ in range(count)]  # noqa: S603  # our own CLI
    stopping = False

    def stop(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True
        for child in children:
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    while not stopping:
        for index, child in enumerate(children):
            if child.poll() is not None and not stopping:
                console.print(f"worker {child.pid} exited with {child.returncode}; restarting")
                children[index] = subprocess.Popen(command)  # noqa: S603
        time.sleep(0.2)
    for child in children:
        child.wait()


def doctor(target: AppArg) -> None:
    """Check that the app's transport and store answer."""
    bus = load_bus(target)
    table = Table("check", "result")
    ok = asyncio.run(_doctor(bus, table))
    Console().print(table)
    raise typer.Exit(0 if ok else 1)


async def _doctor(bus: EventBus, table: Table) -> bool:
    ok = True
    where = redact(bus.url)
    try:
        await bus.transport.connect()
        await bus.transport.close()
        table.add_row(f"transport {where}", "[green]ok[/green]")
    except NerveError as exc:
        ok = False
        table.add_row(f"transport {where}", f"[red]{escape(str(exc))}[/red]")
    try:
        dead = len(await bus.dlq.list())
        table.add_row(f"store {bus.store_url}", f"[green]ok[/green], {dead} dead letter(s)")
    except NerveError as exc:
        ok = False
        table.add_row(f"store {bus.store_url}", f"[red]{escape(str(exc))}[/red]")
    table.add_row("subscriptions", ", ".join(bus.subscriptions) or "(none)")
    await bus.stop()
    return ok
