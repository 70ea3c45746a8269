"""The timer loop of a running bus: what is due in the store gets done.

Delayed events, schedules and the timeouts and answers of waits are all timers in the
bus's store (:class:`nerve.stores.base.Timers`): an id saying what it is, a due time and
a JSON body. Every running bus polls the store every ``settings.timer_poll`` seconds and
claims what is due; a claim holds a timer for ``lease`` seconds, so of many processes
sharing a store exactly one handles each timer at a time. The handler for a timer is
chosen by the id's prefix (``event:``, ``wait:``, ``schedule:``) and deletes or moves the
timer when done; a process dying mid-way leaves the timer to come due again when the
lease ends, so every handler is written to be safe to run twice.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping

from nerve import clock
from nerve.records import Timer
from nerve.stores.base import Timers
from nerve.tasks import stop_task

log = logging.getLogger("nerve")

#: Timers claimed per look at the store.
CLAIM_BATCH = 100
#: Seconds a claimed timer is held before another process may take it.
LEASE = 30.0
#: Longest pause between looks after the store failed, in seconds.
RETRY_MAX = 5.0

TimerHandler = Callable[[Timer], Awaitable[None]]


class TimerService:
    """Claims due timers and hands each to the handler of its id's prefix.

    Args:
        store: where the timers are.
        handlers: id prefix (up to and including the first ``:``) -> coroutine function.
        poll: seconds between looks when nothing is due.
        lease: seconds a claimed timer is held.
    """

    def __init__(
        self,
        store: Timers,
        handlers: Mapping[str, TimerHandler],
        *,
        poll: float,
        lease: float = LEASE,
    ) -> None:
        self._store = store
        self._handlers = dict(handlers)
        self._poll = poll
        self._lease = lease
        self._task: asyncio.Task[None] | None = None
        self._woken = asyncio.Event()

    def start(self) -> None:
        """Start looking for due timers (on the running loop)."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="nerve-timers")

    def wake(self) -> None:
        """Look now (a timer due sooner than the next poll was added)."""
        self._woken.set()

    async def stop(self) -> None:
        """Stop looking; a timer being handled is left to its lease."""
        task, self._task = self._task, None
        if task is not None:
            await stop_task(task)

    async def run_due(self) -> int:
        """Handle every timer due now, batch after batch; return how many were handled."""
        handled = 0
        while True:
            claimed = await self._store.claim_timers(clock.time(), self._lease, CLAIM_BATCH)
            # Timers are independent: a batch runs side by side (a hundred waits timing
            # out at once are a hundred resumes, each a few store round trips).
            await asyncio.gather(*(self._handle(timer) for timer in claimed))
            handled += len(claimed)
            if len(claimed) < CLAIM_BATCH:
                return handled

    async def _run(self) -> None:
        failures = 0
        while True:
            try:
                await self.run_due()
                failures = 0
                pause = self._poll
            except Exception:
                failures += 1
                pause = min(RETRY_MAX, self._poll * 2**failures)
                log.exception("could not claim due timers; looking again in %.1fs", pause)
            self._woken.clear()
            sleeper = asyncio.ensure_future(clock.sleep(pause))
            waker = asyncio.ensure_future(self._woken.wait())
            try:
                await asyncio.wait({sleeper, waker}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                sleeper.cancel()
                waker.cancel()

    async def _handle(self, timer: Timer) -> None:
        prefix = timer.timer_id.split(":", 1)[0] + ":"
        handler = self._handlers.get(prefix)
        if handler is None:
            log.warning("no handler for timer %s; it is left in the store", timer.timer_id)
            return
        try:
            await handler(timer)
        except Exception:
            log.exception(
                "timer %s failed; it comes due again in %.0fs", timer.timer_id, self._lease
            )
