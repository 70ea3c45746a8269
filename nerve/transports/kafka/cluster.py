"""Reaching a Kafka cluster: its servers, credentials and this process's client id, the
aiokafka clients made with them, topic administration, and Kafka's errors as nerve's.

Errors from aiokafka become :class:`nerve.TransportError`, naming the bootstrap servers
and never the password.
"""

from __future__ import annotations

import asyncio
import os
import socket
import ssl
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager, suppress
from typing import Any, Final
from urllib.parse import unquote, urlsplit

from aiokafka import (  # type: ignore[import-untyped]  # aiokafka ships no type hints
    AIOKafkaConsumer,
    AIOKafkaProducer,
)
from aiokafka.admin import (  # type: ignore[import-untyped]  # aiokafka ships no type hints
    AIOKafkaAdminClient,
    NewTopic,
)
from aiokafka.errors import KafkaError  # type: ignore[import-untyped]  # no type hints

from nerve.exceptions import ConfigurationError, TransportError

#: Longest wait of the broker for records to answer a fetch with.
FETCH_MAX_WAIT_MS: Final = 100
#: Longest wait of one fetch; also how soon a full buffer notices room.
POLL_MS: Final = 200
#: Longest wait of each step of close() (a broker that does not answer does not hang it).
CLOSE_TIMEOUT: Final = 5.0

_TOPIC_EXISTS: Final = 36  # CreateTopics error code TOPIC_ALREADY_EXISTS
_PROTOCOLS: Final = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")


def kafka_where(url: str) -> str:
    """The bootstrap servers of a ``kafka://`` URL, for messages (never the password)."""
    return urlsplit(url).netloc.rpartition("@")[2] or "localhost:9092"


class Cluster:
    """How this process reaches the cluster of a ``kafka://`` URL.

    Args:
        url: the transport's URL (servers, and the user and password for SASL).
        options: its query: ``security_protocol`` and ``sasl_mechanism`` are read here.
    """

    def __init__(self, url: str, options: dict[str, str]) -> None:
        parts = urlsplit(url)
        self.where = kafka_where(url)
        self.bootstrap = self.where.split(",")
        self.security: dict[str, Any] = {}
        protocol = options.get("security_protocol", "PLAINTEXT").upper()
        if protocol not in _PROTOCOLS:
            raise ConfigurationError(f"kafka URL option security_protocol={protocol!r} is unknown")
        if protocol != "PLAINTEXT":
            self.security["security_protocol"] = protocol
        if protocol.endswith("SSL"):
            self.security["ssl_context"] = ssl.create_default_context()
        if parts.username is not None:
            self.security["sasl_plain_username"] = unquote(parts.username)
            self.security["sasl_plain_password"] = unquote(parts.password or "")
            self.security["sasl_mechanism"] = options.get("sasl_mechanism", "PLAIN").upper()
        # Group members are ordered by id (client id first) when partitions are assigned:
        # starting with the start time keeps partitions with the oldest members while
        # younger ones come and go, so a restart elsewhere does not move them.
        self.client_id = f"nerve-{time.time_ns() // 1_000_000}-{socket.gethostname()}-{os.getpid()}"

    # clients

    def producer(self, **options: Any) -> Any:
        """An ``AIOKafkaProducer`` for this cluster (not started)."""
        return AIOKafkaProducer(**self._client_options(), **options)

    def consumer(self, **options: Any) -> Any:
        """An ``AIOKafkaConsumer`` for this cluster (not started)."""
        return AIOKafkaConsumer(**self._client_options(), **options)

    def _client_options(self) -> dict[str, Any]:
        return {"bootstrap_servers": self.bootstrap, "client_id": self.client_id, **self.security}

    async def start(self, client: Any, doing: str) -> None:
        """Start a producer or consumer; stop it again if it could not start."""
        with self.translate(doing):
            try:
                await client.start()
            except BaseException:
                await client.stop()
                raise

    async def stop(self, client: Any) -> None:
        """Stop a producer or consumer, giving up after :data:`CLOSE_TIMEOUT`."""
        with suppress(KafkaError, TimeoutError):
            async with asyncio.timeout(CLOSE_TIMEOUT):
                await client.stop()

    # topics

    async def list_topics(self) -> set[str]:
        with self.translate("listing topics"):
            async with self._admin() as admin:
                return set(await admin.list_topics())

    async def create_topics(
        self, topics: list[str], *, partitions: int, replication: int, compact: str | None = None
    ) -> None:
        """Create missing topics (an existing one is fine; so is having no right to create).

        ``compact`` names the one topic among them made of one compacted partition.
        """
        new = [
            NewTopic(
                topic,
                1 if topic == compact else partitions,
                replication,
                topic_configs={"cleanup.policy": "compact"} if topic == compact else {},
            )
            for topic in topics
        ]
        with self.translate(f"creating topics {', '.join(topics)}"):
            async with self._admin() as admin:
                reply = await admin.create_topics(new)
                failed = {t: (code, msg) for t, code, msg in reply.topic_errors if code}
                failed = {t: e for t, e in failed.items() if e[0] != _TOPIC_EXISTS}
                if failed:
                    existing = set(await admin.list_topics())
                    missing = {t: e for t, e in failed.items() if t not in existing}
                    if missing:
                        detail = "; ".join(f"{t}: {m} (error {c})" for t, (c, m) in missing.items())
                        raise TransportError(
                            f"Kafka at {self.where}: cannot create topics: {detail}"
                        )

    @asynccontextmanager
    async def _admin(self) -> AsyncIterator[Any]:
        admin = AIOKafkaAdminClient(**self._client_options())
        await admin.start()
        try:
            yield admin
        finally:
            await admin.close()

    # errors

    @contextmanager
    def translate(self, doing: str) -> Iterator[None]:
        """Raise a Kafka error inside as a :class:`nerve.TransportError` saying what failed."""
        try:
            yield
        except KafkaError as exc:
            raise TransportError(f"Kafka at {self.where}: {doing} failed: {exc}") from exc
