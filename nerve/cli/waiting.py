"""``nerve waits`` and ``nerve approvals list|approve|reject``: runs that wait, and the
approvals people decide, from the command line.

A decision is published as ``approval.decided`` (:func:`nerve.approvals.decide`): the
waiting run resumes on whichever worker takes it, so no worker need run here. An approval
that is not pending (decided already, timed out, cancelled, never asked) is an error, exit
1: the first decision stands.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Annotated, Any

import typer
from rich.table import Column, Table

from nerve.approvals import decide, pending_approvals
from nerve.bus import EventBus
from nerve.cli.commands import Command, Group
from nerve.cli.operator_bus import operator_bus, run_on
from nerve.cli.options import AppOption, JSONLinesOption, JSONObjectOption, URLOption
from nerve.cli.output import id_column, print_json, printable, show, stderr, stdout
from nerve.records import WaitRecord

LimitOption = Annotated[int, typer.Option(min=1, help="at most this many, oldest first")]
ApprovalIdArg = Annotated[
    str, typer.Argument(metavar="APPROVAL_ID", help="the approval's id (nerve approvals list)")
]
ByOption = Annotated[str | None, typer.Option("--by", help="who decides (kept in the decision)")]
CommentOption = Annotated[str | None, typer.Option("--comment", "-m", help="why")]


def waits(
    subscription: Annotated[
        str | None, typer.Option("--subscription", "-s", help="only this subscription's")
    ] = None,
    event_type: Annotated[
        str | None, typer.Option("--event-type", "-t", help="only waits for this event type")
    ] = None,
    limit: LimitOption = 100,
    url: URLOption = None,
    target: AppOption = None,
    as_json: JSONLinesOption = False,
) -> None:
    """Runs suspended in wait_for, oldest first: what for, since and until when."""
    run_on(
        operator_bus(url, target),
        lambda bus: list_waits(bus, subscription, event_type, limit, as_json),
    )


async def list_waits(
    bus: EventBus, subscription: str | None, event_type: str | None, limit: int, as_json: bool
) -> int:
    found = await bus.waits(subscription=subscription, event_type=event_type, limit=limit)
    if as_json:
        for wait in found:
            print_json(_wait_json(wait))
        return 0
    table = Table(
        id_column("event id", [w.event.event_id for w in found]),
        Column("subscription", overflow="fold"),
        Column("wait", overflow="fold"),
        Column("for", overflow="fold"),
        Column("match", overflow="fold"),
        "since",
        "until",
    )
    for wait in found:
        table.add_row(
            wait.event.event_id,
            wait.subscription,
            wait.name,
            wait.event_type,
            _json(wait.match),
            _time(wait.since),
            "never" if wait.deadline is None else _time(wait.deadline),
        )
    show(table)
    stderr().print(f"{len(found)} waiting run(s)")
    return 0


def _wait_json(wait: WaitRecord) -> dict[str, Any]:
    return {
        "subscription": wait.subscription,
        "event_id": wait.event.event_id,
        "event_type": wait.event.event_type,
        "name": wait.name,
        "awaited": wait.event_type,
        "match": wait.match,
        "since": _time(wait.since),
        "deadline": None if wait.deadline is None else _time(wait.deadline),
        "info": wait.info,
    }


def approvals_list(
    limit: LimitOption = 100,
    url: URLOption = None,
    target: AppOption = None,
    as_json: JSONLinesOption = False,
) -> None:
    """Pending approvals, oldest first, each with what is to be decided."""
    run_on(operator_bus(url, target), lambda bus: list_approvals(bus, limit, as_json))


async def list_approvals(bus: EventBus, limit: int, as_json: bool) -> int:
    found = await pending_approvals(bus, limit=limit)
    if as_json:
        for item in found:
            print_json(item.model_dump(mode="json"))
        return 0
    table = Table(
        id_column("approval id", [a.approval_id for a in found]),
        Column("name", overflow="fold"),
        Column("subscription", overflow="fold"),
        "asked",
        "until",
        Column("payload", overflow="fold"),
    )
    for item in found:
        table.add_row(
            item.approval_id,
            item.name,
            item.subscription,
            _time(item.requested_at),
            "never" if item.expires_at is None else _time(item.expires_at),
            _json(item.payload),
        )
    show(table)
    stderr().print(f"{len(found)} pending approval(s)")
    return 0


def approvals_approve(
    approval_id: ApprovalIdArg,
    by: ByOption = None,
    comment: CommentOption = None,
    url: URLOption = None,
    target: AppOption = None,
    as_json: JSONObjectOption = False,
) -> None:
    """Approve a pending approval: its run resumes approved (exit 1 if not pending)."""
    run_on(
        operator_bus(url, target),
        lambda bus: decide_approval(bus, approval_id, True, by, comment, as_json),
    )


def approvals_reject(
    approval_id: ApprovalIdArg,
    by: ByOption = None,
    comment: CommentOption = None,
    url: URLOption = None,
    target: AppOption = None,
    as_json: JSONObjectOption = False,
) -> None:
    """Reject a pending approval: its run resumes rejected (exit 1 if not pending)."""
    run_on(
        operator_bus(url, target),
        lambda bus: decide_approval(bus, approval_id, False, by, comment, as_json),
    )


async def decide_approval(
    bus: EventBus,
    approval_id: str,
    approved: bool,
    by: str | None,
    comment: str | None,
    as_json: bool,
) -> int:
    """Decide; :class:`~nerve.approvals.ApprovalClosed` is left to :func:`run_on` (exit 1)."""
    decision = await decide(bus, approval_id, approved=approved, by=by, comment=comment)
    if as_json:
        print_json(decision.model_dump(mode="json"))
    else:
        who = f" by {decision.by}" if decision.by else ""
        stdout().print(printable(f"{decision.status} {approval_id}{who}"))
    return 0


def _time(at: datetime | float) -> str:
    """An ISO time in UTC, to the second."""
    when = at if isinstance(at, datetime) else datetime.fromtimestamp(at, UTC)
    return when.astimezone(UTC).isoformat(timespec="seconds")


def _json(value: Any) -> str:
    return printable(json.dumps(value, default=str, ensure_ascii=False))


def build_approvals_app() -> typer.Typer:
    """The ``nerve approvals`` command group: ``list``, ``approve``, ``reject``."""
    group = typer.Typer(
        cls=Group,
        help="Approvals runs wait for: list, approve, reject.",
        no_args_is_help=True,
    )
    group.command("list", cls=Command)(approvals_list)
    group.command("approve", cls=Command)(approvals_approve)
    group.command("reject", cls=Command)(approvals_reject)
    return group
