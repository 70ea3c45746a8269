"""What ``nerve serve`` runs: one app for the buses it is given, on every worker process,
and the server's limits.

uvicorn hands each worker process its configuration, pickled; its app is a
:class:`ServedApps`, a factory that builds the app in each process from the targets and
the URL it carries (no environment variable is written to reach them).
:func:`server_options` are uvicorn's options: the bounded protocol
(:mod:`nerve.http.protocol`), the connection limit, the keep-alive time, and loopback only
when no API key is configured.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Any

from starlette.types import ASGIApp

from nerve.bus import EventBus
from nerve.exceptions import ConfigurationError
from nerve.http.app import create_app, intake_first
from nerve.http.keys import APIKeys
from nerve.http.origins import is_loopback
from nerve.http.protocol import BoundedHttpToolsProtocol
from nerve.http.settings import HTTPSettings
from nerve.loading import load_bus
from nerve.settings import environment_override


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


@dataclass(frozen=True)
class ServedApps:
    """The app factory of ``nerve serve --workers N``: picklable, so uvicorn hands it to
    each worker process it spawns, where calling it builds that process's app.

    Attributes:
        targets: ``module:attribute`` of each bus, as given on the command line.
        url: the transport URL the apps' ``EventBus()`` take (``--url`` or NERVE_URL).
    """

    targets: tuple[str, ...]
    url: str

    def __call__(self) -> ASGIApp:
        with environment_override(url=self.url):  # as the apps are imported
            bus = combine(list(self.targets))
        return intake_first(create_app(bus))


def server_options(settings: HTTPSettings, host: str) -> dict[str, Any]:
    """uvicorn's options for ``settings``: limits, timeouts, the bounded protocol.

    With no API key configured every endpoint is open: only a loopback ``host`` is
    served then, and it is said on stderr at start.

    Raises:
        ConfigurationError: no API key, and ``host`` is not a loopback address.
    """
    if APIKeys(settings).open:
        if not is_loopback(host):
            raise ConfigurationError(
                f"no API key is configured (NERVE_API_KEYS), so every endpoint is open: "
                f"nerve serve listens on loopback only (127.0.0.1, ::1, localhost), not on "
                f"{host}. Set NERVE_API_KEYS to serve other hosts"
            )
        sys.stderr.write(
            f"WARNING: no API key is configured (NERVE_API_KEYS): every endpoint is open to "
            f"whoever reaches {host}; listening on loopback only\n"
        )
    return {
        "http": BoundedHttpToolsProtocol,
        "ws": "none",  # no WebSocket endpoint: no upgrade taken
        "limit_concurrency": settings.max_connections,
        "timeout_keep_alive": settings.keep_alive_timeout,
        "h11_max_incomplete_event_size": settings.max_header_bytes,  # if run with h11
    }
