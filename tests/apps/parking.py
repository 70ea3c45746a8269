"""An app for the parked-queue test: ``park.job`` events kill the process handling them,
until cured.

Its subscription allows more retries than the test's broker allows returns
(``delivery_limit=1`` in its URL), so the broker parks the event before the core's own
crash-loop count would dead-letter it. ``PARK_RUNS`` gets a line per start of the handler
(written before the process dies); once ``PARK_CURE`` exists, the handler succeeds.
"""

from __future__ import annotations

import os
from pathlib import Path

from nerve import Event, EventBus

bus = EventBus()
RUNS = Path(os.environ.get("PARK_RUNS", os.devnull))
CURE = Path(os.environ.get("PARK_CURE", "/nonexistent"))


def run(event_id: str) -> bool:
    """Note a start of the handler; whether it is cured."""
    cured = CURE.exists()
    with RUNS.open("a") as runs:
        runs.write(f"{event_id} {'cured' if cured else 'dies'}\n")
    return cured


@bus.on("park.job", name="job", retries=5)
async def job(event: Event) -> None:
    if not run(event.event_id):
        os._exit(3)  # no exception, no outcome: the process is simply gone
