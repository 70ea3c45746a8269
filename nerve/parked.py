"""Filing what the broker parked: each event a broker gave up on by itself becomes a dead
letter, listed and replayed like the others.

RabbitMQ parks a message returned to a subscription's queue more than its delivery limit
(:class:`nerve.transports.base.Parked`): a crash loop that the core's own count of starts
(``SubscriptionRunner._crash_loop``) did not stop first, because the limit is below the
subscription's retries or the store could not be written. :func:`file_parked` writes each
as a dead letter of its subscription (the pair's recorded failures, then a
:class:`~nerve.CrashLoop` telling what the broker did), and only then settles it on the
broker: a crash in between leaves it parked, to be filed again. One that is dead-lettered
or done already is settled without a new entry.

A running bus with subscriptions files them every :data:`PARKED_POLL` seconds
(:class:`ParkedFiler`), and ``bus.dlq`` does before it reads or replays, so ``nerve dlq
list`` shows them even with no worker running. Transports live below the stores and never
write one: they hand parked events up (:meth:`Transport.take_parked`), the core files them.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Final

from nerve import clock
from nerve.context import HandlerContext
from nerve.exceptions import CrashLoop
from nerve.observe.observer import Observers
from nerve.records import AttemptError, DeadLetter
from nerve.stores.base import Store
from nerve.tasks import stop_task
from nerve.transports.base import Parked, Transport, each_then_raise

__all__ = ["PARKED_BATCH", "PARKED_POLL", "ParkedFiler", "file_parked"]

log = logging.getLogger("nerve")

#: Parked events taken from the broker at a time.
PARKED_BATCH: Final = 100
#: Seconds between two looks of a running bus at what its broker parked.
PARKED_POLL: Final = 5.0


async def file_parked(transport: Transport, store: Store, observers: Observers) -> int:
    """File every event ``transport`` holds parked as a dead letter; return how many.

    Should the store fail, what was taken and not filed is handed back to the broker
    before the failure is raised.
    """
    filed = 0
    while True:
        batch = list(await transport.take_parked(PARKED_BATCH))
        for index, parked in enumerate(batch):
            try:
                filed += await _file(parked, store, observers)
            except BaseException:
                await each_then_raise(batch[index:], lambda rest: rest.release())
                raise
        if len(batch) < PARKED_BATCH:
            return filed


async def _file(parked: Parked, store: Store, observers: Observers) -> bool:
    """Write one parked event's dead letter, then settle it; whether one was written."""
    sub, event = parked.subscription, parked.event
    event_id = event.event_id
    if await store.is_done(sub, event_id) or await store.dead_letters(
        event_id=event_id, subscription=sub, limit=1
    ):
        await parked.settle()  # a copy of what is settled in the store already
        return False
    exc = CrashLoop(f"{sub} never finished {event.event_type} {event_id}: {parked.reason}")
    errors = await store.take_failures(sub, event_id)
    errors.append(AttemptError.from_exception(exc, parked.attempts))
    entry = DeadLetter(event=event, subscription=sub, attempts=parked.attempts, errors=errors)
    await store.add_dead_letter(entry)
    if observers:  # the log line of a dead letter, and its outcome in the event log
        ctx = HandlerContext(event, sub, parked.attempts, store)
        observers.failed(sub, event, exc, 0.0, ctx, retry_in=None)
    await parked.settle()
    return True


class ParkedFiler:
    """Files what the broker parked (by ``file``) now and every :data:`PARKED_POLL`
    seconds, for as long as it runs; a failure is logged and tried again."""

    def __init__(self, file: Callable[[], Awaitable[object]]) -> None:
        self._file = file
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Start filing, in the background."""
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="nerve-parked")

    async def stop(self) -> None:
        """Stop filing (what is taken and not filed goes back with the connection)."""
        task, self._task = self._task, None
        if task is not None:
            await stop_task(task)  # aio-pika may swallow the first cancellation

    async def _run(self) -> None:
        while True:
            try:
                await self._file()
            except Exception:
                log.exception("could not file the events the broker parked; trying again")
            await clock.sleep(PARKED_POLL)
