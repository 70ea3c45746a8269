"""The wait queues retries wait in for their delay, and the care a new one needs.

A retry is re-published to the delay exchange, which routes it by its ``nerve-delay``
header to the wait queue of its delay step (``{prefix}.wait.{ms}``, ``x-message-ttl`` =
ms); when the TTL expires the queue dead-letters it back to the subscription's queue.
:class:`WaitQueues` declares them (again before they expire), holds a retry's original
while its wait queue is new (:data:`WAIT_REGISTERED`), and checks a wait queue whose
confirm is slow, deleting one left without a leader (:data:`REQUEUE_CONFIRM`,
:data:`CHECK_ANSWER`, :data:`CHECK_TIMEOUT`): RabbitMQ 3.10's quorum queues need it.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager, suppress
from typing import Any, Final

import aio_pika
from aio_pika.abc import AbstractRobustChannel
from aiormq.exceptions import ChannelNotFoundEntity, PublishError

from nerve import clock
from nerve.exceptions import TransportError
from nerve.transports.amqp.client import CLIENT_ERRORS
from nerve.transports.amqp.delivery import AMQPDelivery
from nerve.transports.amqp.wire import DELAY_HEADER, DELAY_NAME, WAIT_NAME, quorum_queue

__all__ = [
    "CHECK_ANSWER",
    "CHECK_TIMEOUT",
    "DELAY_STEPS_MS",
    "MIN_DELAY",
    "REQUEUE_CONFIRM",
    "WAIT_REGISTERED",
    "WaitQueues",
    "delay_step_ms",
]

log = logging.getLogger("nerve")

#: Delay steps in milliseconds: 1, 1.5, 2, 3, 5, 7 x 10^k from 10 ms, and one day.
DELAY_STEPS_MS: Final = (
    *(int(m * 10**k) for k in range(1, 8) for m in (1, 1.5, 2, 3, 5, 7)),
    86_400_000,
)
#: Retries due sooner than this go straight back to the subscription's queue.
MIN_DELAY: Final = 0.005
#: A wait queue deletes itself once unused for its TTL plus this long...
WAIT_EXPIRES_MARGIN_MS: Final = 300_000
#: ...so it is re-declared (which counts as use) when this process last did so this long ago.
WAIT_REDECLARE: Final = 60.0
#: RabbitMQ 3.10 (its Raft library, ra 2.2) writes a new quorum queue's registration to
#: disk up to 500 ms after the declaration (``names.dets``, ``auto_save`` 500): a queue
#: declared just before the node crashes comes back without a leader, holding what it had
#: and never confirming a publish (measured: lost at 0.3 and 0.5 s, kept at 1.5 s; see
#: rabbitmq-server #10070). A retry parked in a wait queue this process declared less
#: than this long ago keeps its original delivery unacknowledged until then (in the
#: background: the worker goes on).
WAIT_REGISTERED: Final = 2.0
#: A retry's publish to a wait queue not confirmed within this long has the queue checked
#: (:meth:`WaitQueues.delete_if_leaderless`): one without a leader is deleted and the delivery
#: handed back; a sound one (a memory alarm blocks publishers) is waited for, and checked
#: again after as long.
REQUEUE_CONFIRM: Final = 5.0
#: How long the check waits for a wait queue's answer before it takes the queue for one
#: without a leader: long, since deleting a sound one would lose the retries it holds.
CHECK_ANSWER: Final = 30.0
#: The longest a wait queue's check takes (connecting, asking, deleting).
CHECK_TIMEOUT: Final = 60.0


def delay_step_ms(delay: float) -> int:
    """The wait queue step (ms) nearest to ``delay`` seconds, on a log scale."""
    ms = max(delay * 1000, DELAY_STEPS_MS[0])
    return min(DELAY_STEPS_MS, key=lambda step: abs(math.log(step / ms)))


class WaitQueues:
    """The wait queues of a prefix, as this process uses them.

    Args:
        prefix: the transport's prefix.
        client_url: the URL for aio-pika, to check a wait queue on a connection of its own.
        where: ``host:port/vhost``, for messages.
    """

    def __init__(self, prefix: str, client_url: str, where: str) -> None:
        self.prefix = prefix
        self.delay_name = DELAY_NAME.format(prefix=prefix)
        self._client_url = client_url
        self._where = where
        self._declared: dict[int, float] = {}  # wait queue step (ms) -> when declared here
        self._made: dict[int, float] = {}  # ... -> when it may have been created
        self._checks: dict[int, asyncio.Task[bool]] = {}  # wait queues being checked
        self._holding: set[asyncio.Task[None]] = set()  # retries' originals held (below)

    def name(self, step: int) -> str:
        """The wait queue of ``step`` ms."""
        return WAIT_NAME.format(prefix=self.prefix, ms=step)

    @property
    def steps(self) -> list[int]:
        """The steps of the wait queues this process declared (and has not seen go)."""
        return list(self._declared)

    def forget(self, step: int) -> None:
        """The wait queue of ``step`` is gone (expired or deleted)."""
        self._declared.pop(step, None)
        self._made.pop(step, None)

    async def close(self) -> None:
        """Forget every wait queue; end the checks and the holds (the originals held stay
        unacknowledged: closing the connection returns them)."""
        self._declared.clear()
        self._made.clear()
        background: list[asyncio.Task[Any]] = [*self._checks.values(), *self._holding]
        for task in background:
            task.cancel()
        await asyncio.gather(*background, return_exceptions=True)
        self._checks.clear()

    # publishing a retry

    async def publish(
        self,
        message: aio_pika.Message,
        queue: str,
        delay: float,
        *,
        publisher: AbstractRobustChannel,
        control: AbstractRobustChannel,
    ) -> int:
        """Publish a retry to the wait queue of the step nearest ``delay``; return the step.

        ``queue`` is the subscription's (the routing key it is dead-lettered back by),
        ``publisher`` the confirming channel, ``control`` the one that declares.
        """
        step = delay_step_ms(delay)
        if delay * 1000 > DELAY_STEPS_MS[-1]:
            log.warning("a retry delay of %.0fs is cut to a day", delay)
        message.headers[DELAY_HEADER] = str(step)
        exchange = await publisher.get_exchange(self.delay_name, ensure=False)

        async def publish() -> None:
            sending = asyncio.ensure_future(
                exchange.publish(message, routing_key=queue, mandatory=True)
            )
            try:
                # Slow to confirm: a broker under a memory alarm (wait, spending no
                # attempt), or a wait queue without a leader (never: hand the event back).
                while not await _done_within(sending, REQUEUE_CONFIRM):
                    if await asyncio.shield(self.check(step)):
                        raise TransportError(
                            f"RabbitMQ at {self._where}: wait queue {step} ms had no leader"
                        )
                sending.result()
            finally:
                sending.cancel()  # if it is still on its way; its outcome is read either way
                await asyncio.gather(sending, return_exceptions=True)

        await self.declare(step, control, force=False)
        try:
            await publish()
        except PublishError:  # unroutable: the wait queue expired behind our back
            await self.declare(step, control, force=True)
            await publish()
        return step

    async def declare(self, step: int, control: AbstractRobustChannel, *, force: bool) -> None:
        """Declare the wait queue of ``step`` unless this process did so lately (``force``:
        even then)."""
        last = self._declared.get(step, -math.inf)
        if not force and clock.monotonic() - last < WAIT_REDECLARE:
            return
        # This declaration may create the queue (not registered on disk yet): the first
        # here, a forced one, or one after a pause long enough for it to have expired.
        expiry = (step + WAIT_EXPIRES_MARGIN_MS) / 1000
        new = force or clock.monotonic() - last > expiry
        queue = await control.declare_queue(
            self.name(step),
            durable=True,
            # Dead-lettered through the default exchange (x-dead-letter-exchange ""): back
            # by its routing key: the subscription.
            arguments=quorum_queue(
                {"x-message-ttl": step, "x-expires": step + WAIT_EXPIRES_MARGIN_MS}
            ),
            robust=False,  # re-declared on use; after its expiry it need not come back
        )
        await queue.bind(self.delay_name, "", arguments={"x-match": "all", DELAY_HEADER: str(step)})
        self._declared[step] = clock.monotonic()
        if new:
            self._made[step] = clock.monotonic()

    # holding a retry's original while its wait queue is new

    async def settle_when_registered(
        self,
        step: int,
        original: AMQPDelivery,
        settle: Callable[[AMQPDelivery], Awaitable[None]],
    ) -> None:
        """Settle a retry's ``original`` (by ``settle``) now, or in the background once the
        wait queue of ``step`` is :data:`WAIT_REGISTERED` seconds old."""
        hold = self._made.get(step, -math.inf) + WAIT_REGISTERED - clock.monotonic()
        if hold > 0:  # its copy is in a queue a crash could still take with it
            task = asyncio.create_task(self._settle_after(original, hold, settle))
            self._holding.add(task)
            task.add_done_callback(self._holding.discard)
            return
        await settle(original)

    async def _settle_after(
        self,
        original: AMQPDelivery,
        delay: float,
        settle: Callable[[AMQPDelivery], Awaitable[None]],
    ) -> None:
        """Acknowledge a retry's original once its wait queue is registered."""
        await clock.sleep(delay)
        try:
            await settle(original)
        except TransportError as exc:  # its connection is lost: the broker has it back
            log.debug("could not acknowledge %s: %s", original.event.event_id, exc)

    # checking a wait queue whose confirm is slow

    def check(self, step: int) -> asyncio.Task[bool]:
        """The check of the wait queue of ``step``: one at a time, shared by its callers."""
        check = self._checks.get(step)
        if check is None:
            check = asyncio.create_task(
                self.delete_if_leaderless(step), name=f"nerve-amqp-check:{step}"
            )
            self._checks[step] = check
            check.add_done_callback(lambda _: self._checks.pop(step, None))
        return check

    async def delete_if_leaderless(self, step: int) -> bool:
        """A wait queue left a retry unconfirmed: delete it (and return True) if it has no
        leader.

        Asked on a connection of its own (one that never published, so a memory alarm
        that blocks publishers does not block it), a queue that answers a ``basic.get``
        is sound (the broker was only slow) and stays. One that does not answer is a
        quorum queue that came back from a crash without its Raft registration
        (:data:`WAIT_REGISTERED`): nothing it holds can come out, and nothing in it was
        acknowledged on the strength of it, since a retry's original is held until its
        wait queue is registered. It is deleted, and the next retry declares it anew.
        """
        name = self.name(step)
        try:
            async with _deadline(CHECK_TIMEOUT):
                return await self._delete_if_leaderless(step, name)
        except (TimeoutError, *CLIENT_ERRORS):
            log.warning("could not check wait queue %s at %s", name, self._where, exc_info=True)
            return False

    async def _delete_if_leaderless(self, step: int, name: str) -> bool:
        connection = await aio_pika.connect(self._client_url, timeout=10)
        try:
            channel = await connection.channel(publisher_confirms=False)
            try:
                async with _deadline(CHECK_ANSWER):
                    queue = await channel.get_queue(name, ensure=False)
                    message = await queue.get(fail=False)
            except TimeoutError:
                pass  # no leader: below
            except ChannelNotFoundEntity:  # deleted by an earlier check: nothing will confirm
                self.forget(step)
                return True
            else:
                if message is not None:
                    await message.nack(requeue=True)
                return False  # it answers: sound
            log.error(
                "RabbitMQ at %s: wait queue %s does not answer: a quorum queue declared just "
                "before the broker crashed comes back without a leader (RabbitMQ 3.10, "
                "rabbitmq-server #10070); deleting it, the next retry declares it again",
                self._where,
                name,
            )
            channel = await connection.channel(publisher_confirms=False)
            await channel.queue_delete(name)
            self.forget(step)
            return True
        finally:
            with suppress(*CLIENT_ERRORS):
                await connection.close()


async def _done_within(task: asyncio.Future[Any], seconds: float) -> bool:
    """Wait for ``task`` at most ``seconds`` (on :mod:`nerve.clock`); whether it is done."""
    timer = asyncio.ensure_future(clock.sleep(seconds))
    try:
        await asyncio.wait((task, timer), return_when=asyncio.FIRST_COMPLETED)
    finally:
        timer.cancel()
    return task.done()


@asynccontextmanager
async def _deadline(seconds: float) -> AsyncIterator[None]:
    """``asyncio.timeout(seconds)``, with the seconds counted on :mod:`nerve.clock`."""
    async with asyncio.timeout(None) as scope:
        loop = asyncio.get_running_loop()
        expire = clock.call_later(seconds, lambda: scope.reschedule(loop.time()))
        try:
            yield
        finally:
            expire.cancel()
