"""``store_from_url``: a store per scheme from one table, its window from the settings,
a did-you-mean for a misspelt scheme and the exact install line for a missing extra."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from importlib.abc import MetaPathFinder
from importlib.machinery import ModuleSpec
from pathlib import Path
from types import ModuleType

import pytest

from nerve import ConfigurationError, MissingDependency, Settings
from nerve.stores import STORES, store_from_url
from nerve.stores.memory import MemoryStore
from nerve.stores.postgres import PostgresStore
from nerve.stores.redis import RedisStore
from nerve.stores.sqlite import SQLiteStore


class NotInstalled(MetaPathFinder):
    """Imports of ``package`` (and its modules) fail as if it were not installed."""

    def __init__(self, package: str) -> None:
        self.package = package

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> ModuleSpec | None:
        if fullname.partition(".")[0] == self.package:
            raise ModuleNotFoundError(f"No module named {fullname!r}", name=fullname)
        return None


def test_each_scheme_makes_its_store(tmp_path: Path) -> None:
    settings = Settings(idempotency_window=42.0)
    assert isinstance(store_from_url("memory://", settings), MemoryStore)
    sqlite = store_from_url(f"sqlite:///{tmp_path}/s.db", settings)
    assert isinstance(sqlite, SQLiteStore)
    assert sqlite.window == 42.0
    for url in ("redis://127.0.0.1:6379/0", "rediss://127.0.0.1:6379/0"):
        redis = store_from_url(url, settings)
        assert isinstance(redis, RedisStore)
        assert redis.window == 42.0
    for url in ("postgresql://u@h/db", "postgres://u@h/db"):
        postgres = store_from_url(url, settings)
        assert isinstance(postgres, PostgresStore)
        assert postgres.window == 42.0


def test_an_unknown_scheme_names_the_known_ones_and_the_nearest() -> None:
    with pytest.raises(ConfigurationError) as raised:
        store_from_url("sqlit:///x.db")
    message = str(raised.value)
    assert message.startswith("unknown store sqlit:// (known: memory://, sqlite://")
    assert message.endswith("; did you mean sqlite://?")
    assert all(f"{scheme}://" in message for scheme in STORES)
    with pytest.raises(ConfigurationError, match=r"did you mean postgres(ql)?://\?"):
        store_from_url("postgre://u@h/db")
    with pytest.raises(ConfigurationError, match=r"\)$"):  # nothing near: no suggestion
        store_from_url("zzz://")


def test_the_redis_store_without_redis_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in [m for m in sys.modules if m.startswith(("redis", "nerve.stores.redis"))]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setattr(sys, "meta_path", [NotInstalled("redis"), *sys.meta_path])
    with pytest.raises(
        MissingDependency, match=r"^the redis:// store needs redis: pip install 'nerve\[redis\]'$"
    ):
        store_from_url("redis://127.0.0.1:6379/0")
