"""What only the SQLite transport has: its URL options, durability setting included."""

from __future__ import annotations

from pathlib import Path

import pytest

from nerve import ConfigurationError, Settings
from nerve.transports import transport_from_url
from nerve.transports.sqlite import SQLiteTransport


def test_url_options_are_read_and_checked(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/a.db?lease=5&poll=0.2&retention=60&synchronous=full"
    transport = transport_from_url(url, Settings())
    assert isinstance(transport, SQLiteTransport)
    assert (transport.lease, transport.poll, transport.retention) == (5.0, 0.2, 60.0)
    assert transport.default_store_url == f"sqlite:///{tmp_path}/a.db"  # the same file
    with pytest.raises(ConfigurationError, match="unknown option"):
        transport_from_url(f"sqlite:///{tmp_path}/a.db?leese=5")
    with pytest.raises(ConfigurationError, match="options must be numbers"):
        transport_from_url(f"sqlite:///{tmp_path}/a.db?lease=soon")
    with pytest.raises(ConfigurationError, match="expected one of EXTRA, FULL, NORMAL, OFF"):
        transport_from_url(f"sqlite:///{tmp_path}/a.db?synchronous=sometimes")


@pytest.mark.parametrize(("setting", "level"), [("full", 2), ("NORMAL", 1), ("off", 0)])
async def test_the_durability_setting_reaches_sqlite(
    tmp_path: Path, setting: str, level: int
) -> None:
    transport = transport_from_url(f"sqlite:///{tmp_path}/a.db?synchronous={setting}")
    assert isinstance(transport, SQLiteTransport)
    await transport.connect()
    try:
        rows = await transport._db.run(transport._db.execute, "PRAGMA synchronous")
        assert rows == [(level,)]
    finally:
        await transport.close()
