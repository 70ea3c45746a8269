"""Consuming: one open pull request per subscription, what JetStream pushes to its inbox,
and ``receive`` handing it out.

Each subscription keeps one pull request (``$JS.API.CONSUMER.MSG.NEXT``) of up to
``max_items`` messages open on its inbox; JetStream pushes matching messages to it as they
arrive, so a quiet subscription costs one request every :data:`PULL_EXPIRES` seconds and a
busy one gets batches. (nats-py's ``fetch`` waits for a whole batch or its timeout once it
has one message, which would delay a lone event by the timeout.) A request lost with a
broker restart simply expires here, and a reconnect re-declares the stream and consumers
and pulls again at once.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Final

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.js.api import ConsumerConfig

from nerve import clock
from nerve.events import Event
from nerve.exceptions import TransportError
from nerve.transports.base import Delivery, raise_if_cancelled
from nerve.transports.nats.delivery import InFlight, NATSDelivery, Translate
from nerve.transports.nats.names import (
    BROADCAST,
    DESCRIPTION_HEADER,
    PULL_SUBJECT,
    STATUS_HEADER,
    split_subject,
)

log = logging.getLogger("nerve")

#: Seconds a pull request stays open on the server; a lost one is replaced after this
#: plus :data:`PULL_GRACE`.
PULL_EXPIRES: Final = 5.0
PULL_GRACE: Final = 1.0


@dataclass(slots=True)
class ConsumerState:
    """This process's side of one subscription's durable pull consumer: its inbox, its
    open pull request, and what arrived and is not handed out yet."""

    name: str  # the subscription's
    consumer: str
    pattern: re.Pattern[str]
    config: ConsumerConfig
    inbox: str
    sub: Subscription | None = None
    backlog: deque[NATSDelivery] = field(default_factory=deque)  # arrived, not yet returned
    arrived: asyncio.Event = field(default_factory=asyncio.Event)
    credit: int = 0  # messages the open pull request may still bring
    expires_at: float = 0.0  # when to stop waiting for it (clock.monotonic())
    problem: str | None = None  # a 409 from the server, reported by the next receive


class Consumers:
    """This process's side of its subscriptions' consumers: their states, their pull
    requests, what arrives on their inboxes, and ``receive`` handing it out.

    Args:
        prefix: the transport's prefix (the first token of every event subject).
        stream: the stream's name.
        where: ``host:port`` of the server, for messages.
        in_flight: holds every delivery that arrives, until it is settled.
        client: the connected client (raises once the transport is closed).
        translate: the transport's translation of nats-py's errors.
        closed: whether the transport is closed (nothing is handed out then).
    """

    def __init__(
        self,
        *,
        prefix: str,
        stream: str,
        where: str,
        in_flight: InFlight,
        client: Callable[[], Client],
        translate: Translate,
        closed: Callable[[], bool],
    ) -> None:
        self.states: dict[str, ConsumerState] = {}  # by subscription
        self._prefix = prefix
        self._stream = stream
        self._where = where
        self._in_flight = in_flight
        self._client = client
        self._translate = translate
        self._is_closed = closed

    async def subscribe(self, sub: ConsumerState) -> None:
        """Take ``sub``'s deliveries from now on (its consumer is declared)."""
        if sub.sub is None:
            with self._translate(f"subscribing {sub.name!r}"):
                sub.sub = await self._client().subscribe(sub.inbox, cb=self._arrival_handler(sub))
        self.states[sub.name] = sub

    def pull_again(self) -> None:
        """Open new pull requests at once: the old ones did not survive a broker restart."""
        for sub in self.states.values():
            sub.credit = 0
            sub.arrived.set()

    def wake(self) -> None:
        """Wake every receiver: once the transport is closed, they return nothing."""
        for sub in self.states.values():
            sub.arrived.set()

    def forget(self) -> None:
        """Drop what arrived and was not handed out (the transport releases it)."""
        for sub in self.states.values():
            sub.backlog.clear()

    async def unsubscribe(self) -> None:
        """Stop taking deliveries: no more of them reach this process."""
        for sub in self.states.values():
            if sub.sub is not None:
                await sub.sub.unsubscribe()
                sub.sub = None

    async def receive(self, subscription: str, max_items: int) -> Sequence[Delivery]:
        """Wait for at least one delivery for ``subscription``; return up to ``max_items``."""
        sub = self.states[subscription]
        while not self._is_closed():
            raise_if_cancelled()  # never swallowed, whatever the client does
            sub.arrived.clear()  # before looking: an arrival from now on wakes us
            if sub.backlog:
                n = min(max_items, len(sub.backlog))
                return [sub.backlog.popleft() for _ in range(n)]
            if sub.problem is not None:
                problem, sub.problem = sub.problem, None
                raise TransportError(f"NATS at {self._where}: pulling {sub.name!r}: {problem}")
            if sub.credit <= 0 or clock.monotonic() >= sub.expires_at:
                await self._pull(sub, max_items)
            # Until something arrives, or the pull request expires: then pull again.
            expired = clock.call_later(
                max(0.0, sub.expires_at - clock.monotonic()), sub.arrived.set
            )
            try:
                await sub.arrived.wait()
            finally:
                expired.cancel()
        return ()

    async def _pull(self, sub: ConsumerState, batch: int) -> None:
        """Open a pull request: up to ``batch`` messages, pushed to the inbox as they come."""
        request = {"batch": batch, "expires": int(PULL_EXPIRES * 1e9)}
        with self._translate(f"pulling for {sub.name!r}"):
            await self._client().publish(
                PULL_SUBJECT.format(stream=self._stream, consumer=sub.consumer),
                json.dumps(request).encode(),
                reply=sub.inbox,
            )
        sub.credit = batch
        sub.expires_at = clock.monotonic() + PULL_EXPIRES + PULL_GRACE

    def _arrival_handler(self, sub: ConsumerState) -> Callable[[Msg], Awaitable[None]]:
        """The callback taking each message that arrives on ``sub``'s inbox."""

        async def arrived(msg: Msg) -> None:
            try:
                await self._arrived(sub, msg)
            except Exception:  # a callback's error would only reach nats-py's error_cb
                log.exception("%s: could not take a message from NATS", sub.name)

        return arrived

    async def _arrived(self, sub: ConsumerState, msg: Msg) -> None:
        status = msg.headers.get(STATUS_HEADER) if msg.headers else None
        if status is not None:
            if status in ("404", "408"):  # no messages / the request expired
                sub.credit = 0
            elif status == "409":  # e.g. "Exceeded MaxWaiting", "Consumer Deleted"
                sub.credit = 0
                description = (msg.headers or {}).get(DESCRIPTION_HEADER, "")
                sub.problem = f"409 {description}".strip()
            # "100": an idle heartbeat or flow control; nothing to do.
            sub.arrived.set()
            return
        sub.credit -= 1
        if not msg.reply:
            return  # not a JetStream delivery (someone published to our inbox)
        event_type, target = split_subject(self._prefix, msg.subject)
        if (target != BROADCAST and target != sub.consumer) or not sub.pattern.fullmatch(
            "." + event_type
        ):
            await msg.ack()  # another subscription's replay, or a '#' the filter let by
            return
        try:
            event = Event.model_validate_json(msg.data)
        except ValueError:
            log.exception("%s: terminating malformed message %s", sub.name, msg.subject)
            await msg.term()
            return
        delivery = NATSDelivery(event, sub.name, msg, self._in_flight)
        if self._is_closed():
            delivery.claim()  # never handed out: settled here
            await msg.nak()
            return
        self._in_flight.hold(delivery)
        sub.backlog.append(delivery)
        sub.arrived.set()
