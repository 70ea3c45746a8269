"""``nerve mcp APP``: the app's bus as an MCP server, for a person's assistant."""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import Awaitable
from typing import Annotated

import typer

from nerve.bus import EventBus
from nerve.cli.operator_bus import bus_of
from nerve.cli.options import AppArg, URLOption
from nerve.cli.output import stderr
from nerve.exceptions import ConfigurationError
from nerve.urls import redact


def mcp(
    target: AppArg,
    http: Annotated[
        str | None,
        typer.Option(
            metavar="HOST:PORT",
            help="serve streamable HTTP at http://HOST:PORT/mcp (default: stdio)",
        ),
    ] = None,
    url: URLOption = None,
) -> None:
    """Serve the bus to MCP clients: publish, status, trace, dead letters, approvals.

    Over stdio (the client starts this command) the caller's key is NERVE_MCP_KEY; over
    --http it is the request's bearer token. Keys are the HTTP app's: NERVE_API_KEYS for
    publish and status, NERVE_ADMIN_API_KEYS for the rest.
    """
    try:
        from nerve.mcp.server import build_server, http_app
    except ImportError as exc:  # the SDK is an extra
        raise ConfigurationError(
            f"nerve mcp needs the mcp SDK: pip install 'nerve[mcp]' ({exc})"
        ) from None
    from nerve.http.keys import APIKeys
    from nerve.http.settings import HTTPSettings

    bus = bus_of(url, target)
    keys = APIKeys(HTTPSettings())
    server = build_server(bus, keys)
    if http is None:  # stdout is the protocol's: nothing else is printed on it
        asyncio.run(_until_done(bus, server.run_stdio_async()))
        return
    import uvicorn

    host, _, port = http.rpartition(":")
    if not host or not port.isdigit():
        raise ConfigurationError(f"--http takes HOST:PORT, not {http!r}")
    host = host.strip("[]")
    if keys.open and not _loopback(host):
        raise ConfigurationError(
            f"no API key is set: serve on a loopback address, or set NERVE_API_KEYS ({host})"
        )
    stderr().print(f"nerve mcp: {redact(bus.url)} at http://{http}/mcp")
    config = uvicorn.Config(http_app(server, keys), host=host, port=int(port), log_level="warning")
    asyncio.run(_until_done(bus, uvicorn.Server(config).serve()))


async def _until_done(bus: EventBus, serving: Awaitable[None]) -> None:
    """Serve until the client goes (stdio) or a signal (HTTP), then close the bus."""
    try:
        await serving
    finally:
        await bus.stop()


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
