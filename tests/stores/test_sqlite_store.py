"""The SQLite store: it survives a restart; its URL forms."""

from __future__ import annotations

from pathlib import Path

import pytest

from nerve import DeliveryState, Event, EventBus


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
