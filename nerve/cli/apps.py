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
from rich.table import Column, Table
from rich.text import Text

from nerve.bus import EventBus
from nerve.cli.operator_bus import bus_of
from nerve.cli.options import AppArg, JSONObjectOption, URLOption
from nerve.cli.output import print_json, show, stderr
from nerve.cli.state import check_processes, host_local_store, memory_store_warning
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
            metavar="APP",
            help="module:attribute naming an EventBus (attribute default: bus); "
            "several apps are served as one",
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
    from uvicorn.supervisors import Multiprocess

    from nerve.http.app import create_app, intake_first
    from nerve.http.serve import ServedApps, combine, server_options
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
    check_processes(bus, workers, "nerve serve")
    grace = int(bus.settings.shutdown_grace) + 1
    stderr().print(
        f"nerve serve: {len(bus.subscriptions)} subscriptions on {redact(bus.url)}; "
        f"POST events to http://{host}:{port}/events"
    )
    _state_warnings(bus)
    options: dict[str, Any] = {"host": host, "port": port, "log_level": log_level}
    options |= server_options(HTTPSettings(), host)  # limits; loopback only without a key
    if json_logs:
        options["log_config"] = None  # uvicorn's records reach the root's JSON handler
    if workers == 1:
        uvicorn.run(intake_first(create_app(bus)), **options, timeout_graceful_shutdown=grace)
        return
    # Each worker process builds its own app: uvicorn pickles the config, with its app
    # factory (ServedApps: the targets and the URL), into every process it spawns.
    config = uvicorn.Config(
        ServedApps(tuple(targets), url),
        factory=True,
        workers=workers,
        **options,
        timeout_graceful_shutdown=grace,
    )
    Multiprocess(config, sockets=[config.bind_socket()]).run()


def worker(
    target: AppArg,
    workers: Annotated[int, typer.Option("--workers", "-w", min=1, help="worker processes")] = 1,
) -> None:
    """Run the app's subscriptions until SIGTERM / Ctrl-C, then drain gracefully.

    With --workers N, N processes share every subscription's events (on a durable
    transport); one that dies is restarted, and SIGTERM stops them all.
    """
    configure_logging()
    bus = load_bus(target)  # fail here, once, if the app cannot load
    check_processes(bus, workers, "nerve worker")
    if not bus.transport.durable:
        where = f"{scheme_of(bus.url)}:// (in-process)"
        if workers > 1:  # N buses of their own, each receiving nothing from outside
            raise ConfigurationError(
                f"{workers} workers cannot share {where}: use a durable transport, "
                "e.g. NERVE_URL=sqlite:///nerve.db"
            )
        stderr().print(
            f"warning: {where}: this worker receives only the events its own handlers "
            "publish; for events from other processes use a durable transport, "
            "e.g. NERVE_URL=sqlite:///nerve.db"
        )
    if workers == 1:
        stderr().print(
            f"nerve worker {os.getpid()}: {len(bus.subscriptions)} subscriptions on "
            f"{redact(bus.url)}"
        )
        _state_warnings(bus)
        asyncio.run(_serve(bus))
        return
    _supervise(target, workers)


def _state_warnings(bus: EventBus) -> None:
    """Say at start where the state would not last or not be shared (nerve.cli.state)."""
    warning = memory_store_warning(bus)
    if warning:
        stderr().print(f"warning: {warning}")
    note = host_local_store(bus)
    if note:
        stderr().print(f"note: {note}")


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
                stderr().print(f"worker {child.pid} exited with {child.returncode}; restarting")
                children[index] = subprocess.Popen(command)  # noqa: S603
        time.sleep(0.2)
    for child in children:
        child.wait()


def doctor(
    target: Annotated[
        str | None,
        typer.Argument(
            metavar="APP",
            help="module:attribute naming an EventBus, e.g. app:bus (default: a bare bus of --url)",
        ),
    ] = None,
    url: URLOption = None,
    as_json: JSONObjectOption = False,
) -> None:
    """Check that the transport and store answer (exit 1 if one does not).

    Of the app's bus, or of a bare bus of --url (default: NERVE_URL) without APP.
    """
    bus = bus_of(url, target)
    report = asyncio.run(_doctor(bus))
    if as_json:
        print_json(report)
    else:
        show(_doctor_table(report))
    raise typer.Exit(0 if report["ok"] else 1)


async def _doctor(bus: EventBus) -> dict[str, Any]:
    transport: dict[str, Any] = {"url": redact(bus.url), "ok": True, "error": None}
    note = memory_store_warning(bus) or host_local_store(bus)
    store: dict[str, Any] = {"url": bus.store_url, "ok": True, "error": None, "note": note}
    try:
        await bus.transport.connect()
        await bus.transport.close()
    except NerveError as exc:
        transport |= {"ok": False, "error": str(exc)}
    try:
        store["dead_letters"] = len(await bus.dlq.list())
    except NerveError as exc:
        store |= {"ok": False, "error": str(exc)}
    await bus.stop()
    return {
        "ok": transport["ok"] and store["ok"],
        "transport": transport,
        "store": store,
        "subscriptions": list(bus.subscriptions),
    }


def _doctor_table(report: dict[str, Any]) -> Table:
    table = Table("check", Column("result", overflow="fold"))
    for what in ("transport", "store"):
        check = report[what]
        if not check["ok"]:
            result = Text(check["error"], style="red")
        elif what == "store":
            result = Text.assemble(("ok", "green"), f", {check['dead_letters']} dead letter(s)")
            if check["note"]:
                result.append(f"; {check['note']}", style="yellow")
        else:
            result = Text("ok", style="green")
        table.add_row(f"{what} {check['url']}", result)
    table.add_row("subscriptions", ", ".join(report["subscriptions"]) or "(none)")
    return table
