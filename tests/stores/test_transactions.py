"""Exactly-once effects: a handler's writes commit together with its done mark (SQLite)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

import nerve
from nerve import AlreadyHandled, ConfigurationError, Event, EventBus, NerveError
from nerve.stores.memory import MemoryStore
from nerve.stores.sqlite import SQLiteStore


def ledger(path: Path) -> list[tuple[str, int]]:
    with sqlite3.connect(path) as conn:
        return conn.execute("SELECT event_id, amount FROM ledger ORDER BY event_id").fetchall()


async def test_writes_and_the_mark_commit_together(tmp_path: Path) -> None:
    path = tmp_path / "app.db"
    store = SQLiteStore(f"sqlite:///{path}")
    await store.open()
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE ledger (event_id TEXT PRIMARY KEY, amount INTEGER)")
    async with store.transaction("book", "e1") as tx:
        await tx.execute("INSERT INTO ledger VALUES (?, ?)", ("e1", 42))
    assert await store.is_done("book", "e1")
    assert ledger(path) == [("e1", 42)]

    async def fail_midway() -> None:
        async with store.transaction("book", "e2") as tx:
            await tx.execute("INSERT INTO ledger VALUES (?, ?)", ("e2", 7))
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):  # an error inside: nothing is written
        await fail_midway()
    assert not await store.is_done("book", "e2")
    assert ledger(path) == [("e1", 42)]

    with pytest.raises(AlreadyHandled):  # a second worker on the same event loses
        async with store.transaction("book", "e1") as tx:
            await tx.execute("INSERT INTO ledger VALUES (?, ?)", ("e1-again", 42))
    assert ledger(path) == [("e1", 42)]
    await store.close()


async def test_a_handler_books_each_event_exactly_once(tmp_path: Path) -> None:
    path = tmp_path / "app.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE ledger (event_id TEXT, amount INTEGER)")  # no unique key
    bus = EventBus("memory://", store=f"sqlite:///{path}")
    calls = 0

    @bus.on("payment.received", name="book")
    async def book(event: Event) -> None:
        nonlocal calls
        calls += 1
        async with nerve.transaction() as tx:
            await tx.execute(
                "INSERT INTO ledger VALUES (?, ?)", (event.event_id, event.payload["amount"])
            )

    payment = Event(event_type="payment.received", payload={"amount": 42})
    async with bus:
        await bus.publish(payment)
        await bus.join(10)
        await bus.publish(payment)  # re-published after it was handled
    assert ledger(path) == [(payment.event_id, 42)]
    assert calls == 1


async def test_transaction_outside_a_handler_or_without_a_database() -> None:
    with pytest.raises(NerveError, match="only inside a handler"):
        async with nerve.transaction():
            pass
    with pytest.raises(ConfigurationError, match="MemoryStore has no transactions"):
        async with MemoryStore().transaction("s", "e"):
            pass
