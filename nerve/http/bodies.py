"""Request bodies: read within the size limit and in time, parsed as JSON within the depth limit.

:func:`read_body` is the one body reader: the fast path and every route read through it,
straight from the ASGI ``receive`` channel. :class:`BodyDeadlines` bounds how long a body
may take to arrive, so a client sending one byte a second cannot hold a request open.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Mapping
from typing import Any

import orjson
from starlette.types import Receive

from nerve import clock
from nerve.http.problems import HTTPProblem
from nerve.http.settings import ORJSON_MAX_DEPTH


class BodyDeadlines:
    """The requests reading a body, and the time by which each must have it all.

    One timer for all of them rather than one per request: ``asyncio.timeout`` around each
    read costs ~4 us a request (4% of the trivial intake, measured), and so would reading
    the clock. The timer ticks every ``timeout / 4`` seconds (at most every second) while
    a body is being read; a reader is stamped with the tick it began at and cancelled once
    a whole timeout's worth of ticks has passed (so after ``timeout`` to ``timeout`` plus
    a tick), which :func:`read_body` answers with a 408.

    Args:
        timeout: seconds a whole body may take to arrive.
    """

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self._every = min(1.0, timeout / 4)
        self._ticks = math.ceil(timeout / self._every)
        self._tick = 0
        self._reading: dict[asyncio.Task[Any], int] = {}
        self._overdue: set[asyncio.Task[Any]] = set()
        self._timer: asyncio.TimerHandle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def enter(self) -> asyncio.Task[Any] | None:
        """Start the deadline of the current task's body."""
        task = asyncio.current_task()
        if task is None:  # pragma: no cover - ASGI apps run in tasks
            return None
        self._reading[task] = self._tick
        if self._timer is None or self._loop is None or self._loop.is_closed():
            self._loop = task.get_loop()  # the first reader, or one on a new loop (tests)
            self._timer = clock.call_later(self._every, self._sweep)
        return task

    def leave(self, task: asyncio.Task[Any] | None) -> None:
        """The task has its body, or gave up on it."""
        if task is not None:
            self._reading.pop(task, None)
            self._overdue.discard(task)

    def timed_out(self, task: asyncio.Task[Any] | None) -> bool:
        """Whether ``task`` was cancelled for its deadline, and by nothing else.

        Withdraws that cancellation (``Task.uncancel``): the task goes on to answer 408.
        """
        if task is None or task not in self._overdue:
            return False
        self._overdue.discard(task)
        return task.uncancel() == 0  # another cancellation (a shutdown) still stands

    def _sweep(self) -> None:
        self._timer = None
        self._tick += 1
        for task, began in list(self._reading.items()):
            if self._tick - began > self._ticks and task not in self._overdue:
                self._overdue.add(task)
                task.cancel()
        if self._reading:
            self._timer = clock.call_later(self._every, self._sweep)


async def read_body(
    headers: Mapping[str, str], receive: Receive, limit: int, deadlines: BodyDeadlines
) -> bytes:
    """The body, refused past ``limit`` bytes (on Content-Length, or while streaming) or
    when it is not all there within ``deadlines.timeout`` seconds.

    Raises:
        HTTPProblem: 413 too large, 408 too slow, 400 bad Content-Length or the client
            gone mid-body.
    """
    declared = headers.get("content-length")
    if declared is not None:
        check_length(declared, limit)
    chunks: list[bytes] = []
    size = 0
    task = deadlines.enter()
    try:
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise HTTPProblem(400, "bad_request", "the client went away mid-body")
            chunk: bytes = message.get("body", b"")
            if chunk:
                size += len(chunk)
                if size > limit:
                    raise too_large(size, limit)
                chunks.append(chunk)
            if not message.get("more_body", False):
                return chunks[0] if len(chunks) == 1 else b"".join(chunks)
    except asyncio.CancelledError:
        if not deadlines.timed_out(task):
            raise
        raise HTTPProblem(
            408,
            "timeout",
            f"the body did not arrive within {deadlines.timeout:g} s; send it at once",
            headers={"Connection": "close"},  # what is still on its way is not read
        ) from None
    finally:
        deadlines.leave(task)


def check_length(declared: str, limit: int) -> None:
    """Refuse a declared Content-Length over the limit before reading the body.

    Raises:
        HTTPProblem: 413 too large, 400 not a number.
    """
    try:
        size = int(declared)
    except ValueError:
        raise HTTPProblem(400, "bad_request", "Content-Length is not a number") from None
    if size > limit:
        raise too_large(size, limit)


def too_large(size: int, limit: int) -> HTTPProblem:
    """The 413 for a body of ``size`` bytes (or more)."""
    return HTTPProblem(413, "too_large", f"the body has {size} bytes or more; the limit is {limit}")


def parse_json(body: bytes, max_depth: int) -> Any:
    """The JSON in ``body``.

    Raises:
        HTTPProblem: 400 not JSON, 422 nested past ``max_depth``.
    """
    if not body:
        raise HTTPProblem(400, "invalid_json", "the body is empty; send a JSON document")
    try:
        value = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        if "depth" in exc.msg or "recursion" in exc.msg.lower():  # orjson's own limit
            raise _too_deep(min(max_depth, ORJSON_MAX_DEPTH)) from None
        raise HTTPProblem(400, "invalid_json", f"the body is not valid JSON: {exc}") from None
    # Nesting needs a bracket per level: with no more brackets than levels allowed (most
    # bodies), there is nothing to walk.
    if body.count(b"[") + body.count(b"{") > max_depth and too_deep(value, max_depth):
        raise _too_deep(max_depth)
    return value


def _too_deep(max_depth: int) -> HTTPProblem:
    return HTTPProblem(422, "too_deep", f"the JSON nests deeper than {max_depth} levels")


def too_deep(value: Any, limit: int) -> bool:
    """Whether objects and arrays nest deeper than ``limit`` levels in ``value``."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        children = item.values() if type(item) is dict else item if type(item) is list else ()
        for child in children:
            if type(child) is dict or type(child) is list:
                if depth + 1 > limit:
                    return True
                stack.append((child, depth + 1))
    return False
