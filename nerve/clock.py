"""The clock the core reads and sleeps by: one seam for time.

Every place the core reads the time or waits for it to pass (backoff, leases, idle
waits, idempotency windows, retention, timers) goes through the module functions here,
which ask the current :class:`Clock`. Nothing changes by default: the system clock and
``asyncio``. The seam lets a test (and, later, nerve's testing kit) install a clock of
its own with :func:`use`, so that time can be made virtual without touching the core.

Handler timeouts are the one exception: ``asyncio.timeout`` runs on the event loop's
own clock.
"""

from __future__ import annotations

import asyncio
import time as _time
from collections.abc import Callable
from datetime import UTC, datetime

__all__ = ["Clock", "call_later", "monotonic", "now", "sleep", "time", "use"]


class Clock:
    """The system clock. Subclass it to make time run otherwise."""

    def time(self) -> float:
        """Wall-clock time, in seconds since the epoch."""
        return _time.time()

    def monotonic(self) -> float:
        """A clock that never goes back, for intervals and deadlines."""
        return _time.monotonic()

    def now(self) -> datetime:
        """The current time, UTC."""
        return datetime.now(UTC)

    async def sleep(self, seconds: float) -> None:
        """Let ``seconds`` pass."""
        await asyncio.sleep(seconds)

    def call_later(self, delay: float, callback: Callable[[], object]) -> asyncio.TimerHandle:
        """Call ``callback`` once ``delay`` seconds have passed (on the running loop)."""
        return asyncio.get_running_loop().call_later(delay, callback)


_current = Clock()


def use(clock: Clock) -> Clock:
    """Make ``clock`` the one the core reads; return the one it replaces."""
    global _current  # the seam itself
    previous, _current = _current, clock
    return previous


def time() -> float:
    """:meth:`Clock.time` of the current clock."""
    return _current.time()


def monotonic() -> float:
    """:meth:`Clock.monotonic` of the current clock."""
    return _current.monotonic()


def now() -> datetime:
    """:meth:`Clock.now` of the current clock."""
    return _current.now()


async def sleep(seconds: float) -> None:
    """:meth:`Clock.sleep` of the current clock."""
    await _current.sleep(seconds)


def call_later(delay: float, callback: Callable[[], object]) -> asyncio.TimerHandle:
    """:meth:`Clock.call_later` of the current clock."""
    return _current.call_later(delay, callback)
