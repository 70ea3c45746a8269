"""The options of a ``nats://`` URL and their defaults.

URL options (query string): ``prefix``, ``ack_wait`` (seconds, default 30), ``retention``
(seconds, default a week, 0: forever), ``dedupe_window`` (seconds, default 120),
``max_deliver`` (default unlimited), ``max_ack_pending`` (per subscription, default 1000),
``replicas`` (default 1), ``publish_timeout`` (seconds, default 10), ``connect_timeout``
(seconds, default 5), ``store`` (the store URL a bus uses by default; without it,
``memory://``). A user and password in the URL go to the server. docs/transport-nats.md
says what survives what and how to run it in production.
"""

from __future__ import annotations

from typing import Final
from urllib.parse import parse_qsl, urlsplit, urlunsplit

from nerve.exceptions import ConfigurationError

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

DEFAULT_ACK_WAIT: Final = 30.0
DEFAULT_RETENTION: Final = 7 * 24 * 3600.0
DEFAULT_DEDUPE_WINDOW: Final = 120.0
DEFAULT_MAX_ACK_PENDING: Final = 1000
DEFAULT_PUBLISH_TIMEOUT: Final = 10.0
#: Seconds to reach the server at connect (once connected, nats-py reconnects forever).
DEFAULT_CONNECT_TIMEOUT: Final = 5.0


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
