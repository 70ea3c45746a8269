"""The loop watchdog: which handler held the event loop, and for how long.

A handler that blocks the event loop (a CPU-bound loop, a regex that backtracks, a
blocking client) stops every other handler, the HTTP intake and the health checks of its
process, and ``timeout=`` cannot interrupt it: a timeout is delivered by the very loop
that is held. That is a fault of the whole process, so nerve watches for it.

The loop beats (a timer every ``threshold / 2`` seconds); a thread of the watchdog looks
at the beat as often. When the loop has missed its beat by more than ``threshold``, the
thread looks at what the loop's thread is running (``sys._current_frames()``, the
documented way to sample another thread's stack; nothing on the handlers' path pays for
it) and, if a handler is on that stack, logs a warning naming the subscription, the event
and the line it is at, while the loop is still held. When the loop beats again, the
stall's length goes to the runner's observers (``Observer.blocked``: a metric).

One watchdog serves every bus of an event loop (started by the first bus to start,
stopped with the last). ``Settings.loop_watchdog`` is the threshold (0.1 s by default,
``NERVE_LOOP_WATCHDOG``; 0 turns it off). The cure is in the handler: move blocking work
off the loop with ``@bus.on(..., blocking=True)`` (a plain function, run in a thread) or
``await asyncio.to_thread(...)`` inside an async handler.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import threading
import time
import weakref
from types import FrameType
from typing import Any, Protocol

from nerve.transports.base import Delivery

log = logging.getLogger("nerve")


class Runner(Protocol):
    """What the watchdog needs of a subscription's runner (:mod:`nerve.runner`)."""

    @property
    def name(self) -> str:
        """The subscription's name."""
        ...

    def loop_blocked(self, delivery: Delivery, seconds: float) -> None:
        """Its handler held the loop ``seconds`` handling ``delivery``."""


#: The frames the watchdog looks for on the loop's stack: a runner handling a delivery.
#: Set by nerve.runner (it cannot be imported here: the runner is above this module).
_HANDLING: set[Any] = set()


def watch_frames_of(code: Any) -> None:
    """Treat frames running ``code`` (a coroutine function's ``__code__`` with ``self``, a
    :class:`Runner`, and ``delivery`` among its locals) as a handler's."""
    _HANDLING.add(code)


#: Each event loop's watchdog.
_BY_LOOP: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, LoopWatchdog] = (
    weakref.WeakKeyDictionary()
)


class LoopWatchdog:
    """Watches one event loop; see the module's docstring."""

    @classmethod
    def acquire(cls, threshold: float) -> LoopWatchdog | None:
        """The running loop's watchdog, started if it was not (None if ``threshold`` is 0).

        Every ``acquire`` is paired with a :meth:`release`.
        """
        if threshold <= 0:
            return None
        loop = asyncio.get_running_loop()
        watchdog = _BY_LOOP.get(loop)
        if watchdog is None:
            watchdog = _BY_LOOP[loop] = cls(loop, threshold)
            watchdog._start()
        watchdog._users += 1
        return watchdog

    def __init__(self, loop: asyncio.AbstractEventLoop, threshold: float) -> None:
        self.threshold = threshold
        self._loop = loop
        self._interval = threshold / 2
        self._beat = time.monotonic()
        self._timer: asyncio.TimerHandle | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._loop_thread = threading.get_ident()
        self._users = 0

    def release(self) -> None:
        """One user less; the last one stops the watchdog."""
        self._users -= 1
        if self._users > 0:
            return
        _BY_LOOP.pop(self._loop, None)
        self._stop.set()
        if self._timer is not None:
            self._timer.cancel()
        if self._thread is not None:
            self._thread.join(timeout=1.0)

    # the loop's side

    def _start(self) -> None:
        self._tick()
        self._thread = threading.Thread(target=self._watch, name="nerve-watchdog", daemon=True)
        self._thread.start()

    def _tick(self) -> None:
        self._beat = time.monotonic()
        self._timer = self._loop.call_later(self._interval, self._tick)

    # the watchdog's thread

    def _watch(self) -> None:
        stalled: tuple[Runner, Delivery] | None = None
        stall_beat = 0.0
        while not self._stop.wait(self._interval):
            beat = self._beat
            late = time.monotonic() - beat - self._interval
            if stalled is None and late > self.threshold and beat != stall_beat:
                stall_beat = beat
                stalled = self._report_stall(late)
            elif beat != stall_beat and stall_beat:
                if stalled is not None:
                    # How long the loop was held: from its last beat before the stall to
                    # the first after, less the beat interval itself.
                    held = max(0.0, beat - stall_beat - self._interval)
                    runner, delivery = stalled
                    self._loop.call_soon_threadsafe(runner.loop_blocked, delivery, held)
                stalled, stall_beat = None, 0.0

    def _report_stall(self, late: float) -> tuple[Runner, Delivery] | None:
        frame = sys._current_frames().get(self._loop_thread)  # documented
        if frame is None:
            return None
        where = f"{frame.f_code.co_filename}:{frame.f_lineno} in {frame.f_code.co_name}"
        found = _handler_of(frame)
        if found is None:
            log.debug("the event loop has been held for %.0f ms (at %s)", late * 1000, where)
            return None
        runner, delivery = found
        event = delivery.event
        log.warning(
            "handler of %s has held the event loop for %.0f ms so far, handling %s %s "
            "(at %s): every other handler waits; move blocking work off the loop "
            "(blocking=True, or asyncio.to_thread)",
            runner.name,
            late * 1000,
            event.event_type,
            event.event_id,
            where,
        )
        return found


def _handler_of(frame: FrameType | None) -> tuple[Runner, Delivery] | None:
    """The runner and delivery of the handler on this stack, if one is on it."""
    while frame is not None:
        if frame.f_code in _HANDLING:
            local = frame.f_locals
            runner, delivery = local.get("self"), local.get("delivery")
            if runner is not None and delivery is not None:
                return runner, delivery
        frame = frame.f_back
    return None
