"""What nerve writes on RabbitMQ and reads back: the names of its exchanges and queues,
its headers, the message an event travels in, and the options of an ``amqp://`` URL."""

from __future__ import annotations

import hashlib
import re
from contextlib import suppress
from typing import Any, Final
from urllib.parse import unquote, urlsplit

import aio_pika
from aio_pika.abc import DeliveryMode

from nerve.events import Event
from nerve.exceptions import ConfigurationError
from nerve.urls import split_options

__all__ = [
    "ATTEMPT_HEADER",
    "DEATH_HEADER",
    "DEFAULT_PREFIX",
    "DELAY_HEADER",
    "DELAY_NAME",
    "DELIVERY_COUNT_HEADER",
    "EVENTS_NAME",
    "PARKED_NAME",
    "QUEUE_NAME",
    "WAIT_NAME",
    "amqp_options",
    "amqp_where",
    "attempt_of",
    "checked_prefix",
    "message_of",
    "queue_name",
    "quorum_queue",
    "subscription_of",
]

# Wire names, in one place.
DEFAULT_PREFIX: Final = "nerve"
EVENTS_NAME: Final = "{prefix}.events"
QUEUE_NAME: Final = "{prefix}.sub.{name}"
DELAY_NAME: Final = "{prefix}.delay"
WAIT_NAME: Final = "{prefix}.wait.{ms}"
PARKED_NAME: Final = "{prefix}.parked"
ATTEMPT_HEADER: Final = "nerve-attempt"
DELAY_HEADER: Final = "nerve-delay"
DELIVERY_COUNT_HEADER: Final = "x-delivery-count"  # set by quorum queues on redeliveries
DEATH_HEADER: Final = "x-death"  # set by dead-lettering: queue and reason, newest first

_NAME_SAFE = re.compile(r"[a-zA-Z0-9\-_.:@#,/ ]")
_PREFIX_SAFE = re.compile(r"[a-zA-Z0-9\-_.]{1,100}")
_NAME_MAX = 255
_OPTIONS = ("prefix", "store", "prefetch", "delivery_limit")


def amqp_options(url: str) -> tuple[str, dict[str, str]]:
    """Split an ``amqp://`` URL into the URL for aio-pika and nerve's own options."""
    return split_options(url, _OPTIONS)


def amqp_where(url: str) -> str:
    """``host:port/vhost`` of an AMQP URL, for messages (never the password)."""
    parts = urlsplit(url)
    default_port = 5671 if parts.scheme == "amqps" else 5672
    vhost = unquote(parts.path[1:]) if len(parts.path) > 1 else "/"
    return f"{parts.hostname or 'localhost'}:{parts.port or default_port}/{vhost.lstrip('/')}"


def checked_prefix(prefix: str) -> str:
    """``prefix``, if every exchange and queue name may start with it."""
    if not _PREFIX_SAFE.fullmatch(prefix) or prefix.startswith("amq."):
        raise ConfigurationError(
            f"amqp prefix {prefix!r}: use letters, digits, '-', '_' and '.' "
            "(not starting with 'amq.', which RabbitMQ reserves)"
        )
    return prefix


def queue_name(prefix: str, subscription: str) -> str:
    """The queue of a subscription: ``{prefix}.sub.{name}``, made safe for AMQP.

    Queue names allow ``[a-zA-Z0-9-_.:@#,/+ ]`` (and 255 bytes): any other character of the
    name (``<locals>``) is written ``+`` and its UTF-8 bytes in hex, ``+`` itself included;
    a name still too long is cut and ends in a hash of the whole.
    """
    safe = "".join(
        ch if _NAME_SAFE.fullmatch(ch) else "".join(f"+{b:02x}" for b in ch.encode())
        for ch in subscription
    )
    name = QUEUE_NAME.format(prefix=prefix, name=safe)
    if len(name) > _NAME_MAX:
        digest = hashlib.sha256(name.encode()).hexdigest()[:16]
        name = f"{name[: _NAME_MAX - 17]}.{digest}"
    return name


def subscription_of(prefix: str, queue: str) -> str | None:
    """The subscription whose queue is ``queue`` (:func:`queue_name` undone), or None if
    it is no subscription's queue under ``prefix`` or was cut to fit (its name is lost)."""
    head = QUEUE_NAME.format(prefix=prefix, name="")
    if not queue.startswith(head):
        return None
    encoded, decoded, at = queue[len(head) :], bytearray(), 0
    while at < len(encoded):
        if encoded[at] == "+":
            try:
                decoded.append(int(encoded[at + 1 : at + 3], 16))
            except ValueError:
                return None
            at += 3
        else:
            decoded += encoded[at].encode()
            at += 1
    try:
        name = decoded.decode()
    except UnicodeDecodeError:
        return None
    return name if queue_name(prefix, name) == queue else None


def quorum_queue(arguments: dict[str, Any]) -> dict[str, Any]:
    """``arguments`` and those of a quorum queue that dead-letters at least once through
    the default exchange (by the message's routing key unless ``arguments`` name one)."""
    return {
        "x-queue-type": "quorum",
        "x-dead-letter-exchange": "",
        **arguments,
        "x-dead-letter-strategy": "at-least-once",
        "x-overflow": "reject-publish",  # at-least-once dead-lettering requires it
    }


def message_of(event: Event[Any], *, attempt: int | None = None) -> aio_pika.Message:
    """The persistent message ``event`` travels in (a retry's carries its next attempt)."""
    return aio_pika.Message(
        event.model_dump_json().encode(),
        content_type="application/json",
        delivery_mode=DeliveryMode.PERSISTENT,
        message_id=event.event_id,
        type=event.event_type,
        headers={ATTEMPT_HEADER: attempt} if attempt is not None else {},
    )


def attempt_of(headers: dict[str, Any]) -> int:
    """A delivery's attempt: the ``nerve-attempt`` header of a re-published retry (1 if
    absent) plus the quorum queue's ``x-delivery-count`` (deliveries returned to it)."""
    return _as_int(headers.get(ATTEMPT_HEADER), 1) + _as_int(headers.get(DELIVERY_COUNT_HEADER), 0)


def _as_int(value: object, default: int) -> int:
    if isinstance(value, int | str):
        with suppress(ValueError):
            return int(value)
    return default
