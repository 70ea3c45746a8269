"""The ``nerve`` command: thin over the public API.

``nerve serve APP`` serves the HTTP app with the app's handlers; ``nerve worker APP`` runs
an app's subscriptions (``APP`` is ``module:attribute`` naming an :class:`~nerve.EventBus`,
as uvicorn names apps); ``nerve doctor APP`` checks that its transport and store answer.

The operator commands (``publish``, ``dlq``, ``status``, ``trace``, ``tail``) need a
transport and a store, not handlers: they act on ``--url`` (default ``NERVE_URL``), or on
the bus of ``--app module:bus`` when the app configures its store in code. Exit codes:
0 done, 1 not found / failed, 2 usage or configuration error.

Importing the package or its modules registers nothing: :func:`build_app` makes the Typer
app and adds each command to it.
"""

from __future__ import annotations

import typer

from nerve.cli.apps import doctor, serve, worker
from nerve.cli.dlq import build_dlq_app
from nerve.cli.events import publish, status, tail, trace
from nerve.cli.output import console
from nerve.exceptions import ConfigurationError

__all__ = ["build_app", "main"]


def build_app() -> typer.Typer:
    """The ``nerve`` command's Typer app, with every command (a new app on each call)."""
    app = typer.Typer(help="nerve: event-driven AI agents on an event bus.", no_args_is_help=True)
    # running apps
    app.command()(serve)
    app.command()(worker)
    app.command()(doctor)
    # the operator commands
    app.add_typer(build_dlq_app(), name="dlq")
    app.command()(publish)
    app.command()(status)
    app.command()(trace)
    app.command()(tail)
    return app


def main() -> None:
    """Entry point of the ``nerve`` console script."""
    try:
        build_app()()
    except ConfigurationError as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise SystemExit(2) from exc
