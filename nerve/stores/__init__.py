"""Stores of idempotency marks, attempt failures and dead letters, chosen by URL."""

from __future__ import annotations

from nerve.exceptions import ConfigurationError, MissingDependency
from nerve.records import AttemptError, DeadLetter, DeliveryState
from nerve.settings import Settings
from nerve.stores.base import Store
from nerve.urls import scheme_of

__all__ = ["AttemptError", "DeadLetter", "DeliveryState", "Store", "store_from_url"]


def store_from_url(url: str, settings: Settings | None = None) -> Store:
    """Make the store a URL names: ``memory://``, ``sqlite:///path.db``, ``redis://...``
    or ``postgresql://user:password@host:port/db?schema=nerve``."""
    settings = settings or Settings()
    scheme = scheme_of(url)
    if scheme == "memory":
        from nerve.stores.memory import MemoryStore

        return MemoryStore(window=settings.idempotency_window)
    if scheme == "sqlite":
        from nerve.stores.sqlite import SQLiteStore

        return SQLiteStore(url, window=settings.idempotency_window)
    if scheme in ("redis", "rediss"):
        try:
            from nerve.stores.redis import RedisStore
        except ImportError as exc:
            if exc.name == "nerve.stores.redis":
                raise
            raise MissingDependency(
                f"the redis store needs {exc.name}: pip install 'nerve[redis]'"
            ) from exc

        store: Store = RedisStore(
            url,
            window=settings.idempotency_window,
            history_retention=settings.history_retention,
        )
        return store
    if scheme in ("postgresql", "postgres"):
        try:
            from nerve.stores.postgres import PostgresStore
        except ImportError as exc:
            if exc.name == "nerve.stores.postgres":
                raise
            raise MissingDependency(
                f"the postgres store needs {exc.name}: pip install 'nerve[postgres]'"
            ) from exc

        return PostgresStore(url, window=settings.idempotency_window)
    raise ConfigurationError(
        f"unknown store {scheme}:// (known: memory://, sqlite:///path.db, redis://host:port/db, "
        "postgresql://user@host:port/db)"
    )
