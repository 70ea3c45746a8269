"""NATS connections, shared by the NATS transport and the NATS store.

One URL names both (``nats://user:password@host:4222?prefix=...``): nerve's options are
split off before the URL reaches nats-py, and the prefix names everything either makes on
the server (the transport's stream and the store's buckets and streams). Once connected,
nats-py reconnects forever: a broker restart never ends a worker or a store.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Awaitable, Callable
from contextlib import suppress
from typing import Final
from urllib.parse import parse_qsl, urlsplit, urlunsplit

import nats.errors
from nats.aio.client import Client

from nerve.exceptions import ConfigurationError

log = logging.getLogger("nerve")

#: The prefix of every name nerve makes on the server, unless the URL's ``prefix`` says.
DEFAULT_PREFIX: Final = "nerve"
#: A name NATS takes as it is: a prefix, a consumer.
SAFE_NAME: Final = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
#: nerve's options in a NATS URL (the transport's; the store reads ``prefix``,
#: ``replicas``, ``publish_timeout`` and ``connect_timeout``). :mod:`nerve.transports.nats.options`
#: says what each means.
OPTIONS: Final = (
    "prefix",
    "ack_wait",
    "retention",
    "dedupe_window",
    "max_deliver",
    "max_ack_pending",
    "replicas",
    "publish_timeout",
    "connect_timeout",
    "store",
)
#: Seconds to reach the server at connect (once connected, nats-py reconnects forever).
DEFAULT_CONNECT_TIMEOUT: Final = 5.0
#: Seconds a publish (and a store's batch of requests) waits for the server's replies.
DEFAULT_PUBLISH_TIMEOUT: Final = 10.0
#: Seconds between two attempts to reconnect (forever).
RECONNECT_WAIT: Final = 0.5


def nats_options(url: str) -> tuple[str, dict[str, str]]:
    """Split a ``nats://`` URL into the server URL for nats-py and nerve's own options.

    Raises:
        ConfigurationError: an option nerve does not know.
    """
    parts = urlsplit(url)
    options = dict(parse_qsl(parts.query, keep_blank_values=True))
    unknown = sorted(set(options) - set(OPTIONS))
    if unknown:
        raise ConfigurationError(
            f"unknown nats URL option(s) {', '.join(unknown)} (known: {', '.join(OPTIONS)})"
        )
    return urlunsplit(parts._replace(path="", query="", fragment="")), options


def nats_where(url: str) -> str:
    """``host:port`` of a NATS URL, for messages (never the user or password)."""
    parts = urlsplit(url)
    return f"{parts.hostname or 'localhost'}:{parts.port or 4222}"


def nats_prefix(options: dict[str, str]) -> str:
    """The URL's ``prefix`` option (default ``nerve``), checked.

    Raises:
        ConfigurationError: the prefix is not 1-64 of ``[A-Za-z0-9_-]``.
    """
    prefix = options.get("prefix") or DEFAULT_PREFIX
    if not SAFE_NAME.match(prefix):
        raise ConfigurationError(
            f"nats URL option prefix={prefix!r}: use 1-64 of [A-Za-z0-9_-] "
            "(it names the stream and the first subject token)"
        )
    return prefix


async def nats_connect(
    server_url: str,
    *,
    where: str,
    connect_timeout: float,
    error: type[Exception],
    unreachable: str = "NATS",
    disconnected: Callable[[], Awaitable[None]] | None = None,
    reconnected: Callable[[], Awaitable[None]] | None = None,
) -> Client:
    """A client connected to ``server_url``, reconnecting forever once connected.

    Args:
        where: ``host:port``, for messages.
        connect_timeout: seconds to reach the server now.
        error: the nerve exception raised when it cannot be reached.
        unreachable: what the message says could not be reached ("NATS").
        disconnected, reconnected: called when the connection drops and comes back.

    Raises:
        error: the server did not answer within ``connect_timeout`` (the message names
            the last error nats-py reported, never the password).
    """
    errors: list[Exception] = []
    connected = False

    async def on_error(exc: Exception) -> None:
        if connected:
            log.warning("NATS at %s: %s", where, exc)
        else:
            errors.append(exc)  # while connecting: reported in the error raised

    client = Client()
    try:
        async with asyncio.timeout(connect_timeout):
            await client.connect(
                server_url,
                name="nerve",
                error_cb=on_error,
                disconnected_cb=disconnected,
                reconnected_cb=reconnected,
                connect_timeout=max(1, int(connect_timeout)),
                reconnect_time_wait=RECONNECT_WAIT,  # type: ignore[arg-type]  # seconds, a float works
                max_reconnect_attempts=-1,  # a broker restart must never end the worker
            )
    except (TimeoutError, nats.errors.Error, OSError) as exc:
        with suppress(Exception):
            await client.close()
        cause = errors[-1] if errors else exc
        raise error(f"cannot reach {unreachable} at {where}: {cause}") from cause
    connected = True
    return client
