"""Recording successes in batches: mark done in the store, then acknowledge.

Every subscription of a bus hands its successful deliveries to one :class:`Settler`,
which writes their done marks in one store call and acknowledges them in one transport
call, when ``batch`` are waiting or ``delay`` seconds after the first, whichever comes
first. On a broker that is one round trip per batch instead of two per event; in
process it is what lets a thousand quiet subscriptions cost little more than one.

The order is what makes a crash safe: an event is marked done before it is acknowledged,
so a delivery that comes back after a crash between the two is recognised as handled.
The price of batching is that a crash forgets at most the last ``delay`` seconds (or
``batch`` events) of successes, whose handlers then run again: at least once, as
promised, never lost.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence

from nerve import clock
from nerve.exceptions import TransportError
from nerve.stores.base import IdempotencyStore
from nerve.transports.base import Delivery, Transport

log = logging.getLogger("nerve")

#: Successes are recorded in batches of up to this many...
SETTLE_BATCH = 256
#: ...or this many seconds after the first of them, whichever comes first.
SETTLE_DELAY = 0.005


class Settler:
    """Batches successful deliveries into store writes and acknowledgements.

    Args:
        store: where done marks go.
        transport: what acknowledges.
        on_released: called with the deliveries released for redelivery when the store
            could not record them (their handlers will run again).
        retry_delay: seconds before such a released delivery comes back.
    """

    def __init__(
        self,
        store: IdempotencyStore,
        transport: Transport,
        *,
        on_released: Callable[[Sequence[Delivery]], None],
        retry_delay: float = 1.0,
    ) -> None:
        self._store = store
        self._transport = transport
        self._on_released = on_released
        self._retry_delay = retry_delay
        self._pending: list[Delivery] = []
        self._timer: asyncio.TimerHandle | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def done(self, delivery: Delivery) -> None:
        """Record a success; flush now if the batch is full."""
        pending = self._pending
        pending.append(delivery)
        if len(pending) >= SETTLE_BATCH:
            await self.flush()
        elif self._timer is None:
            self._timer = clock.call_later(SETTLE_DELAY, self._due)

    def _due(self) -> None:
        self._timer = None
        if self._pending:
            task = asyncio.get_running_loop().create_task(self.flush(), name="nerve-settle")
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def flush(self) -> None:
        """Write and acknowledge everything waiting."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        batch = self._pending
        if not batch:
            return
        self._pending = []
        by_subscription: dict[str, list[str]] = {}
        for delivery in batch:
            by_subscription.setdefault(delivery.subscription, []).append(delivery.event.event_id)
        try:
            await self._store.mark_done_many(by_subscription)
        except Exception:
            log.exception("could not record %d successes; releasing them", len(batch))
            self._on_released(batch)
            for delivery in batch:
                try:
                    await delivery.nack(self._retry_delay)
                except Exception:  # the broker redelivers after its own timeout
                    log.exception("could not release %s", delivery.event.event_id)
            return
        await acknowledge(self._transport, batch)

    async def close(self) -> None:
        """Flush what is waiting and wait for flushes in progress."""
        await self.flush()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)


async def acknowledge(transport: Transport, deliveries: Sequence[Delivery]) -> None:
    """Acknowledge deliveries whose done marks are in the store already.

    A failure (a connection lost) is logged, not raised: the broker delivers them again,
    and the worker recognises them as handled and acknowledges them then.
    """
    try:
        await transport.ack_many(deliveries)
    except TransportError as exc:
        log.warning("could not acknowledge %d handled events: %s", len(deliveries), exc)
