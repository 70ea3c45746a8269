"""The transport contract: what a broker does for nerve, and nothing more.

A transport connects, routes a published event to every declared subscription whose
pattern matches, hands each subscription's deliveries to its consumers (competing: one
delivery goes to one consumer at a time), and settles them. Retries, idempotency, dead
letters and chains live once, in the core (``nerve.runner``), not in each transport.
"""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any, ClassVar, Self, TypeVar

from nerve import clock
from nerve.events import Event
from nerve.exceptions import BusClosed, ConfigurationError
from nerve.settings import Settings
from nerve.subscription import StartFrom

T = TypeVar("T")


class Delivery(ABC):
    """One event handed to one subscription, to be settled exactly once.

    The first of :meth:`ack`, :meth:`nack` and :meth:`reject` wins; later calls do nothing.

    Attributes:
        event: the event delivered.
        subscription: the subscription's name.
        attempt: 1 on the first delivery, counting every redelivery of this event to this
            subscription (as brokers count deliveries).
    """

    __slots__ = ("_settled", "attempt", "event", "subscription")

    def __init__(self, event: Event[Any], subscription: str, attempt: int = 1) -> None:
        self.event = event
        self.subscription = subscription
        self.attempt = attempt
        self._settled = False

    @property
    def settled(self) -> bool:
        """Whether it was settled (or claimed for settling) already."""
        return self._settled

    def claim(self) -> bool:
        """Take the right to settle it: True the first time, False ever after.

        The one place "the first settlement wins" is decided. :meth:`ack`, :meth:`nack`,
        :meth:`release` and :meth:`reject` call it; a transport settling a batch in one
        round trip (``ack_many``) calls it for each delivery and settles those it won.
        """
        if self._settled:
            return False
        self._settled = True
        return True

    async def ack(self) -> None:
        """Handled: never deliver it to this subscription again."""
        if self.claim():
            await self._ack()

    async def nack(self, delay: float = 0.0) -> None:
        """Not handled: deliver it again after ``delay`` seconds, with ``attempt + 1``."""
        if self.claim():
            await self._nack(delay)

    async def release(self) -> None:
        """Not started (the worker is stopping): deliver it again at once.

        Transports that can override :meth:`_release` so that it does not count an
        attempt (memory, SQLite, Redis); the others count it like a :meth:`nack`.
        """
        if self.claim():
            await self._release()

    async def _release(self) -> None:
        await self._nack(0.0)

    async def reject(self) -> None:
        """Given up (the core has dead-lettered it): never deliver it again."""
        if self.claim():
            await self._reject()

    @abstractmethod
    async def _ack(self) -> None: ...

    @abstractmethod
    async def _nack(self, delay: float) -> None: ...

    @abstractmethod
    async def _reject(self) -> None: ...


class Parked(ABC):
    """An event the broker itself gave up on for one subscription, waiting to be filed.

    A broker that bounds redeliveries (RabbitMQ's ``x-delivery-limit``) sets aside a
    message that kept coming back unsettled: every process that took it died. The core
    files each one as a dead letter in its store (:mod:`nerve.parked`), then calls
    :meth:`settle`: a crash in between leaves it parked, to be filed again.

    Attributes:
        event: the event parked.
        subscription: the subscription it was parked from.
        attempts: its deliveries to that subscription, as far as the broker tells.
        reason: what the broker did, in words, for the dead letter's error.
    """

    __slots__ = ("attempts", "event", "reason", "subscription")

    def __init__(self, event: Event[Any], subscription: str, attempts: int, reason: str) -> None:
        self.event = event
        self.subscription = subscription
        self.attempts = attempts
        self.reason = reason

    @abstractmethod
    async def settle(self) -> None:
        """Filed: remove it from the broker's parked messages."""

    @abstractmethod
    async def release(self) -> None:
        """Not filed (the store failed): leave it parked, for another take."""


class Transport(ABC):
    """A broker, seen from nerve. One module per broker, chosen by URL scheme.

    Lifecycle: ``connect`` -> ``declare`` each subscription -> ``publish`` / ``receive`` ->
    ``close``. Publishing needs no declared subscription (a bus that only publishes).
    """

    #: Whether accepted events survive the process (and are redelivered after a crash).
    durable: ClassVar[bool] = False
    #: Whether the broker parks events by itself (:meth:`take_parked` may return some).
    parks: ClassVar[bool] = False
    #: How errors name it: "the Redis transport is closed".
    name: ClassVar[str] = "transport"
    #: Seconds between two looks at the broker in the default :meth:`wait_idle`.
    idle_poll: ClassVar[float] = 0.02
    #: How many looks in a row must find it idle (brokers whose counts lag behind).
    idle_looks: ClassVar[int] = 1

    #: The ``store=`` option of the transport's URL: where the bus keeps its state.
    store_url: str | None = None
    #: The broker cannot hold nerve's state (it needs lookups by event id: RabbitMQ,
    #: Kafka): by default the state goes to a SQLite file named for :attr:`prefix` in the
    #: state directory (``{NERVE_STATE_DIR}/nerve-{prefix}.db``, default
    #: ``~/.local/state/nerve``), durable and shared by the processes of one host. Workers
    #: on several hosts need a shared store: PostgreSQL or Redis.
    state_on_host: ClassVar[bool] = False
    #: What the transport's names on the broker start with (``prefix`` URL option).
    prefix: str = "nerve"
    #: The settings it was made with (:meth:`from_url`); None: the environment's.
    settings: Settings | None = None

    _closed: bool = False

    def _check_open(self) -> None:
        """Raise :class:`nerve.BusClosed` once :meth:`close` has begun."""
        if self._closed:
            raise BusClosed(f"the {self.name} transport is closed")

    @property
    def default_store_url(self) -> str:
        """The store a bus on this transport uses unless told otherwise.

        The URL's ``store=`` option, else the transport's own (:meth:`own_store_url`),
        else, on an in-process transport, the memory of this process.

        Raises:
            ConfigurationError: a durable transport with no store of its own and none
                given: its dead letters and done marks would live in one process's memory
                and go with it. Name one (``store="memory://"`` too, if that is meant).
        """
        url = self.store_url or self.own_store_url()
        if url:
            return url
        if self.durable:
            raise ConfigurationError(
                f"the {self.name} transport has no store of its own: give one with ?store= "
                "in its URL, NERVE_STORE_URL or EventBus(store=...): postgresql:// or "
                "redis:// for several hosts, sqlite:///path on one; store='memory://' only "
                "for a single process that may lose its dead letters"
            )
        return "memory://"

    def own_store_url(self) -> str | None:
        """The store this transport's broker holds by its nature (its own URL for Redis,
        its file for SQLite), the state directory's file (:attr:`state_on_host`), or None
        when it has none."""
        if self.state_on_host:
            return (self.settings or Settings()).state_store_url(self.prefix)
        return None

    @classmethod
    @abstractmethod
    def from_url(cls, url: str, settings: Settings) -> Self:
        """Make the transport for ``url``, taking its options from ``settings``."""

    @abstractmethod
    async def connect(self) -> None:
        """Open connections. Raises :class:`nerve.TransportError` when unreachable."""

    async def ping(self) -> None:  # noqa: B027  # in-process transports need nothing
        """Raise :class:`nerve.TransportError` unless the broker answers now.

        In-process transports have nothing to ask and return at once.
        """

    @abstractmethod
    async def close(self) -> list[Delivery]:
        """Stop and release everything; return the deliveries left unfinished.

        Durable transports leave unfinished deliveries to the broker for redelivery and
        return an empty list; in-process ones return what is lost so the bus can report it.
        """

    @abstractmethod
    async def declare(self, subscription: str, pattern: str, *, start_from: StartFrom) -> None:
        """Create (or attach to) a subscription: every later matching event reaches it."""

    @abstractmethod
    async def publish(
        self,
        event: Event[Any],
        *,
        subscription: str | None = None,
        timeout: float | None = None,
        bounded: bool = True,
    ) -> None:
        """Accept an event for every matching subscription, or only ``subscription``.

        Returns once the transport has it (durably, on a durable transport). Waits while
        the transport is at its bound; raises :class:`nerve.BusFull` after ``timeout``.
        ``bounded=False`` (events published by handlers) never waits: a handler blocked
        on a full bus would hold the very capacity it waits for.
        """

    async def publish_many(
        self, events: Sequence[Event[Any]], *, timeout: float | None = None, bounded: bool = True
    ) -> None:
        """:meth:`publish` for many events, in order; transports override it with a batch.

        The default publishes them concurrently, which transports that group their
        writes (SQLite) turn into a few commits.
        """
        await asyncio.gather(
            *(self.publish(event, timeout=timeout, bounded=bounded) for event in events)
        )

    @abstractmethod
    async def receive(self, subscription: str, max_items: int) -> Sequence[Delivery]:
        """Wait for at least one delivery for ``subscription``; return up to ``max_items``."""

    async def take_parked(self, max_items: int) -> Sequence[Parked]:
        """Up to ``max_items`` events the broker parked, as many as are there now (never
        waits for more). Each is held (no other caller gets it) until settled or until
        the connection closes. Transports that never park return nothing.

        What the broker parked that the core cannot file (a message that is no event, or
        from no subscription it can name) stays parked for an operator, and is not
        returned.
        """
        return ()

    async def ack_many(self, deliveries: Sequence[Delivery]) -> None:
        """Acknowledge many deliveries (transports override it with one round trip).

        Every delivery is settled here even when acknowledging one of them fails (a
        connection lost mid-batch), so none is left counted in flight; the first failure
        is raised afterwards. The broker delivers the unacknowledged ones again.
        """
        await each_then_raise(deliveries, lambda delivery: delivery.ack())

    async def lag(self, subscription: str) -> int | None:
        """How many events ``subscription`` has not settled yet, or None if unknown.

        Counts what waits to be delivered, what is delivered and unsettled, and retries
        waiting for their delay, across every process sharing the broker where the
        broker can tell (each transport's docstring says what its figure covers). Asked
        at each metrics scrape: one or a few round trips, never a scan of the whole log.
        """
        return None

    async def wait_idle(self) -> None:
        """Wait until nothing is pending for the subscriptions declared here.

        Nothing pending means: no event waiting to be delivered to them, none delivered
        and unsettled, no retry waiting for its delay. This default polls
        :meth:`is_idle` every :attr:`idle_poll` seconds until :attr:`idle_looks` looks in
        a row find it idle: on a broker, idleness is a state of the server (other
        processes' work counts). In-process transports override it with an event.
        """
        looks = 0
        while True:
            looks = looks + 1 if await self.is_idle() else 0
            if looks >= self.idle_looks:
                return
            await clock.sleep(self.idle_poll)

    async def is_idle(self) -> bool:
        """Whether nothing is pending now (see :meth:`wait_idle`): one look."""
        raise NotImplementedError(f"{type(self).__name__} has no is_idle")


def raise_if_cancelled() -> None:
    """Raise the cancellation a client library swallowed, if it did.

    Client libraries can swallow a cancellation that lands while a command is under way
    (redis-py, redis/redis-py#2028; nats-py through Python 3.11's ``asyncio.wait_for``,
    python/cpython#86296). Measured on tasks publishing in a loop, cancelled at varied
    moments: 155 of 200 went on publishing on Redis, 131 of 200 on NATS. The task still
    counts the cancellation (``cancelling()``), so a transport calls this after a command:
    a cancelled publish, receive or ``asyncio.timeout`` then ends as it should.
    """
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


async def each_then_raise(items: Iterable[T], call: Callable[[T], Awaitable[object]]) -> None:
    """Await ``call(item)`` for every item, in order, even after one of them fails; then
    raise the first failure. Settling a batch this way leaves none of it unsettled."""
    failure: Exception | None = None
    for item in items:
        try:
            await call(item)
        except Exception as exc:  # noqa: BLE001  # raised below, after the others
            failure = failure or exc
    if failure is not None:
        raise failure
