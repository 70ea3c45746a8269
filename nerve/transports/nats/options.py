"""The defaults of a ``nats://`` URL's options (splitting and checking the URL is
:mod:`nerve.connections.nats`'s, shared with the NATS store).

URL options (query string): ``prefix``, ``ack_wait`` (seconds, default 30), ``retention``
(seconds, default a week, 0: forever), ``dedupe_window`` (seconds, default 120),
``max_deliver`` (default unlimited), ``max_ack_pending`` (per subscription, default 1000),
``replicas`` (default 1; the NATS store's buckets and streams take it too),
``publish_timeout`` (seconds, default 10), ``connect_timeout`` (seconds, default 5),
``store`` (the store URL a bus uses by default; without it, the NATS store on the same
server and prefix, :mod:`nerve.stores.nats`). A user and password in the URL go to the
server. docs/transport-nats.md says what survives what and how to run it in production.
"""

from __future__ import annotations

from typing import Final

DEFAULT_ACK_WAIT: Final = 30.0
DEFAULT_RETENTION: Final = 7 * 24 * 3600.0
DEFAULT_DEDUPE_WINDOW: Final = 120.0
DEFAULT_MAX_ACK_PENDING: Final = 1000
