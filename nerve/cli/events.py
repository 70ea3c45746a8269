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
from rich.progress import Progress
from rich.table import Column, Table
from rich.text import Text
from rich.tree import Tree

from nerve.bus import EventBus
from nerve.cli.errors import describe
from nerve.cli.operator_bus import operator_bus, run_on
from nerve.cli.options import (
    AppOption,
    JSONLinesOption,
    JSONObjectOption,
    URLOption,
    parse_json,
)
from nerve.cli.output import print_json, printable, show, stderr, stdout, time_of_day
from nerve.events import Event
from nerve.exceptions import ConfigurationError, SubscriptionError
from nerve.records import TraceNode
from nerve.routing import validate_pattern
from nerve.urls import redact


def publish(
    event_type: Annotated[
        str | None,
        typer.Argument(metavar="EVENT_TYPE", help="the event type (with --stdin: of every line)"),
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
    as_json: JSONLinesOption = False,
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
        value = parse_json(payload, "--payload")
        events = [_event({"event_type": event_type, "payload": value, **common}, _OPTIONS)]
    bus = operator_bus(url, target)
    run_on(bus, lambda bus: _publish(bus, events, as_json=as_json, bar=stdin))


#: The event's fields as ``nerve publish`` takes them.
_OPTIONS = {
    "event_type": "EVENT_TYPE",
    "payload": "--payload",
    "correlation_id": "--correlation-id",
    "source": "--source",
}


def _event(fields: dict[str, Any], names: dict[str, str], where: str = "") -> Event:
    """The event of ``fields``; a ConfigurationError naming each invalid one if it is not."""
    try:
        return Event.model_validate(fields)
    except ValidationError as exc:
        raise ConfigurationError(f"{where}{describe(exc, names)}") from None


def _event_of_line(line: str, event_type: str | None, common: dict[str, Any], n: int) -> Event:
    value = parse_json(line, f"line {n}")
    names = {k: v for k, v in _OPTIONS.items() if k in common}  # the rest is the line's
    if event_type is not None:
        names["event_type"] = "EVENT_TYPE"
        return _event({"event_type": event_type, "payload": value, **common}, names, f"line {n}: ")
    if not isinstance(value, dict):
        raise ConfigurationError(f"line {n}: expected an event object with event_type")
    return _event({**common, **value}, names, f"line {n}: ")


async def _publish(bus: EventBus, events: list[Event], *, as_json: bool, bar: bool) -> int:
    out = stdout()
    with Progress(console=stderr(), disable=not bar, transient=True) as progress:
        task = progress.add_task("publishing", total=len(events))
        for start in range(0, len(events), PUBLISH_BATCH):
            sent = await bus.publish_many(events[start : start + PUBLISH_BATCH])
            progress.advance(task, len(sent))
            for event in sent:
                if as_json:
                    print_json({"event_id": event.event_id, "correlation_id": event.correlation_id})
                elif not bar:
                    out.print(f"published {event.event_type} {event.event_id}")
    if bar and not as_json:
        out.print(f"published {len(events)} events")
    return 0


#: ``nerve publish --stdin`` hands the transport this many events at a time.
PUBLISH_BATCH = 500


def status(
    event_id: Annotated[str, typer.Argument(metavar="EVENT_ID", help="the event's id")],
    url: URLOption = None,
    target: AppOption = None,
    as_json: JSONObjectOption = False,
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
                "reasons": found.reasons,
            }
        )
    elif found.event_type is None:
        stderr().print(f"no event {event_id} (never published, or older than the window)")
    else:
        out = stdout()
        out.print(f"{found.event_type} {event_id}")  # a line of its own: never cropped
        columns = [Column("subscription", overflow="fold"), Column("state")]
        if found.reasons:  # why a deferred run waits (throttled, debounced, a busy key)
            columns.append(Column("why", overflow="fold"))
        table = Table(*columns)
        for name, state in sorted(found.subscriptions.items()):
            cells: list[str | Text] = [
                name,
                Text(str(state), style=_COLOURS.get(str(state), "white")),
            ]
            if found.reasons:
                cells.append(Text(printable(found.reasons.get(name, ""))))
            table.add_row(*cells)
        show(table)
    return 0 if found.event_type is not None else 1


_COLOURS = {
    "done": "green",
    "pending": "yellow",
    "failed": "yellow",
    "retrying": "yellow",
    "dead_lettered": "red",
    "deferred": "cyan",
}


def trace(
    correlation_id: Annotated[
        str,
        typer.Argument(
            metavar="CORRELATION_ID", help="the chain's correlation id (or an event id)"
        ),
    ],
    url: URLOption = None,
    target: AppOption = None,
    as_json: Annotated[
        bool,
        typer.Option(
            "--json", help="print the chain as one JSON array of trees (record, children)"
        ),
    ] = False,
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
        stderr().print(f"no events of {correlation_id} in the event log")
    else:
        tree = Tree(f"chain {correlation_id}")
        for node in nodes:
            _add_node(tree, node)
        show(tree)
    return 0 if nodes else 1


def _add_node(parent: Tree, node: TraceNode) -> None:
    record = node.record
    event = record.event
    branch = parent.add(
        Text.assemble(
            (event.event_type, "bold"),
            f" {event.event_id} ",
            (f"published {time_of_day(record.published_at)}", "dim"),
        )
    )
    for outcome in record.outcomes:
        line = Text.assemble(
            (outcome.state, _COLOURS.get(outcome.state, "white")),
            f" {outcome.subscription} ",
            (
                f"attempt {outcome.attempt}, {outcome.seconds * 1000:.1f} ms, "
                f"ended {time_of_day(outcome.ended_at)}",
                "dim",
            ),
        )
        if outcome.error_type:
            line.append(printable(f" {outcome.error_type}: {outcome.error_message or ''}"))
        branch.add(line)
    for child in node.children:
        _add_node(branch, child)


def tail(
    pattern: Annotated[
        str | None,
        typer.Argument(
            metavar="PATTERN", help="only event types matching it (* one segment, # any)"
        ),
    ] = None,
    url: URLOption = None,
    target: AppOption = None,
    as_json: JSONLinesOption = False,
    last: Annotated[int, typer.Option(min=0, help="first show this many recent events")] = 0,
    count: Annotated[
        int | None, typer.Option(min=1, help="stop after this many events (exit 1 if not seen)")
    ] = None,
    timeout: Annotated[float | None, typer.Option(min=0, help="stop after these seconds")] = None,
    interval: Annotated[float, typer.Option(min=0.01, help="seconds between polls")] = 0.2,
) -> None:
    """Print events as they are published (until Ctrl-C, --count or --timeout)."""
    if pattern is not None:
        try:
            validate_pattern(pattern)  # a typo would match nothing, silently
        except SubscriptionError as exc:
            raise ConfigurationError(str(exc)) from None
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
    out = stdout()
    if out.is_terminal and not as_json:
        stderr().print(f"following {redact(bus.url)} (Ctrl-C to stop)")
    while True:
        for record in records:
            if as_json:
                print_json(record.model_dump(mode="json"))
            else:
                event = record.event
                out.print(
                    Text.assemble(
                        f"{time_of_day(record.published_at)} ",
                        (event.event_type, "bold"),
                        f" {event.event_id} ",
                        (f"chain {event.correlation_id}", "dim"),
                        f" {json.dumps(event.payload, default=str)}",
                    )
                )
            sys.stdout.flush()
            seen += 1
            if count is not None and seen >= count:
                return 0
        if deadline is not None and loop.time() >= deadline:
            return 1 if count is not None else 0
        await asyncio.sleep(interval)
        records, cursor = await bus.history.recent(cursor, pattern=pattern, limit=500)
