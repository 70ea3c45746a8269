"""An app for CLI tests: each ``slow.job`` takes ``SLOW_SECONDS`` and is logged to a file.

``NERVE_URL`` names the transport; ``SLOW_LOG`` is a file that gets ``start <n>`` and
``done <n>`` lines, so a test can see which handlers began and which finished.
"""

from __future__ import annotations

import asyncio
import os

from nerve import Event, EventBus

bus = EventBus()
LOG = os.environ.get("SLOW_LOG", os.devnull)
SECONDS = float(os.environ.get("SLOW_SECONDS", "1.0"))


def note(line: str) -> None:
    with open(LOG, "a") as log:
        log.write(line + "\n")


@bus.on("slow.job", name="slow", concurrency=2)
async def slow(event: Event) -> None:
    note(f"start {event.payload['n']}")
    await asyncio.sleep(SECONDS)  # an LLM call stands in
    note(f"done {event.payload['n']}")
