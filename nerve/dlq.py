"""The dead letter queue as users see it: list, get, replay, purge."""

from __future__ import annotations

import builtins
from collections.abc import Awaitable, Callable
from typing import Any

from nerve.events import Event
from nerve.records import DeadLetter
from nerve.stores.base import DeadLetterStore


class DeadLetterQueue:
    """Events that a subscription gave up on, with every attempt's error.

    Reached as ``bus.dlq``. Entries are keyed by ``(subscription, event_id)``: one event
    can be dead in one subscription and done in another. Events the broker gave up on by
    itself (RabbitMQ's parked queue) are filed here before each read (:mod:`nerve.parked`).
    """

    def __init__(
        self,
        store: Callable[[], Awaitable[DeadLetterStore]],
        redeliver: Callable[[Event[Any], str], Awaitable[None]],
        file_parked: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        #: The store, ready to use (connected on first use, reopened after a stop).
        self._store = store
        #: Deliver an event again to one subscription only.
        self._redeliver = redeliver
        #: File what the broker parked by itself as dead letters (nerve.parked), so that
        #: they are listed and replayed like the others.
        self._file_parked = file_parked

    async def _ready(self) -> DeadLetterStore:
        """The store, with what the broker parked filed in it."""
        store = await self._store()
        if self._file_parked is not None:
            await self._file_parked()
        return store

    async def list(
        self,
        *,
        subscription: str | None = None,
        event_id: str | None = None,
        limit: int | None = 100,
    ) -> builtins.list[DeadLetter]:
        """Dead letters, newest first, optionally filtered."""
        store = await self._ready()
        return await store.dead_letters(event_id=event_id, subscription=subscription, limit=limit)

    async def get(self, event_id: str, *, subscription: str | None = None) -> DeadLetter | None:
        """The newest dead letter of ``event_id`` (in ``subscription`` if given), or None."""
        found = await self.list(event_id=event_id, subscription=subscription, limit=1)
        return found[0] if found else None

    async def replay(
        self, event_id: str | None = None, *, subscription: str | None = None
    ) -> builtins.list[DeadLetter]:
        """Deliver dead letters again, each to its own subscription only.

        With no arguments, replays everything. A replayed entry leaves the queue; its event
        starts again at attempt 1, and if it fails to the end it comes back with its new
        errors. Returns the entries replayed.
        """
        store = await self._ready()
        taken = await store.take_dead_letters(event_id=event_id, subscription=subscription)
        for index, entry in enumerate(taken):
            try:
                # A replay starts over: taking the entry forgot the pair's counters, its
                # crash-loop count and its spend (see CrashLoop, BudgetExceeded).
                await self._redeliver(entry.event, entry.subscription)
            except BaseException:
                for unsent in taken[index:]:  # nothing taken is lost
                    await store.add_dead_letter(unsent)
                raise
        return taken

    async def purge(self, event_id: str | None = None, *, subscription: str | None = None) -> int:
        """Delete dead letters (all of them with no arguments); return how many."""
        store = await self._ready()
        return len(await store.take_dead_letters(event_id=event_id, subscription=subscription))
