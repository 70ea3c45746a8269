"""The store contracts, one module per contract, each test run against every store
(memory, SQLite, PostgreSQL, Redis) through the ``make_store`` fixture (conftest.py)."""

from __future__ import annotations

from collections.abc import Callable

from nerve import AttemptError, Store

StoreFactory = Callable[..., Store]


def error(attempt: int, message: str = "boom") -> AttemptError:
    try:
        raise RuntimeError(message)
    except RuntimeError as exc:
        return AttemptError.from_exception(exc, attempt)
