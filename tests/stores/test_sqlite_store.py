"""The SQLite store: it survives a restart; its URL forms; older files are brought up
to date."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path

import pytest

from nerve import DeliveryState, Event, EventBus
from nerve.stores.sqlite import SQLiteStore


async def test_sqlite_store_survives_a_restart(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/nerve.db"

    def make() -> EventBus:
        bus = EventBus("memory://", store=url)

        @bus.on("a.b", name="fails", retries=0)
        async def fails(event: Event) -> None:
            raise RuntimeError("still broken")

        @bus.on("a.b", name="works")
        async def works(event: Event) -> None:
            pass

        return bus

    bus = make()
    async with bus:
        event = await bus.publish(Event(event_type="a.b"))

    again = make()  # a new process would see the same file
    entry = await again.dlq.get(event.event_id)
    assert entry is not None
    assert entry.errors[-1].message == "still broken"
    status = await again.status(event.event_id)
    assert status.subscriptions == {
        "fails": DeliveryState.DEAD_LETTERED,
        "works": DeliveryState.DONE,
    }
    await again.stop()


async def test_sqlite_url_forms(tmp_path: Path) -> None:
    from nerve.connections.sqlite import sqlite_path
    from nerve.exceptions import ConfigurationError

    assert sqlite_path("sqlite:///rel/x.db") == "rel/x.db"
    assert sqlite_path("sqlite:////abs/x.db") == "/abs/x.db"
    with pytest.raises(ConfigurationError, match="sqlite:///relative"):
        sqlite_path("sqlite://x.db")


async def test_dead_letters_can_be_read_after_the_bus_stopped(tmp_path: Path) -> None:
    bus = EventBus(store=f"sqlite:///{tmp_path}/after.db")

    @bus.on("a.b", name="fails", retries=0)
    async def fails(event: Event) -> None:
        raise RuntimeError("no")

    async with bus:
        event = await bus.publish(Event(event_type="a.b"))
    entry = await bus.dlq.get(event.event_id)
    assert entry is not None
    assert entry.errors[0].message == "no"
    assert (await bus.status(event.event_id)).subscriptions == {
        "fails": DeliveryState.DEAD_LETTERED
    }
    await bus.stop()  # closes the store it reopened


#: The event log as nerve made it before the log kept event types.
OLD_LOG = """
CREATE TABLE nerve_log_events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, event_id TEXT NOT NULL UNIQUE,
    correlation_id TEXT NOT NULL, published_at REAL NOT NULL, event TEXT NOT NULL);
CREATE INDEX nerve_log_events_chain ON nerve_log_events (correlation_id);
CREATE INDEX nerve_log_events_at ON nerve_log_events (published_at);
"""


async def test_a_file_from_before_typed_history_is_brought_up_to_date(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    old = Event(event_type="refund.approval.decided", payload={"note": "nul\x00here"})
    with closing(sqlite3.connect(path)) as conn:
        conn.executescript(OLD_LOG)
        conn.execute(
            "INSERT INTO nerve_log_events (event_id, correlation_id, published_at, event) "
            "VALUES (?, ?, ?, ?)",
            (old.event_id, old.correlation_id, 100.0, old.model_dump_json()),
        )
        conn.commit()
    new = Event(event_type="refund.approval.decided", payload={})
    for _ in range(2):  # upgraded, then opened as it is
        store = SQLiteStore(f"sqlite:///{path}")
        await store.open()
        await store.record_history([(new, 200.0)], [])
        found = await store.history_of_type("refund.approval.decided", 0, 10)
        assert [r.event for r in found] == [old, new]
        assert await store.history_of_type("refund.approval.decided", 150, 10) == found[1:]
        await store.close()
    with closing(sqlite3.connect(path)) as conn:
        plan = conn.execute(
            "EXPLAIN QUERY PLAN SELECT seq FROM nerve_log_events "
            "WHERE event_type = 'x' AND published_at >= 0"
        ).fetchall()
    assert "nerve_log_events_type" in str(plan)
