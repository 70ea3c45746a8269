"""The commands on events, for operators: ``publish``, ``status``, ``trace``, ``tail``.

They need a transport and a store, not handlers: they act on ``--url`` (default
``NERVE_URL``), or on the bus of ``--app module:bus`` when the app configures its store in
code.
"""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Annotated, Any

import typer
from pydantic import ValidationError
from rich.markup import escape
from rich.progress import Progress
from rich.table import Table
from rich.tree import Tree

from nerve.bus import EventBus
from nerve.cli.operator_bus import operator_bus, run_on
from nerve.cli.options import AppOption, JSONOption, URLOption, parse_json
from nerve.cli.output import console, out, print_json, time_of_day
from nerve.events import Event
from nerve.exceptions import ConfigurationError
from nerve.records import TraceNode
from nerve.urls import redact


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
    url: URLOption = None,
    target: AppOption = None,
    as_json: JSONOption = False,
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
        events = [Event(event_type=event_type, payload=parse_json(payload, "--payload"), **common)]
    bus = operator_bus(url, target)
    run_on(bus, lambda bus: _publish(bus, events, as_json=as_json, bar=stdin))


def _event_of_line(line: str, event_type: str | None, common: dict[str, Any], n: int) -> Event:
    value = parse_json(line, f"line {n}")
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
                    print_json({"event_id": event.event_id, "correlation_id": event.correlation_id})
                elif not bar:
                    out.print(f"published {escape(event.event_type)} {event.event_id}")
    if bar and not as_json:
        out.print(f"published {len(events)} events")
    return 0


#: ``nerve publish --stdin`` hands the transport this many events at a time.
PUBLISH_BATCH = 500


def status(
    event_id: Annotated[str, typer.Argument(help="the event's id")],
    url: URLOption = None,
    target: AppOption = None,
    as_json: JSONOption = False,
) -> None:
    """Where an event stands with each subscription (exit 1 if it is unknown)."""
    run_on(operator_bus(url, target), lambda bus: _status(bus, event_id, as_json))


async def _status(bus: EventBus, event_id: str, as_json: bool) -> int:
    found = await bus.status(event_id)
    if as_json:
        print_json(
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


def trace(
    correlation_id: Annotated[
        str, typer.Argument(help="the chain's correlation id (or an event id)")
    ],
    url: URLOption = None,
    target: AppOption = None,
    as_json: JSONOption = False,
) -> None:
    """The chain of events and handler outcomes as a tree (exit 1 if none is logged)."""
    run_on(operator_bus(url, target), lambda bus: _trace(bus, correlation_id, as_json))


async def _trace(bus: EventBus, correlation_id: str, as_json: bool) -> int:
    nodes = await bus.history.trace(correlation_id)
    if not nodes:  # an event id: its chain
        record = await bus.history.event(correlation_id)
        if record is not None:
            correlation_id = record.event.correlation_id
            nodes = await bus.history.trace(correlation_id)
    if as_json:
        print_json([node.model_dump(mode="json") for node in nodes])
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
        f"[dim]published {time_of_day(record.published_at)}[/dim]"
    )
    for outcome in record.outcomes:
        colour = _COLOURS.get(outcome.state, "white")
        line = (
            f"[{colour}]{outcome.state}[/] {escape(outcome.subscription)} "
            f"[dim]attempt {outcome.attempt}, {outcome.seconds * 1000:.1f} ms, "
            f"ended {time_of_day(outcome.ended_at)}[/dim]"
        )
        if outcome.error_type:
            line += f" {escape(outcome.error_type)}: {escape(outcome.error_message or '')}"
        branch.add(line)
    for child in node.children:
        _add_node(branch, child)


def tail(
    pattern: Annotated[
        str | None, typer.Argument(help="only event types matching it (* one segment, # any)")
    ] = None,
    url: URLOption = None,
    target: AppOption = None,
    as_json: JSONOption = False,
    last: Annotated[int, typer.Option(min=0, help="first show this many recent events")] = 0,
    count: Annotated[
        int | None, typer.Option(min=1, help="stop after this many events (exit 1 if not seen)")
    ] = None,
    timeout: Annotated[float | None, typer.Option(min=0, help="stop after these seconds")] = None,
    interval: Annotated[float, typer.Option(min=0.01, help="seconds between polls")] = 0.2,
) -> None:
    """Print events as they are published (until Ctrl-C, --count or --timeout)."""
    bus = operator_bus(url, target)
    try:
        run_on(bus, lambda bus: _tail(bus, pattern, as_json, last, count, timeout, interval))
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
                print_json(record.model_dump(mode="json"))
            else:
                event = record.event
                out.print(
                    f"{time_of_day(record.published_at)} [bold]{escape(event.event_type)}[/bold] "
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
