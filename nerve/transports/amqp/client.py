"""Living with aio-pika and aiormq: what they raise, the channel a message came on, a write
that gives up once its connection is lost, and what their failures become for nerve."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from contextlib import asynccontextmanager, contextmanager, suppress
from typing import Any, Final

from aio_pika.abc import AbstractIncomingMessage
from aiormq.abc import AbstractChannel
from aiormq.exceptions import AMQPError, ChannelInvalidStateError, ChannelNotFoundEntity
from pamqp.exceptions import PAMQPException

from nerve.exceptions import BusFull, TransportError

__all__ = [
    "CLIENT_ERRORS",
    "channel_of",
    "confirm_within",
    "ready_count",
    "settle_quietly",
    "translate",
    "unless_lost",
]

#: What aio-pika and aiormq raise when the broker or the connection fails: AMQP errors,
#: socket errors, and RuntimeError for a channel or connection found closed
#: (ChannelInvalidStateError, "connection closed").
CLIENT_ERRORS: Final = (AMQPError, PAMQPException, OSError, RuntimeError)


def channel_of(message: AbstractIncomingMessage) -> AbstractChannel | None:
    """The channel ``message`` came on, or None once it is closed (the broker has the
    message back)."""
    try:
        channel = message.channel
    except ChannelInvalidStateError:
        return None
    return None if channel.is_closed else channel


async def unless_lost(channel: AbstractChannel, operation: Coroutine[Any, Any, None]) -> None:
    """Await ``operation``, which writes on ``channel``, unless its connection is lost first.

    aiormq hands frames to a connection's writer through a queue of ten. When the
    connection dies while that queue is full, an acknowledgement waiting for room in it
    waits for ever: nothing reads the queue again, and nothing wakes the wait (measured:
    190 of 200 acknowledgements stuck after a broker kill). What was to be settled on a
    lost connection is back in its queue at the broker already, so giving up is right.
    """
    task = asyncio.ensure_future(operation)
    lost = channel.connection.closing
    try:
        await asyncio.wait((task, lost), return_when=asyncio.FIRST_COMPLETED)
    finally:
        lost.cancel()  # an observer of the closing only
        if not task.done():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
    if not task.cancelled():
        task.result()


async def settle_quietly(
    message: AbstractIncomingMessage, settle: Callable[[], Coroutine[Any, Any, None]]
) -> None:
    """Settle ``message`` on its channel by ``settle`` (its ack, nack or reject), giving
    up without a word if the channel or its connection is lost: the broker has it back."""
    channel = channel_of(message)
    if channel is not None:
        with suppress(*CLIENT_ERRORS):
            await unless_lost(channel, settle())


async def ready_count(channel: AbstractChannel, queue: str) -> int | None:
    """The ready messages of ``queue`` (every process's), or None if there is no such
    queue; asked by a passive declaration, which closes ``channel`` if it is missing."""
    try:
        declared = await channel.queue_declare(queue, passive=True)
    except ChannelNotFoundEntity:
        return None
    return int(declared.message_count or 0)


@contextmanager
def translate(where: str, doing: str) -> Iterator[None]:
    """Raise the client's failures while ``doing`` as :class:`nerve.TransportError`."""
    try:
        yield
    except CLIENT_ERRORS as exc:
        raise TransportError(f"RabbitMQ at {where}: {doing} failed: {exc!r}") from exc


@asynccontextmanager
async def confirm_within(
    timeout: float | None,
    doing: str,
    *,
    where: str,
    connected: Callable[[], bool],
) -> AsyncIterator[None]:
    """Bound the wait for the broker's confirm by ``timeout`` (None: no bound).

    Past it, ``connected()`` tells a blocked broker (:class:`nerve.BusFull`) from a lost
    connection (:class:`nerve.TransportError`).
    """
    try:
        async with asyncio.timeout(timeout) as scope:
            yield
    except TimeoutError:
        if not scope.expired():
            raise
        if connected():
            raise BusFull(
                f"RabbitMQ at {where} did not confirm {doing} within {timeout}s "
                "(a memory or disk alarm blocks publishers)"
            ) from None
        raise TransportError(
            f"RabbitMQ at {where} is unreachable: {doing} timed out after "
            f"{timeout}s while reconnecting"
        ) from None
