"""Stores, chosen by URL scheme and imported lazily (a missing extra names itself)."""

from __future__ import annotations

from typing import cast

from nerve.plugins import plugin_class
from nerve.records import AttemptError, DeadLetter, DeliveryState
from nerve.settings import Settings
from nerve.stores.base import Store
from nerve.urls import scheme_of

__all__ = ["AttemptError", "DeadLetter", "DeliveryState", "Store", "store_from_url"]

#: scheme -> (module, class, the extra that installs its client library or None)
STORES: dict[str, tuple[str, str, str | None]] = {
    "memory": ("nerve.stores.memory", "MemoryStore", None),
    "sqlite": ("nerve.stores.sqlite", "SQLiteStore", None),
    "redis": ("nerve.stores.redis", "RedisStore", "redis"),
    "rediss": ("nerve.stores.redis", "RedisStore", "redis"),
    "postgresql": ("nerve.stores.postgres", "PostgresStore", "postgres"),
    "postgres": ("nerve.stores.postgres", "PostgresStore", "postgres"),
    "nats": ("nerve.stores.nats", "NATSStore", "nats"),
}


def store_from_url(url: str, settings: Settings | None = None) -> Store:
    """Make the store a URL names: ``memory://``, ``sqlite:///path.db``, ``redis://...``,
    ``postgresql://user:password@host:port/db?schema=nerve`` or ``nats://host:4222``.

    Raises:
        ConfigurationError: unknown scheme (with the nearest known one suggested).
        MissingDependency: the store's client library is not installed.
    """
    settings = settings or Settings()
    cls = cast(type[Store], plugin_class(STORES, scheme_of(url), "store"))
    return cls.from_url(url, settings)
