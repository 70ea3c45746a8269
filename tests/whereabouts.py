"""Where accepted events are, when a broker-restart test finds some of them unhandled.

A restart test that fails with "condition not met" says nothing a developer can act on: an
event lost and an event stuck look the same. :func:`unhandled` names how many accepted
events are unhandled and, for a few of them, every place each one is found:

- on the broker (each test passes a ``look`` that reads its broker: a subscription's
  queue or stream, a wait queue, the parked queue, pending entries of a group...);
- in the worker: in the subscription runner's buffer, being handled, waiting behind its
  key, or consumed by the transport and not settled (``look`` adds the transport's own);
- in the store: done, failed (a retry due) or dead-lettered;
- nowhere: the event is lost.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence

from nerve import Event, EventBus

#: What a test's ``look`` returns: place -> the event ids found there (wanted or not),
#: and notes about the broker (a queue that does not answer, a consumer count...).
Found = tuple[Mapping[str, Collection[str]], Sequence[str]]
Look = Callable[[set[str]], Awaitable[Found]]


async def unhandled(
    bus: EventBus,
    subscription: str,
    accepted: Sequence[str],
    handled: Collection[str],
    look: Look,
    *,
    show: int = 5,
) -> str:
    """Describe the accepted events not handled: how many, and where ``show`` of them are."""
    missing = [event_id for event_id in accepted if event_id not in handled]
    if not missing:
        return "every accepted event was handled"
    wanted = set(missing)
    places: dict[str, list[str]] = {event_id: [] for event_id in missing}
    notes: list[str] = []
    try:
        async with asyncio.timeout(60):
            found, broker_notes = await look(wanted)
        notes.extend(broker_notes)
        for place, ids in found.items():
            for event_id in wanted.intersection(ids):
                places[event_id].append(place)
    except Exception as exc:  # noqa: BLE001  # a report, not a test: say it and go on
        notes.append(f"the broker could not be read: {exc!r}")
    runner = bus._runners.get(subscription)  # a test's look into the running bus
    if runner is not None:
        for event_id, state in runner.holding().items():
            if event_id in wanted:
                places[event_id].append(f"worker: {state}")
    for event_id in missing[:show]:
        try:
            status = await bus.status(event_id)
        except Exception as exc:  # noqa: BLE001  # as above
            places[event_id].append(f"store unreadable: {exc!r}")
            continue
        recorded = status.subscriptions.get(subscription)
        if recorded is not None and recorded != "pending":
            places[event_id].append(f"store: {recorded}")
    counts: dict[str, int] = {}
    for event_id in missing:
        for place in places[event_id] or ["nowhere"]:
            counts[place] = counts.get(place, 0) + 1
    lines = [
        f"{len(missing)} of {len(accepted)} accepted events unhandled "
        f"({len(set(handled))} handled)",
        "by place: " + ", ".join(f"{place}: {n}" for place, n in sorted(counts.items())),
        *(
            f"  {event_id}: {'; '.join(places[event_id]) or 'nowhere'}"
            for event_id in missing[:show]
        ),
        *(f"note: {note}" for note in notes),
    ]
    return "\n".join(lines)


class Workload:
    """A restart test's traffic: events numbered from 0, every fifth failing its first
    attempt (so that retries are on their way at a kill), and what became of them."""

    def __init__(self, work: float = 0.0) -> None:
        self.work = work  # seconds a handler takes: some deliveries are in flight at a kill
        self.accepted: list[str] = []  # publish returned: the broker has them
        self.refused = 0  # publishes the kill caught (not accepted)
        self.handled: set[str] = set()
        self.failed_once: set[str] = set()

    async def handle(self, event: Event) -> None:
        if event.payload["n"] % 5 == 0 and event.event_id not in self.failed_once:
            self.failed_once.add(event.event_id)
            raise RuntimeError("first attempt fails")
        if self.work:
            await asyncio.sleep(self.work)
        self.handled.add(event.event_id)

    async def publish_forever(self, bus: EventBus, refused_by: tuple[type[Exception], ...]) -> None:
        """Publish ``job.run`` events until cancelled; one refused is published again."""
        n = 0
        while True:
            try:
                event = await bus.publish(Event(event_type="job.run", payload={"n": n}))
            except refused_by:  # caught by the kill: not accepted, the caller tries again
                self.refused += 1
                await asyncio.sleep(0.05)
                continue
            self.accepted.append(event.event_id)
            n += 1
