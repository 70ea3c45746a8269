"""The ``nerve`` command: thin over the public API.

``nerve serve APP`` serves the HTTP app with the app's handlers; ``nerve worker APP`` runs
an app's subscriptions (``APP`` is ``module:attribute`` naming an :class:`~nerve.EventBus`,
as uvicorn names apps); ``nerve doctor APP`` checks that its transport and store answer.

The operator commands (``publish``, ``dlq``, ``status``, ``trace``, ``tail``) need a
transport and a store, not handlers: they act on ``--url`` (default ``NERVE_URL``), or on
the bus of ``--app module:bus`` when the app configures its store in code. Exit codes:
0 done, 1 not found / failed, 2 usage or configuration error.
"""

from __future__ import annotations

from nerve.cli import apps, dlq, ops  # noqa: F401  # each module registers its commands (in order)
from nerve.cli.base import app, console
from nerve.exceptions import ConfigurationError

__all__ = ["app", "main"]


def main() -> None:
    """Entry point of the ``nerve`` console script."""
    try:
        app()
    except ConfigurationError as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise SystemExit(2) from exc
