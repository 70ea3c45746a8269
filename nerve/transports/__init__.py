"""Transports, chosen by URL scheme and imported lazily (a missing extra names itself)."""

from __future__ import annotations

from typing import cast

from nerve.plugins import plugin_class
from nerve.settings import Settings
from nerve.transports.base import Delivery, Transport
from nerve.urls import scheme_of

__all__ = ["Delivery", "Transport", "transport_from_url"]

#: scheme -> (module, class, the extra that installs its client library or None)
TRANSPORTS: dict[str, tuple[str, str, str | None]] = {
    "memory": ("nerve.transports.memory", "MemoryTransport", None),
    "sqlite": ("nerve.transports.sqlite", "SQLiteTransport", None),
    "redis": ("nerve.transports.redis", "RedisTransport", "redis"),
    "nats": ("nerve.transports.nats", "NATSTransport", "nats"),
    "amqp": ("nerve.transports.amqp", "AMQPTransport", "amqp"),
    "kafka": ("nerve.transports.kafka", "KafkaTransport", "kafka"),
}


def transport_from_url(url: str, settings: Settings | None = None) -> Transport:
    """Make the transport a URL names.

    Raises:
        ConfigurationError: unknown scheme (with the nearest known one suggested).
        MissingDependency: the transport's client library is not installed.
    """
    settings = settings or Settings()
    cls = cast(type[Transport], plugin_class(TRANSPORTS, scheme_of(url), "transport"))
    return cls.from_url(url, settings)
