"""The app the dashboard's browser test serves: a three-step order chain that can fail.

``order.placed`` is billed (then ``order.billed`` is shipped, then ``order.shipped``
audited): a three-level chain for the trace. A placed order whose payload has
``"card": "declined"`` fails billing, with no retry, so it is dead-lettered at once,
until the file named by ``SHOP_CARDS_FIXED`` exists: then a replay succeeds.

``orders.risk.screening`` screens each placed order too, with a name and an error as long
as real ones run (a dotted name, as the examples' are, with no hyphen to break it at; a URL
in the message): an order whose payload has ``"card": "flagged"`` fails it, with no retry,
so the layout tests have a long dead letter.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from nerve import Event, EventBus

bus = EventBus()
FIXED = Path(os.environ.get("SHOP_CARDS_FIXED", os.devnull + ".absent"))


class PaymentDeclined(Exception):
    """The card was declined."""


class RiskScoreUnavailable(Exception):
    """The risk service gave no score."""


@bus.on("order.placed", name="billing", retries=0)
async def bill(event: Event) -> None:
    fixed = await asyncio.to_thread(FIXED.exists)
    if event.payload.get("card") == "declined" and not fixed:
        raise PaymentDeclined(f"card declined for order {event.payload.get('order')}")
    await bus.publish(Event(event_type="order.billed", payload=event.payload))


@bus.on("order.placed", name="orders.risk.screening", retries=0)
async def screen(event: Event) -> None:
    if event.payload.get("card") == "flagged":
        order = event.payload.get("order")
        raise RiskScoreUnavailable(
            f"no score for order {order} from https://risk.example.com/v2/orders/{order}/score"
            " after 3 attempts (HTTP 503 Service Unavailable)"
        )


@bus.on("order.billed", name="shipping", retries=0)
async def ship(event: Event) -> None:
    await bus.publish(Event(event_type="order.shipped", payload=event.payload))


@bus.on("order.#", name="audit", retries=0)
async def audit(event: Event) -> None:
    """Sees every order event (a second subscription on each)."""
