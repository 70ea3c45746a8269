"""An app for the crash-loop test: ``crash.loop`` events kill the process handling them.

``CRASH_RUNS`` is a file that gets one line per start of the killing handler, written
before the process dies, so the test can count how many times it ran.
"""

from __future__ import annotations

import os

from nerve import Event, EventBus

bus = EventBus()
RUNS = os.environ.get("CRASH_RUNS", os.devnull)


def note(event_id: str) -> None:
    with open(RUNS, "a") as runs:
        runs.write(f"{event_id}\n")


@bus.on("crash.loop", name="dies", retries=1)
async def dies(event: Event) -> None:
    note(event.event_id)
    os._exit(3)  # no exception, no outcome: the process is simply gone


@bus.on("crash.fine", name="fine")
async def fine(event: Event) -> None:
    pass
