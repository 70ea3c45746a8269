"""Redis connections, shared by the Redis transport and the Redis store.

One URL names both (``redis://host:port/db?prefix=...``); nerve's own options are split
off before the URL reaches redis-py.
"""

from __future__ import annotations

from typing import Any, Final
from urllib.parse import urlsplit

from redis.asyncio import BlockingConnectionPool, Redis

from nerve.urls import split_options

#: The prefix of every key nerve writes, unless the URL's ``prefix`` option says otherwise.
DEFAULT_PREFIX: Final = "nerve"
#: nerve's options in a Redis URL (the transport's; the store reads ``prefix``).
_OPTIONS = ("prefix", "block_ms", "lease", "claim_interval", "retention")


def redis_options(url: str) -> tuple[str, dict[str, str]]:
    """Split a ``redis://`` URL into the URL for redis-py and nerve's own options."""
    return split_options(url, _OPTIONS)


def redis_where(url: str) -> str:
    """``host:port/db`` of a Redis URL, for messages (never the password)."""
    parts = urlsplit(url)
    return f"{parts.hostname or 'localhost'}:{parts.port or 6379}{parts.path or '/0'}"


#: Connections per client (``max_connections`` in the URL overrides it), and seconds a
#: command waits for one when all are busy.
MAX_CONNECTIONS: Final = 500
POOL_TIMEOUT: Final = 20.0


def redis_client(url: str, **options: Any) -> Redis:
    """A client whose pool waits for a free connection instead of failing at its limit.

    ``protocol=2``: the reply shapes nerve parses (redis-py 8 defaults to RESP3).
    """
    pool = BlockingConnectionPool.from_url(
        url,
        max_connections=MAX_CONNECTIONS,
        timeout=POOL_TIMEOUT,
        decode_responses=True,
        protocol=2,
        socket_connect_timeout=5.0,
        **options,
    )
    return Redis.from_pool(pool)
