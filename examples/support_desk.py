"""A support desk that runs itself: agents react to tickets as they arrive.

Run it: ``bash scripts/demo`` (or ``python examples/support_desk.py``).

- ``triage`` classifies each new ticket and emits ``support.ticket.classified``
  (keyword rules for now; the LLM agents come in ``nerve.llm``).
- ``route`` reacts to the classification and assigns a team; urgent tickets page someone.
- ``crm_sync`` talks to a flaky CRM: its first attempt at each ticket fails, the retry works.
- ``audit`` sees everything under ``support.#``.
A ticket without a body fails validation and lands in the dead letter queue with its error.
"""

from __future__ import annotations

import asyncio
import random
from collections import Counter

from pydantic import BaseModel

from nerve import Backoff, Event, EventBus

bus = EventBus()
handled: Counter[str] = Counter()


class Ticket(BaseModel):
    id: int
    customer: str
    body: str


CATEGORIES = {
    "billing": ("invoice", "charge", "refund", "card", "payment"),
    "outage": ("down", "error 500", "cannot log in", "timeout", "unavailable"),
    "account": ("password", "email", "delete my account", "2fa"),
}


@bus.on("support.ticket.created", retries=2)
async def triage(event: Event[Ticket]) -> None:
    """Classify the ticket and tell the others."""
    ticket = event.payload
    text = ticket.body.lower()
    category = next(
        (c for c, words in CATEGORIES.items() if any(w in text for w in words)), "other"
    )
    priority = "urgent" if category == "outage" else "normal"
    await asyncio.sleep(random.uniform(0.01, 0.05))  # an LLM call would take this long, or more
    handled["triage"] += 1
    await bus.publish(
        Event(
            event_type="support.ticket.classified",
            payload={"id": ticket.id, "category": category, "priority": priority},
        )
    )


@bus.on("support.ticket.classified")
async def route(event: Event) -> None:
    """Assign a team; page someone for urgent tickets."""
    assert isinstance(event.payload, dict)
    handled["route"] += 1
    if event.payload["priority"] == "urgent":
        await bus.publish(Event(event_type="pager.alert", payload={"ticket": event.payload["id"]}))


@bus.on("pager.alert")
async def page(event: Event) -> None:
    handled["page"] += 1


_crm_seen: set[str] = set()


@bus.on("support.ticket.created", retries=3, backoff=Backoff(initial=0.05))
async def crm_sync(event: Event) -> None:
    """A flaky dependency: the first attempt for each ticket fails."""
    if event.event_id not in _crm_seen:
        _crm_seen.add(event.event_id)
        raise ConnectionError("CRM timed out")
    handled["crm_sync"] += 1


@bus.on("support.#")
async def audit(event: Event) -> None:
    handled["audit"] += 1


TICKETS = [
    {"id": 1, "customer": "ada", "body": "I was charged twice on my card"},
    {"id": 2, "customer": "bob", "body": "The dashboard is down, error 500 everywhere"},
    {"id": 3, "customer": "cy", "body": "How do I reset my password?"},
    {"id": 4, "customer": "di", "body": "Please send me last month's invoice"},
    {"id": 5, "customer": "ed"},  # no body: dead-lettered with the validation error
]


async def main() -> None:
    async with bus:  # start the subscriptions; on exit, wait until every event is settled
        published = [
            await bus.publish(Event(event_type="support.ticket.created", payload=ticket))
            for ticket in TICKETS
        ]
        first = published[0]
        await bus.publish(first)  # a duplicate delivery: handled once per subscription
    print("handled:", dict(sorted(handled.items())))
    status = await bus.status(first.event_id)
    print(f"status of ticket 1 ({first.event_id}):")
    for name, state in status.subscriptions.items():
        print(f"  {name}: {state}")
    for entry in await bus.dlq.list():
        print("dead letter:", repr(entry))


if __name__ == "__main__":
    asyncio.run(main())
