"""The ``nerve`` command: thin over the public API.

``nerve serve APP`` serves the HTTP app with the app's handlers; ``nerve worker APP`` runs
an app's subscriptions (``APP`` is ``module:attribute`` naming an :class:`~nerve.EventBus`,
as uvicorn names apps); ``nerve doctor [APP]`` checks that its transport and store answer.

The operator commands (``publish``, ``dlq``, ``status``, ``trace``, ``tail``, ``waits``,
``approvals``) need a transport and a store, not handlers: they act on ``--url`` (default
``NERVE_URL``), or on the bus of ``--app module:bus`` when the app configures its store in
code. ``nerve mcp APP`` serves the bus to MCP clients (:mod:`nerve.mcp`). Exit codes: 0
done, 1 not found / failed, 2 usage or configuration error. An error a user can cause is
one line on stderr, never a traceback.

Importing the package or its modules registers nothing: :func:`build_app` makes the Typer
app and adds each command to it.
"""

from __future__ import annotations

from typing import Annotated

import typer
from pydantic import ValidationError

from nerve import __version__
from nerve.cli.apps import doctor, serve, worker
from nerve.cli.commands import Command, Group
from nerve.cli.dlq import build_dlq_app
from nerve.cli.errors import describe
from nerve.cli.events import publish, status, tail, trace
from nerve.cli.mcp_server import mcp
from nerve.cli.output import error
from nerve.cli.waiting import build_approvals_app, waits
from nerve.exceptions import ConfigurationError

__all__ = ["build_app", "main"]


def _print_version(asked: bool) -> None:
    if asked:
        print(f"nerve {__version__}")
        raise typer.Exit(0)


def _root(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_print_version, is_eager=True, help="print nerve's version"
        ),
    ] = False,
) -> None:
    """nerve: event-driven AI agents on an event bus."""


def build_app() -> typer.Typer:
    """The ``nerve`` command's Typer app, with every command (a new app on each call)."""
    app = typer.Typer(cls=Group, no_args_is_help=True)
    app.callback()(_root)
    # running apps
    app.command(cls=Command)(serve)
    app.command(cls=Command)(worker)
    app.command(cls=Command)(doctor)
    # the operator commands
    app.add_typer(build_dlq_app(), name="dlq")
    app.command(cls=Command)(publish)
    app.command(cls=Command)(status)
    app.command(cls=Command)(trace)
    app.command(cls=Command)(tail)
    app.command(cls=Command)(waits)
    app.add_typer(build_approvals_app(), name="approvals")
    # for assistants
    app.command(cls=Command)(mcp)
    return app


def main() -> None:
    """Entry point of the ``nerve`` console script."""
    try:
        build_app()()
    except ConfigurationError as exc:
        error(str(exc))
        raise SystemExit(2) from exc
    except ValidationError as exc:  # NERVE_* settings (read as an app or a bus is made)
        error(describe(exc))
        raise SystemExit(2) from exc
