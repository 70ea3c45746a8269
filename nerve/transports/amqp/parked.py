"""The parked queue as nerve reads it: what RabbitMQ gave up on, handed to the core to
file as dead letters.

A subscription's queue dead-letters to ``{prefix}.parked`` a message returned to it more
than ``x-delivery-limit`` times (every process that took it died, or lost its connection,
holding it) and a malformed one (rejected by its consumer). :class:`ParkedQueue` takes
what is there with ``basic.get`` on a channel of its own; each event parked from a
subscription's queue becomes an :class:`AMQPParked`, acknowledged once the core has filed
it (a crash in between leaves it parked: it is filed again, and found filed). A message
that is no event, or that came from no queue it can name a subscription of, is handed
back at the end of the take and stays parked for an operator (``rabbitmqctl``).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Mapping
from typing import Any

from aio_pika.abc import AbstractIncomingMessage, AbstractRobustChannel

from nerve.events import Event
from nerve.transports.amqp.client import settle_quietly
from nerve.transports.amqp.wire import (
    ATTEMPT_HEADER,
    DEATH_HEADER,
    attempt_of,
    subscription_of,
)
from nerve.transports.base import Parked

__all__ = ["AMQPParked", "ParkedQueue"]

log = logging.getLogger("nerve")


class AMQPParked(Parked):
    """An event parked from a subscription's queue, acknowledged on the channel it was
    taken on once filed."""

    __slots__ = ("message",)

    def __init__(
        self,
        event: Event[Any],
        subscription: str,
        attempts: int,
        reason: str,
        message: AbstractIncomingMessage,
    ) -> None:
        super().__init__(event, subscription, attempts, reason)
        self.message = message

    async def settle(self) -> None:
        # A channel lost meanwhile has put it back: filed already, it is settled next time.
        await settle_quietly(self.message, self.message.ack)

    async def release(self) -> None:
        await settle_quietly(self.message, functools.partial(self.message.nack, requeue=True))


class ParkedQueue:
    """The parked queue of a prefix, read by one process.

    Args:
        name: the parked queue's.
        prefix: the transport's (subscription queues are named under it).
        delivery_limit: the returns after which subscription queues park (0: none), to
            count a parked event's attempts.
    """

    def __init__(self, name: str, prefix: str, delivery_limit: int) -> None:
        self.name = name
        self.prefix = prefix
        self.delivery_limit = delivery_limit
        self._warned = False

    async def take(
        self, channel: AbstractRobustChannel, max_items: int, known: Mapping[str, str]
    ) -> list[AMQPParked]:
        """Up to ``max_items`` parked events, each unacknowledged on ``channel`` until
        settled. ``known`` maps the queues of this process's subscriptions to their names
        (one whose name was cut to fit in a queue name cannot be read back from it).

        What cannot be filed is held until the end, so that this take does not get it
        again, then handed back; past ``max_items`` of those the take stops.
        """
        queue = await channel.get_queue(self.name, ensure=False)
        taken: list[AMQPParked] = []
        unfiled: list[AbstractIncomingMessage] = []
        try:
            while len(taken) < max_items and len(unfiled) < max_items:
                message = await queue.get(no_ack=False, fail=False)
                if message is None:
                    break
                parked = self._parked(message, known)
                if parked is None:
                    unfiled.append(message)
                else:
                    taken.append(parked)
        except BaseException:
            unfiled += [parked.message for parked in taken]  # none is handed up: all back
            raise
        finally:
            for message in unfiled:
                await settle_quietly(message, functools.partial(message.nack, requeue=True))
        if unfiled:
            log.log(
                logging.DEBUG if self._warned else logging.WARNING,
                "%d message(s) in %s are no events of a subscription nerve can name "
                "(malformed, or parked from another queue): left there for an operator",
                len(unfiled),
                self.name,
            )
            self._warned = True
        return taken

    def _parked(
        self, message: AbstractIncomingMessage, known: Mapping[str, str]
    ) -> AMQPParked | None:
        """The parked event ``message`` carries, or None if it cannot be filed."""
        headers = message.headers or {}
        deaths = headers.get(DEATH_HEADER)
        # x-death lists the message's dead-letterings newest first: a retry that waited in
        # a wait queue has an older one from there.
        last = deaths[0] if isinstance(deaths, list) and deaths else None
        if not isinstance(last, Mapping):
            return None
        queue, reason = str(last.get("queue", "")), str(last.get("reason", ""))
        subscription = known.get(queue) or subscription_of(self.prefix, queue)
        if subscription is None:
            return None
        try:
            event = Event.model_validate_json(message.body)
        except ValueError:
            return None
        # Its x-delivery-count is the parked queue's own: only the nerve-attempt counts.
        attempts = attempt_of({ATTEMPT_HEADER: headers.get(ATTEMPT_HEADER)})
        if reason == "delivery_limit" and self.delivery_limit:
            attempts += self.delivery_limit  # its last delivery came back that many times
            said = (
                f"RabbitMQ parked it in {self.name} after it went back to {queue} "
                f"unsettled {self.delivery_limit} times (x-delivery-limit): every process "
                "that took it died or lost its connection holding it"
            )
        elif reason == "delivery_limit":
            said = (
                f"RabbitMQ parked it in {self.name} after it went back to {queue} "
                "unsettled more times than the queue's x-delivery-limit: every process "
                "that took it died or lost its connection holding it"
            )
        else:
            said = f"RabbitMQ parked it in {self.name} from {queue} ({reason or 'no reason'})"
        return AMQPParked(event, subscription, attempts, said, message)
