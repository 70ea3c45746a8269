"""The app the crash tests run in worker processes: side effects counted in SQLite.

``NERVE_URL`` names the transport. Each handled event appends a row to ``effects`` (a
plain write: a redelivered event adds a second row) and, through ``nerve.transaction()``,
to ``effects_tx`` (committed with the done mark: never twice). The ``poison`` event
always fails.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3

import nerve
from nerve import Backoff, Event, EventBus

EFFECTS = os.environ["CRASH_EFFECTS_DB"]
TRANSACTIONAL = os.environ.get("CRASH_TRANSACTIONAL") == "1"

bus = EventBus()
_effects = sqlite3.connect(EFFECTS, isolation_level=None, timeout=30)
_effects.execute("PRAGMA journal_mode=WAL")


@bus.on("crash.job", name="job", concurrency=8, retries=2, backoff=Backoff(initial=0.05))
async def job(event: Event) -> None:
    if event.payload.get("poison"):
        raise ValueError("poison event")
    await asyncio.sleep(0.002)  # a little work, so kills land mid-handler
    if TRANSACTIONAL:
        async with nerve.transaction() as tx:
            await tx.execute("INSERT INTO effects_tx VALUES (?, ?)", (event.event_id, os.getpid()))
    else:
        _effects.execute("INSERT INTO effects VALUES (?, ?)", (event.event_id, os.getpid()))
