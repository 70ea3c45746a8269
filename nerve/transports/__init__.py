"""Transports, chosen by URL scheme and imported lazily (a missing extra names itself)."""

from __future__ import annotations

import difflib
import importlib

from nerve.exceptions import ConfigurationError, MissingDependency
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
    scheme = scheme_of(url)
    try:
        module_name, class_name, extra = TRANSPORTS[scheme]
    except KeyError:
        close = difflib.get_close_matches(scheme, TRANSPORTS, n=1)
        hint = f"; did you mean {close[0]}://?" if close else ""
        known = ", ".join(f"{s}://" for s in TRANSPORTS)
        raise ConfigurationError(f"unknown transport {scheme}:// (known: {known}){hint}") from None
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        if extra is None or (exc.name or "").startswith(module_name):
            raise  # our own module is broken, not a missing extra
        raise MissingDependency(
            f"the {scheme}:// transport needs {exc.name}: pip install 'nerve[{extra}]'"
        ) from exc
    cls: type[Transport] = getattr(module, class_name)
    return cls.from_url(url, settings)
