"""Flow control: limits on a subscription shared by every process on its store.

``@bus.on("ticket.updated", concurrency=Concurrency(2, key="payload.customer_id"),
throttle=Throttle(10, per=timedelta(minutes=1)), debounce=Debounce(...))``. See
:mod:`nerve.flow.controls` for each control and :mod:`nerve.flow.gate` for how a delivery
goes through them.
"""

from nerve.flow.controls import (
    Batch,
    Concurrency,
    Debounce,
    RateLimit,
    RateLimited,
    RejectItems,
    Throttle,
)

__all__ = [
    "Batch",
    "Concurrency",
    "Debounce",
    "RateLimit",
    "RateLimited",
    "RejectItems",
    "Throttle",
]
