"""``nerve dlq list|show|replay|purge``: the dead letter queue from the command line."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Annotated, Any

import typer
from rich.table import Column, Table
from rich.text import Text

from nerve.bus import EventBus
from nerve.cli.commands import Command, Group
from nerve.cli.operator_bus import operator_bus, run_on
from nerve.cli.options import AppOption, JSONLinesOption, JSONObjectOption, URLOption
from nerve.cli.output import id_column, print_json, printable, show, stderr, stdout
from nerve.exceptions import ConfigurationError
from nerve.records import DeadLetter

SubscriptionOption = Annotated[
    str | None, typer.Option("--subscription", "-s", help="only this subscription's")
]
EventIdArg = Annotated[str | None, typer.Argument(metavar="EVENT_ID", help="the dead event's id")]
AllOption = Annotated[bool, typer.Option("--all", help="every dead letter")]
YesOption = Annotated[bool, typer.Option("--yes", "-y", help="do not ask")]


def dlq_list(
    subscription: SubscriptionOption = None,
    limit: Annotated[int, typer.Option(min=1, help="at most this many, newest first")] = 100,
    url: URLOption = None,
    target: AppOption = None,
    as_json: JSONLinesOption = False,
) -> None:
    """Dead letters, newest first."""
    run_on(operator_bus(url, target), lambda bus: _dlq_list(bus, subscription, limit, as_json))


async def _dlq_list(bus: EventBus, subscription: str | None, limit: int, as_json: bool) -> int:
    entries = await bus.dlq.list(subscription=subscription, limit=limit)
    if as_json:
        for entry in entries:
            print_json(entry.model_dump(mode="json"))
        return 0
    table = Table(
        id_column("event id", [entry.event.event_id for entry in entries]),
        Column("type", overflow="fold"),
        Column("subscription", overflow="fold"),
        "attempts",
        "dead at",
        Column("last error", overflow="fold"),
    )
    for entry in entries:
        last = entry.last_error
        table.add_row(
            entry.event.event_id,
            entry.event.event_type,
            entry.subscription,
            str(entry.attempts),
            entry.dead_at[:23],
            printable(f"{last.type}: {last.message}") if last else "",
        )
    show(table)
    stderr().print(f"{len(entries)} dead letter(s)")
    return 0


def dlq_show(
    event_id: Annotated[str, typer.Argument(metavar="EVENT_ID", help="the dead event's id")],
    subscription: SubscriptionOption = None,
    url: URLOption = None,
    target: AppOption = None,
    as_json: JSONLinesOption = False,
) -> None:
    """One event's dead letters: the event and every attempt's error (exit 1 if none)."""
    run_on(operator_bus(url, target), lambda bus: _dlq_show(bus, event_id, subscription, as_json))


async def _dlq_show(bus: EventBus, event_id: str, subscription: str | None, as_json: bool) -> int:
    entries = await bus.dlq.list(event_id=event_id, subscription=subscription, limit=None)
    for entry in entries:
        if as_json:
            print_json(entry.model_dump(mode="json"))
        else:
            _show(entry)
    if not entries:
        stderr().print(f"no dead letter of {event_id}")
    return 0 if entries else 1


def _show(entry: DeadLetter) -> None:
    out = stdout()
    event = entry.event
    out.print(
        Text.assemble(
            (event.event_type, "bold"),
            f" {event.event_id} in ",
            (entry.subscription, "bold"),
            f": dead at {entry.dead_at}, {entry.attempts} attempt(s)\n",
            f"chain {event.correlation_id}, caused by {event.causation_id or '-'}\n",
            f"payload {json.dumps(event.payload, default=str)}",
        )
    )
    for error in entry.errors:
        out.print(
            Text.assemble(
                f"  attempt {error.attempt} at {error.time}: ",
                (error.type, "red"),
                printable(f": {error.message}"),  # an attempt a line
            )
        )
    if entry.last_error is not None:
        out.print(entry.last_error.traceback.rstrip(), style="dim")


def _selection(
    event_id: str | None, subscription: str | None, everything: bool, verb: str, yes: bool
) -> None:
    """Refuse an empty selection; confirm a wide one unless --yes."""
    if event_id is None and subscription is None and not everything:
        raise ConfigurationError(f"say what to {verb}: an EVENT_ID, --subscription or --all")
    if event_id is None and not yes:
        what = f"every dead letter of {subscription}" if subscription else "every dead letter"
        if not typer.confirm(f"{verb} {what}?"):
            stderr().print("aborted")
            raise typer.Exit(1)


def dlq_replay(
    event_id: EventIdArg = None,
    subscription: SubscriptionOption = None,
    everything: AllOption = False,
    yes: YesOption = False,
    url: URLOption = None,
    target: AppOption = None,
    as_json: JSONObjectOption = False,
) -> None:
    """Deliver dead letters again, each to its own subscription (exit 1 if none matched)."""
    _selection(event_id, subscription, everything, "replay", yes)
    run_on(
        operator_bus(url, target),
        lambda bus: _dlq_take(bus, bus.dlq.replay, event_id, subscription, "replayed", as_json),
    )


def dlq_purge(
    event_id: EventIdArg = None,
    subscription: SubscriptionOption = None,
    everything: AllOption = False,
    yes: YesOption = False,
    url: URLOption = None,
    target: AppOption = None,
    as_json: JSONObjectOption = False,
) -> None:
    """Delete dead letters for good (exit 1 if none matched)."""
    _selection(event_id, subscription, everything, "purge", yes)
    run_on(
        operator_bus(url, target),
        lambda bus: _dlq_take(bus, bus.dlq.purge, event_id, subscription, "purged", as_json),
    )


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
        print_json({done: n})
    else:
        out = stdout()
        out.print(f"{done} {n} dead letter(s)")
        for entry in [] if isinstance(taken, int) else taken:
            out.print(f"  {entry.event.event_id} -> {entry.subscription}")
    return 0 if n else 1


def build_dlq_app() -> typer.Typer:
    """The ``nerve dlq`` command group: ``list``, ``show``, ``replay``, ``purge``."""
    group = typer.Typer(
        cls=Group, help="The dead letter queue: list, show, replay, purge.", no_args_is_help=True
    )
    group.command("list", cls=Command)(dlq_list)
    group.command("show", cls=Command)(dlq_show)
    group.command("replay", cls=Command)(dlq_replay)
    group.command("purge", cls=Command)(dlq_purge)
    return group
