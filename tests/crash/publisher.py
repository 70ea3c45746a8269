"""Publishes events to ``NERVE_URL`` forever, printing each event id once publish returned."""

from __future__ import annotations

import asyncio
import sys

from nerve import Event, EventBus


async def main() -> None:
    bus = EventBus()
    n = 0
    while True:
        event = await bus.publish(Event(event_type="crash.job", payload={"n": n}))
        sys.stdout.write(event.event_id + "\n")
        sys.stdout.flush()
        n += 1


if __name__ == "__main__":
    asyncio.run(main())
