"""``memory://``: asyncio in-process, the fastest transport; nothing survives the process.

Each subscription has a bounded queue; ``publish`` routes through a per-event-type cache
and appends to the queues of the matching subscriptions, waiting while one of them is at
``max_pending``. Retries are re-enqueued by ``loop.call_later``.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Sequence
from typing import Any, Self

from nerve.events import Event
from nerve.exceptions import BusClosed, BusFull, ConfigurationError, SubscriptionError
from nerve.routing import Router
from nerve.settings import Settings
from nerve.subscription import StartFrom
from nerve.transports.base import Delivery, Transport

DEFAULT_MAX_PENDING = 10_000


class _Channel:
    """One subscription's queue, with the futures of those waiting on it."""

    __slots__ = ("getters", "items", "name", "room_waiters")

    def __init__(self, name: str) -> None:
        self.name = name
        self.items: deque[MemoryDelivery] = deque()
        self.getters: deque[asyncio.Future[None]] = deque()
        self.room_waiters: deque[asyncio.Future[None]] = deque()


def _wake_one(waiters: deque[asyncio.Future[None]]) -> None:
    while waiters:
        fut = waiters.popleft()
        if not fut.done():
            fut.set_result(None)
            return


class MemoryDelivery(Delivery):
    __slots__ = ("_transport",)

    def __init__(
        self, transport: MemoryTransport, event: Event[Any], subscription: str, attempt: int
    ) -> None:
        # Delivery.__init__ inlined: one of these is made per event per subscription.
        self.event = event
        self.subscription = subscription
        self.attempt = attempt
        self.settled = False
        self._transport = transport

    async def _ack(self) -> None:
        self._transport._finish(self)

    async def _reject(self) -> None:
        self._transport._finish(self)

    async def _nack(self, delay: float) -> None:
        self._transport._redeliver(self, delay)


class MemoryTransport(Transport):
    """In-process transport.

    Args:
        url: ``memory://`` (no options).
        max_pending: per subscription, how many events may wait before ``publish`` waits.
    """

    durable = False

    def __init__(self, url: str = "memory://", *, max_pending: int = DEFAULT_MAX_PENDING) -> None:
        if max_pending < 1:
            raise ConfigurationError(f"max_pending must be >= 1, got {max_pending}")
        self.url = url
        self.max_pending = max_pending
        self._low_water = max_pending // 2
        self._router: Router[_Channel] = Router()
        self._channels: dict[str, _Channel] = {}
        self._outstanding: set[MemoryDelivery] = set()
        self._timers: set[asyncio.TimerHandle] = set()
        self._idle = asyncio.Event()
        self._idle.set()
        self._closed = False

    @classmethod
    def from_url(cls, url: str, settings: Settings) -> Self:
        return cls(url, max_pending=settings.max_pending)

    async def connect(self) -> None:
        self._closed = False

    async def declare(self, subscription: str, pattern: str, *, start_from: StartFrom) -> None:
        if subscription in self._channels:
            return
        channel = _Channel(subscription)
        self._channels[subscription] = channel
        self._router.add(pattern, channel)

    async def publish(
        self, event: Event[Any], *, subscription: str | None = None, timeout: float | None = None
    ) -> None:
        if self._closed:
            raise BusClosed("the in-memory transport is closed")
        if subscription is None:
            targets = self._router.match(event.event_type)
        else:
            try:
                targets = (self._channels[subscription],)
            except KeyError:
                raise SubscriptionError(f"no subscription named {subscription!r}") from None
        for channel in targets:
            if len(channel.items) >= self.max_pending:
                await self._wait_for_room(channel, timeout)
        outstanding = self._outstanding
        if targets and not outstanding:
            self._idle.clear()
        for channel in targets:
            delivery = MemoryDelivery(self, event, channel.name, 1)
            outstanding.add(delivery)
            channel.items.append(delivery)
            if channel.getters:
                _wake_one(channel.getters)

    async def receive(self, subscription: str, max_items: int) -> Sequence[Delivery]:
        channel = self._channels[subscription]
        items = channel.items
        while not items:
            if self._closed:
                return ()
            fut = asyncio.get_running_loop().create_future()
            channel.getters.append(fut)
            try:
                await fut
            finally:
                if not fut.done():
                    fut.cancel()
        if len(items) <= max_items:
            batch = list(items)
            items.clear()
        else:
            batch = [items.popleft() for _ in range(max_items)]
        if channel.room_waiters and len(items) <= self._low_water:
            # Wake publishers only once the queue has drained to half: each then publishes
            # many events in a row instead of trading places with the consumer per event.
            while channel.room_waiters:
                _wake_one(channel.room_waiters)
        return batch

    async def ack_many(self, deliveries: Sequence[Delivery]) -> None:
        outstanding = self._outstanding
        for delivery in deliveries:
            if not delivery.settled:
                delivery.settled = True
                outstanding.discard(delivery)
        if not outstanding:
            self._idle.set()

    async def wait_idle(self) -> None:
        while self._outstanding:
            await self._idle.wait()

    async def close(self) -> list[Delivery]:
        self._closed = True
        for timer in self._timers:
            timer.cancel()
        self._timers.clear()
        for channel in self._channels.values():
            for waiters in (channel.getters, channel.room_waiters):
                while waiters:
                    _wake_one(waiters)
            channel.items.clear()
        lost: list[Delivery] = list(self._outstanding)
        self._outstanding.clear()
        self._idle.set()
        return lost

    # internals used by MemoryDelivery

    def _put(self, channel: _Channel, delivery: MemoryDelivery) -> None:
        if not self._outstanding:
            self._idle.clear()
        self._outstanding.add(delivery)
        self._enqueue(channel, delivery)

    def _enqueue(self, channel: _Channel, delivery: MemoryDelivery) -> None:
        channel.items.append(delivery)
        if channel.getters:
            _wake_one(channel.getters)

    def _finish(self, delivery: MemoryDelivery) -> None:
        self._outstanding.discard(delivery)
        if not self._outstanding:
            self._idle.set()

    def _redeliver(self, delivery: MemoryDelivery, delay: float) -> None:
        channel = self._channels[delivery.subscription]
        again = MemoryDelivery(self, delivery.event, delivery.subscription, delivery.attempt + 1)
        # Swap without passing through empty, so the transport never looks idle meanwhile.
        self._outstanding.add(again)
        self._outstanding.discard(delivery)
        if delay <= 0:
            self._enqueue(channel, again)
            return

        def fire() -> None:
            self._timers.discard(timer)
            if not self._closed:
                self._enqueue(channel, again)

        timer = asyncio.get_running_loop().call_later(delay, fire)
        self._timers.add(timer)

    async def _wait_for_room(self, channel: _Channel, timeout: float | None) -> None:
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        while len(channel.items) >= self.max_pending:
            if self._closed:
                raise BusClosed("the in-memory transport is closed")
            fut = loop.create_future()
            channel.room_waiters.append(fut)
            remaining = None if deadline is None else deadline - loop.time()
            try:
                if remaining is not None and remaining <= 0:
                    raise TimeoutError
                await asyncio.wait_for(fut, remaining)
            except TimeoutError:
                raise BusFull(
                    f"subscription {channel.name!r} has {len(channel.items)} events pending "
                    f"(max_pending={self.max_pending}); publish waited {timeout}s"
                ) from None
            finally:
                if not fut.done():
                    fut.cancel()
