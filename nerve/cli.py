"""The ``nerve`` command: thin over the public API.

``nerve worker APP`` runs an app's subscriptions (``APP`` is ``module:attribute`` naming an
:class:`~nerve.EventBus`, as uvicorn names apps); ``nerve doctor APP`` checks that its
transport and store answer.

The operator commands (``publish``, ``dlq``, ``status``, ``trace``, ``tail``) need a
transport and a store, not handlers: they act on ``--url`` (default ``NERVE_URL``), or on
the bus of ``--app module:bus`` when the app configures its store in code. Exit codes:
0 done, 1 not found / failed, 2 usage or configuration error.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Annotated, Any

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.markup import escape
from rich.progress import Progress
from rich.table import Table
from rich.tree import Tree

from nerve.bus import EventBus
from nerve.events import Event
from nerve.exceptions import ConfigurationError, NerveError
from nerve.history import TraceNode
from nerve.loading import load_bus
from nerve.transports import redact, scheme_of

app = typer.Typer(help="nerve: event-driven AI agents on an event bus.", no_args_is_help=True)
console = Console(stderr=True)

AppArg = Annotated[str, typer.Argument(help="module:attribute naming an EventBus, e.g. app:bus")]
#: Where ``nerve serve`` keeps events when NERVE_URL is not set: a SQLite file here.
SERVE_DEFAULT_URL = "sqlite:///nerve.db"


@app.command()
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

    from nerve.http.app import create_app
    from nerve.http.serve import APPS_VARIABLE, combine

    if url:
        os.environ["NERVE_URL"] = url
    os.environ.setdefault("NERVE_URL", SERVE_DEFAULT_URL)
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
    if workers == 1:
        uvicorn.run(create_app(bus), **options, timeout_graceful_shutdown=grace)
        return
    # Each worker process builds its own app from the targets (uvicorn imports a string).
    os.environ[APPS_VARIABLE] = ",".join(targets)
    uvicorn.run(
        "nerve.http.serve:app_from_env",
        factory=True,
        workers=workers,
        **options,
        timeout_graceful_shutdown=grace,
    )


@app.command()
def worker(
    target: AppArg,
    workers: Annotated[int, typer.Option("--workers", "-w", min=1, help="worker processes")] = 1,
) -> None:
    """Run the app's subscriptions until SIGTERM / Ctrl-C, then drain gracefully.

    With --workers N, N processes share every subscription's events (on a durable
    transport); one that dies is restarted, and SIGTERM stops them all.
    """
    if workers == 1:
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


@app.command()
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


# the operator commands: a bus of the transport and store, no handlers needed

UrlOption = Annotated[
    str | None, typer.Option("--url", "-u", help="transport URL (default: NERVE_URL)")
]
AppOption = Annotated[
    str | None,
    typer.Option("--app", "-a", help="module:attribute naming an EventBus, to use its store"),
]
JsonOption = Annotated[bool, typer.Option("--json", help="print JSON, one object a line")]
out = Console(soft_wrap=True)


def _ops_bus(url: str | None, target: str | None) -> EventBus:
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


def _run(bus: EventBus, work: Callable[[EventBus], Awaitable[int]]) -> None:
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


def _json(value: Any) -> None:
    sys.stdout.write(json.dumps(value, default=str) + "\n")


def _time(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%H:%M:%S.%f")[:-3]


def _parse(text: str, what: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigurationError(f"{what} is not JSON: {exc}") from exc


@app.command()
def publish(
    event_type: Annotated[
        str | None, typer.Argument(help="the event type (with --stdin: of every line)")
    ] = None,
    payload: Annotated[str, typer.Option("--payload", "-p", help="the payload, JSON")] = "{}",
    stdin: Annotated[
        bool,
        typer.Option(
            "--stdin",
            help="read JSON lines from stdin: payloads of EVENT_TYPE, or whole events "
            "(with event_type) when no EVENT_TYPE is given",
        ),
    ] = False,
    correlation_id: Annotated[
        str | None, typer.Option(help="the correlation id (default: the event's id)")
    ] = None,
    source: Annotated[str, typer.Option(help="who emits it (a URI-reference)")] = "nerve-cli",
    url: UrlOption = None,
    target: AppOption = None,
    as_json: JsonOption = False,
) -> None:
    """Publish an event (or JSON lines from stdin, with a progress bar).

    A worker need not be running: on a durable transport the event waits for one.
    """
    if not stdin and event_type is None:
        raise ConfigurationError("give an EVENT_TYPE, or --stdin to read events")
    common: dict[str, Any] = {"source": source}
    if correlation_id:
        common["correlation_id"] = correlation_id
    if stdin:
        events = [
            _event_of_line(line, event_type, common, n)
            for n, line in enumerate(sys.stdin, 1)
            if line.strip()
        ]
    else:
        events = [Event(event_type=event_type, payload=_parse(payload, "--payload"), **common)]
    bus = _ops_bus(url, target)
    _run(bus, lambda bus: _publish(bus, events, as_json=as_json, bar=stdin))


def _event_of_line(line: str, event_type: str | None, common: dict[str, Any], n: int) -> Event:
    value = _parse(line, f"line {n}")
    try:
        if event_type is not None:
            return Event(event_type=event_type, payload=value, **common)
        if not isinstance(value, dict):
            raise ConfigurationError(f"line {n}: expected an event object with event_type")
        return Event.model_validate({**common, **value})
    except ValidationError as exc:
        raise ConfigurationError(f"line {n}: not an event: {exc}") from exc


async def _publish(bus: EventBus, events: list[Event], *, as_json: bool, bar: bool) -> int:
    with Progress(console=console, disable=not bar, transient=True) as progress:
        task = progress.add_task("publishing", total=len(events))
        for start in range(0, len(events), PUBLISH_BATCH):
            sent = await bus.publish_many(events[start : start + PUBLISH_BATCH])
            progress.advance(task, len(sent))
            for event in sent:
                if as_json:
                    _json({"event_id": event.event_id, "correlation_id": event.correlation_id})
                elif not bar:
                    out.print(f"published {escape(event.event_type)} {event.event_id}")
    if bar and not as_json:
        out.print(f"published {len(events)} events")
    return 0


#: ``nerve publish --stdin`` hands the transport this many events at a time.
PUBLISH_BATCH = 500


@app.command()
def status(
    event_id: Annotated[str, typer.Argument(help="the event's id")],
    url: UrlOption = None,
    target: AppOption = None,
    as_json: JsonOption = False,
) -> None:
    """Where an event stands with each subscription (exit 1 if it is unknown)."""
    _run(_ops_bus(url, target), lambda bus: _status(bus, event_id, as_json))


async def _status(bus: EventBus, event_id: str, as_json: bool) -> int:
    found = await bus.status(event_id)
    if as_json:
        _json(
            {
                "event_id": found.event_id,
                "event_type": found.event_type,
                "settled": found.settled,
                "subscriptions": {k: str(v) for k, v in found.subscriptions.items()},
            }
        )
    elif found.event_type is None:
        console.print(f"no event {escape(event_id)} (never published, or older than the window)")
    else:
        table = Table("subscription", "state", title=f"{found.event_type} {event_id}")
        for name, state in sorted(found.subscriptions.items()):
            table.add_row(escape(name), f"[{_COLOURS.get(str(state), 'white')}]{state}[/]")
        out.print(table)
    return 0 if found.event_type is not None else 1


_COLOURS = {
    "done": "green",
    "pending": "yellow",
    "failed": "yellow",
    "retrying": "yellow",
    "dead_lettered": "red",
}


@app.command()
def trace(
    correlation_id: Annotated[
        str, typer.Argument(help="the chain's correlation id (or an event id)")
    ],
    url: UrlOption = None,
    target: AppOption = None,
    as_json: JsonOption = False,
) -> None:
    """The chain of events and handler outcomes as a tree (exit 1 if none is logged)."""
    _run(_ops_bus(url, target), lambda bus: _trace(bus, correlation_id, as_json))


async def _trace(bus: EventBus, correlation_id: str, as_json: bool) -> int:
    nodes = await bus.history.trace(correlation_id)
    if not nodes:  # an event id: its chain
        record = await bus.history.event(correlation_id)
        if record is not None:
            correlation_id = record.event.correlation_id
            nodes = await bus.history.trace(correlation_id)
    if as_json:
        _json([node.model_dump(mode="json") for node in nodes])
    elif not nodes:
        console.print(f"no events of {escape(correlation_id)} in the event log")
    else:
        tree = Tree(f"chain {escape(correlation_id)}")
        for node in nodes:
            _add_node(tree, node)
        out.print(tree)
    return 0 if nodes else 1


def _add_node(parent: Tree, node: TraceNode) -> None:
    record = node.record
    event = record.event
    branch = parent.add(
        f"[bold]{escape(event.event_type)}[/bold] {event.event_id} "
        f"[dim]published {_time(record.published_at)}[/dim]"
    )
    for outcome in record.outcomes:
        colour = _COLOURS.get(outcome.state, "white")
        line = (
            f"[{colour}]{outcome.state}[/] {escape(outcome.subscription)} "
            f"[dim]attempt {outcome.attempt}, {outcome.seconds * 1000:.1f} ms, "
            f"ended {_time(outcome.ended_at)}[/dim]"
        )
        if outcome.error_type:
            line += f" {escape(outcome.error_type)}: {escape(outcome.error_message or '')}"
        branch.add(line)
    for child in node.children:
        _add_node(branch, child)


@app.command()
def tail(
    pattern: Annotated[
        str | None, typer.Argument(help="only event types matching it (* one segment, # any)")
    ] = None,
    url: UrlOption = None,
    target: AppOption = None,
    as_json: JsonOption = False,
    last: Annotated[int, typer.Option(min=0, help="first show this many recent events")] = 0,
    count: Annotated[
        int | None, typer.Option(min=1, help="stop after this many events (exit 1 if not seen)")
    ] = None,
    timeout: Annotated[float | None, typer.Option(min=0, help="stop after these seconds")] = None,
    interval: Annotated[float, typer.Option(min=0.01, help="seconds between polls")] = 0.2,
) -> None:
    """Print events as they are published (until Ctrl-C, --count or --timeout)."""
    bus = _ops_bus(url, target)
    try:
        _run(bus, lambda bus: _tail(bus, pattern, as_json, last, count, timeout, interval))
    except KeyboardInterrupt:
        raise typer.Exit(0) from None


async def _tail(
    bus: EventBus,
    pattern: str | None,
    as_json: bool,
    last: int,
    count: int | None,
    timeout: float | None,
    interval: float,
) -> int:
    loop = asyncio.get_running_loop()
    deadline = None if timeout is None else loop.time() + timeout
    seen = 0
    records, cursor = await bus.history.recent(pattern=pattern, limit=last)
    if sys.stdout.isatty() and not as_json:
        console.print(f"following {redact(bus.url)} (Ctrl-C to stop)")
    while True:
        for record in records:
            if as_json:
                _json(record.model_dump(mode="json"))
            else:
                event = record.event
                out.print(
                    f"{_time(record.published_at)} [bold]{escape(event.event_type)}[/bold] "
                    f"{event.event_id} [dim]chain {event.correlation_id}[/dim] "
                    f"{escape(json.dumps(event.payload, default=str))}"
                )
            sys.stdout.flush()
            seen += 1
            if count is not None and seen >= count:
                return 0
        if deadline is not None and loop.time() >= deadline:
            return 1 if count is not None else 0
        await asyncio.sleep(interval)
        records, cursor = await bus.history.recent(cursor, pattern=pattern, limit=500)


# the dead letter queue

dlq_app = typer.Typer(
    help="The dead letter queue: list, show, replay, purge.", no_args_is_help=True
)
app.add_typer(dlq_app, name="dlq")
SubscriptionOption = Annotated[
    str | None, typer.Option("--subscription", "-s", help="only this subscription's")
]


@dlq_app.command("list")
def dlq_list(
    subscription: SubscriptionOption = None,
    limit: Annotated[int, typer.Option(min=1, help="at most this many, newest first")] = 100,
    url: UrlOption = None,
    target: AppOption = None,
    as_json: JsonOption = False,
) -> None:
    """Dead letters, newest first."""
    _run(_ops_bus(url, target), lambda bus: _dlq_list(bus, subscription, limit, as_json))


async def _dlq_list(bus: EventBus, subscription: str | None, limit: int, as_json: bool) -> int:
    entries = await bus.dlq.list(subscription=subscription, limit=limit)
    if as_json:
        for entry in entries:
            _json(entry.model_dump(mode="json"))
        return 0
    table = Table("event id", "type", "subscription", "attempts", "dead at", "last error")
    for entry in entries:
        last = entry.last_error
        table.add_row(
            entry.event.event_id,
            escape(entry.event.event_type),
            escape(entry.subscription),
            str(entry.attempts),
            entry.dead_at[:23],
            escape(f"{last.type}: {last.message}" if last else ""),
        )
    out.print(table)
    console.print(f"{len(entries)} dead letter(s)")
    return 0


@dlq_app.command("show")
def dlq_show(
    event_id: Annotated[str, typer.Argument(help="the dead event's id")],
    subscription: SubscriptionOption = None,
    url: UrlOption = None,
    target: AppOption = None,
    as_json: JsonOption = False,
) -> None:
    """One event's dead letters: the event and every attempt's error (exit 1 if none)."""
    _run(_ops_bus(url, target), lambda bus: _dlq_show(bus, event_id, subscription, as_json))


async def _dlq_show(bus: EventBus, event_id: str, subscription: str | None, as_json: bool) -> int:
    entries = await bus.dlq.list(event_id=event_id, subscription=subscription, limit=None)
    for entry in entries:
        if as_json:
            _json(entry.model_dump(mode="json"))
            continue
        event = entry.event
        out.print(
            f"[bold]{escape(event.event_type)}[/bold] {event.event_id} in "
            f"[bold]{escape(entry.subscription)}[/bold]: dead at {entry.dead_at}, "
            f"{entry.attempts} attempt(s)\n"
            f"chain {event.correlation_id}, caused by {event.causation_id or '-'}\n"
            f"payload {escape(json.dumps(event.payload, default=str))}"
        )
        for error in entry.errors:
            out.print(
                f"  attempt {error.attempt} at {error.time}: "
                f"[red]{escape(error.type)}[/red]: {escape(error.message)}"
            )
        if entry.last_error is not None:
            out.print(escape(entry.last_error.traceback.rstrip()), style="dim")
    if not entries:
        console.print(f"no dead letter of {escape(event_id)}")
    return 0 if entries else 1


def _selection(
    event_id: str | None, subscription: str | None, everything: bool, verb: str, yes: bool
) -> None:
    """Refuse an empty selection; confirm a wide one unless --yes."""
    if event_id is None and subscription is None and not everything:
        raise ConfigurationError(f"say what to {verb}: an EVENT_ID, --subscription or --all")
    if event_id is None and not yes:
        what = f"every dead letter of {subscription}" if subscription else "every dead letter"
        if not typer.confirm(f"{verb} {what}?"):
            console.print("aborted")
            raise typer.Exit(1)


@dlq_app.command("replay")
def dlq_replay(
    event_id: Annotated[str | None, typer.Argument(help="the dead event's id")] = None,
    subscription: SubscriptionOption = None,
    everything: Annotated[bool, typer.Option("--all", help="every dead letter")] = False,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="do not ask")] = False,
    url: UrlOption = None,
    target: AppOption = None,
    as_json: JsonOption = False,
) -> None:
    """Deliver dead letters again, each to its own subscription (exit 1 if none matched)."""
    _selection(event_id, subscription, everything, "replay", yes)
    _run(
        _ops_bus(url, target),
        lambda bus: _dlq_take(bus, bus.dlq.replay, event_id, subscription, "replayed", as_json),
    )


@dlq_app.command("purge")
def dlq_purge(
    event_id: Annotated[str | None, typer.Argument(help="the dead event's id")] = None,
    subscription: SubscriptionOption = None,
    everything: Annotated[bool, typer.Option("--all", help="every dead letter")] = False,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="do not ask")] = False,
    url: UrlOption = None,
    target: AppOption = None,
    as_json: JsonOption = False,
) -> None:
    """Delete dead letters for good (exit 1 if none matched)."""
    _selection(event_id, subscription, everything, "purge", yes)

    async def purge(event_id: str | None = None, *, subscription: str | None = None) -> int:
        return await bus.dlq.purge(event_id, subscription=subscription)

    bus = _ops_bus(url, target)
    _run(bus, lambda bus: _dlq_take(bus, purge, event_id, subscription, "purged", as_json))


async def _dlq_take(
    bus: EventBus,
    take: Callable[..., Awaitable[Any]],
    event_id: str | None,
    subscription: str | None,
    done: str,
    as_json: bool,
) -> int:
    taken = await take(event_id, subscription=subscription)
    n = taken if isinstance(taken, int) else len(taken)
    if as_json:
        _json({done: n})
    else:
        out.print(f"{done} {n} dead letter(s)")
        for entry in [] if isinstance(taken, int) else taken:
            out.print(f"  {entry.event.event_id} -> {escape(entry.subscription)}")
    return 0 if n else 1


def main() -> None:
    """Entry point of the ``nerve`` console script."""
    try:
        app()
    except ConfigurationError as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise SystemExit(2) from exc
