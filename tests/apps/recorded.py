"""An app for the default-state test: every run of its handler is a line in a file.

``NERVE_URL`` names the transport (no store given: the transport's default). ``STATE_RUNS``
gets ``<event_id> <pid>`` per run, appended with ``O_APPEND`` in one write, so the lines of
several processes all survive. An event with ``{"poison": true}`` raises ``ValueError``
unless the file ``STATE_CURE`` exists (then it succeeds, as once its bug is fixed).
"""

from __future__ import annotations

import os

from nerve import Backoff, Event, EventBus

bus = EventBus()
RUNS = os.environ.get("STATE_RUNS", os.devnull)
CURE = os.environ.get("STATE_CURE", "")
#: The poison event's error message.
POISON = "poison event"


def note(event_id: str) -> None:
    fd = os.open(RUNS, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, f"{event_id} {os.getpid()}\n".encode())
    finally:
        os.close(fd)


def cured() -> bool:
    return bool(CURE) and os.path.exists(CURE)


@bus.on("state.job", name="job", retries=1, backoff=Backoff(initial=0.05, maximum=0.1))
async def job(event: Event) -> None:
    note(event.event_id)
    if event.payload.get("poison") and not cured():
        raise ValueError(POISON)
