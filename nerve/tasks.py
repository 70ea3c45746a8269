"""Stopping a background task for sure.

Client libraries can swallow a cancellation that lands while a command is under way
(redis-py, redis/redis-py#2028; nats-py and aio-pika under Python 3.11's
``asyncio.wait_for``): the task goes on as if nothing happened. A loop that must end at
``stop()`` is therefore cancelled again until it has ended.
"""

from __future__ import annotations

import asyncio

#: How often, and how many times, :func:`stop_task` repeats the cancellation.
STOP_POLL = 0.05
STOP_TRIES = 100


async def stop_task(task: asyncio.Task[None]) -> None:
    """Cancel ``task`` until it has ended (at most ``STOP_POLL * STOP_TRIES`` seconds of
    insisting), then collect its outcome."""
    for _ in range(STOP_TRIES):
        task.cancel()
        done, _pending = await asyncio.wait({task}, timeout=STOP_POLL)
        if done:
            break
    await asyncio.gather(task, return_exceptions=True)
