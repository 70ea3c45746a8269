"""What ``nerve serve`` runs: one app for the buses it is given, on every worker process.

uvicorn starts each worker process from an import string, so the targets travel in the
environment (``NERVE_SERVE_APPS``) and :func:`app_from_env` builds the app in each one.
"""

from __future__ import annotations

import os

from starlette.types import ASGIApp

from nerve.bus import EventBus
from nerve.exceptions import ConfigurationError
from nerve.http.app import create_app, intake_first
from nerve.loading import load_bus

#: The environment variable carrying ``nerve serve``'s targets to its worker processes.
APPS_VARIABLE = "NERVE_SERVE_APPS"


def combine(targets: list[str]) -> EventBus:
    """The bus of the first target, with the subscriptions of the others included."""
    if not targets:
        raise ConfigurationError("name at least one app: module:bus")
    buses = [load_bus(target) for target in targets]
    host = buses[0]
    for other in buses[1:]:
        if other is not host:
            host.include(other)
    return host


def app_from_env() -> ASGIApp:
    """The app for the targets in ``NERVE_SERVE_APPS`` (comma-separated), intake first."""
    targets = [t for t in os.environ.get(APPS_VARIABLE, "").split(",") if t]
    return intake_first(create_app(combine(targets)))
