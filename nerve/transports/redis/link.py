"""What the parts of the Redis transport share: where the server is, the names this
consumer writes under, and, while connected, the client and its scripts."""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

from redis.asyncio import Redis
from redis.asyncio.client import Pipeline
from redis.exceptions import RedisError

from nerve.connections.redis import redis_where
from nerve.exceptions import TransportError
from nerve.transports.redis.keys import DELAYED_KEY, DIRECT_KEY, EVENTS_KEY
from nerve.transports.redis.scripts import Scripts


class Link:
    """One transport's hold on Redis, handed to the parts that talk to it.

    Args:
        url: the transport's URL (only its address is kept, for messages).
        prefix: prefix of every key.
        check_open: raises :class:`nerve.BusClosed` once the transport is closing; asked
            before saying "not connected".
    """

    def __init__(self, url: str, prefix: str, check_open: Callable[[], None]) -> None:
        self.where = redis_where(url)
        self.prefix = prefix
        self.events_key = EVENTS_KEY.format(prefix=prefix)
        #: This transport instance's consumer name in every group (host-pid-random).
        self.consumer = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self._check_open = check_open
        self._redis: Redis | None = None
        self._scripts: Scripts | None = None

    def direct_key(self, subscription: str) -> str:
        """The subscription's direct stream (retries and replays)."""
        return DIRECT_KEY.format(prefix=self.prefix, name=subscription)

    def delayed_key(self, subscription: str) -> str:
        """The subscription's delayed set (retries waiting for their delay)."""
        return DELAYED_KEY.format(prefix=self.prefix, name=subscription)

    def acknowledge(self, pipe: Pipeline, stream: str, group: str, ids: Sequence[str]) -> None:
        """Queue the acknowledgement of entries of ``stream`` on ``pipe``. The events
        stream keeps them (every group reads it, :meth:`RedisTransport.trim` deletes
        them); a direct stream deletes them at once (only this group reads it)."""
        pipe.xack(stream, group, *ids)
        if stream != self.events_key:
            pipe.xdel(stream, *ids)

    # the connection

    @property
    def connected(self) -> bool:
        return self._redis is not None

    def attach(self, client: Redis) -> None:
        """Use ``client`` (connected) from now on, with the scripts registered on it."""
        self._redis = client
        self._scripts = Scripts.register(client)

    def detach(self) -> Redis | None:
        """Stop using the client and return it (None if there was none) for its last
        commands; the scripts stay callable with it (``client=``)."""
        client, self._redis = self._redis, None
        return client

    def client(self) -> Redis:
        """The client, or :class:`nerve.BusClosed` / :class:`nerve.TransportError`."""
        if self._redis is None:
            self._check_open()
            raise self._not_connected()
        return self._redis

    @property
    def scripts(self) -> Scripts:
        """The scripts registered on the last client attached."""
        if self._scripts is None:
            raise self._not_connected()
        return self._scripts

    def _not_connected(self) -> TransportError:
        return TransportError(f"the Redis transport for {self.where} is not connected")

    # errors

    def failure(self, doing: str, exc: RedisError) -> TransportError:
        """The error raised when ``doing`` failed with ``exc``."""
        return TransportError(f"Redis at {self.where}: {doing} failed: {exc}")

    @contextmanager
    def translate(self, doing: str) -> Iterator[None]:
        """Raise a Redis failure inside as :class:`nerve.TransportError` (see :meth:`failure`)."""
        try:
            yield
        except RedisError as exc:
            raise self.failure(doing, exc) from exc
