"""Gathering a batch subscription's deliveries into batches (``Batch`` in nerve.flow).

The runner hands every delivery it receives to a :class:`Batcher` instead of running the
handler on it; the batcher keeps them per key and hands a batch to ``run`` when a key has
``max_size`` of them, or ``max_wait`` after the key's first, whichever comes first. At
stop, what is gathered is run (:meth:`Batcher.close`) or, past the grace, released by the
runner like any unstarted delivery.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence

from nerve import clock
from nerve.flow.controls import Batch, key_of
from nerve.transports.base import Delivery


class Batcher:
    """Gathers deliveries per key and runs them as batches.

    Args:
        batch: the sizes and the key.
        run: runs one batch (the runner's handler call and settlement).
        limit: batches run at once, at most.
    """

    def __init__(
        self, batch: Batch, run: Callable[[Sequence[Delivery]], Awaitable[None]], limit: int
    ) -> None:
        self._batch = batch
        self._run = run
        self._gathering: dict[str, list[Delivery]] = {}
        self._timers: dict[str, asyncio.TimerHandle] = {}
        self._running: set[asyncio.Task[None]] = set()
        self._slots = asyncio.Semaphore(limit)

    @property
    def running(self) -> set[asyncio.Task[None]]:
        """The batch runs under way."""
        return set(self._running)

    @property
    def gathered(self) -> int:
        """Deliveries gathered and not yet handed to a batch run."""
        return sum(len(group) for group in self._gathering.values())

    def add(self, delivery: Delivery) -> None:
        """Gather one delivery; start its key's batch if it is full."""
        key = key_of(self._batch.key, delivery.event)
        group = self._gathering.setdefault(key, [])
        group.append(delivery)
        if len(group) >= self._batch.max_size:
            self._flush(key)
        elif len(group) == 1:
            self._timers[key] = clock.call_later(self._batch.seconds, lambda: self._flush(key))

    def take_all(self) -> list[Delivery]:
        """Every gathered delivery, no longer gathered (for release at stop)."""
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
        taken = [d for group in self._gathering.values() for d in group]
        self._gathering.clear()
        return taken

    async def close(self) -> None:
        """Wait for the batches running now."""
        if self._running:
            await asyncio.gather(*self._running, return_exceptions=True)

    def _flush(self, key: str) -> None:
        timer = self._timers.pop(key, None)
        if timer is not None:
            timer.cancel()
        group = self._gathering.pop(key, [])
        if group:
            task = asyncio.get_running_loop().create_task(self._guarded(group), name="nerve-batch")
            self._running.add(task)
            task.add_done_callback(self._running.discard)

    async def _guarded(self, group: Sequence[Delivery]) -> None:
        async with self._slots:
            await self._run(group)
