"""What nerve writes to Kafka: topic and group names, record headers, keys and values.

Every name starts with the transport's ``prefix`` (default ``nerve``)::

    {prefix}.events              one topic holding every published event
    {prefix}.retry.{name}        a topic per subscription: its retries and DLQ replays
    {prefix}.claims.{name}       a topic per subscription: offsets its members handed out
    {prefix}.{name}              the subscription's consumer group (reads events and retries)
"""

from __future__ import annotations

import hashlib
import re
from typing import Any, Final

from nerve.events import Event

# Wire names, in one place.
DEFAULT_PREFIX: Final = "nerve"
EVENTS_TOPIC: Final = "{prefix}.events"
RETRY_TOPIC: Final = "{prefix}.retry.{name}"
CLAIMS_TOPIC: Final = "{prefix}.claims.{name}"
GROUP_ID: Final = "{prefix}.{name}"
HEADER_TYPE: Final = "nerve-type"
HEADER_ATTEMPT: Final = "nerve-attempt"
HEADER_DUE: Final = "nerve-due"
#: Event metadata naming the record key (CloudEvents' partitioning extension).
KEY_METADATA: Final = "partitionkey"

#: Topic name characters Kafka accepts; others in a subscription name are replaced.
_TOPIC_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")

#: A record's headers, as aiokafka takes them.
Headers = list[tuple[str, bytes]]


def topic_safe(name: str) -> str:
    """``name`` usable in a topic name: unsafe characters replaced, made unique by a hash."""
    safe = _TOPIC_UNSAFE.sub("_", name)
    if safe != name or len(safe) > 180:
        safe = f"{safe[:160]}-{hashlib.sha256(name.encode()).hexdigest()[:10]}"
    return safe


def retry_topic(prefix: str, subscription: str) -> str:
    """The retry topic of ``subscription``."""
    return RETRY_TOPIC.format(prefix=prefix, name=topic_safe(subscription))


def claims_topic(prefix: str, subscription: str) -> str:
    """The claims topic of ``subscription``."""
    return CLAIMS_TOPIC.format(prefix=prefix, name=topic_safe(subscription))


def group_id(prefix: str, subscription: str) -> str:
    """The consumer group of ``subscription`` (group ids keep the name as it is)."""
    return GROUP_ID.format(prefix=prefix, name=subscription)


def value(event: Event[Any]) -> bytes:
    """A record's value: the event as JSON."""
    return event.model_dump_json().encode()


def placement(event: Event[Any]) -> dict[str, Any]:
    """Where a record goes: hashed by its ``partitionkey``, else partition 0 (one order)."""
    key = event.metadata.get(KEY_METADATA)
    return {"key": key.encode()} if key else {"partition": 0}


def event_headers(event: Event[Any]) -> Headers:
    """The headers of a record of the events topic: its type, matched without parsing it."""
    return [(HEADER_TYPE, event.event_type.encode())]


def retry_headers(attempt: int, due_ms: int) -> Headers:
    """The headers of a record of a retry topic: its attempt, its due time (wall-clock
    milliseconds, 0 for at once)."""
    return [(HEADER_ATTEMPT, str(attempt).encode()), (HEADER_DUE, str(due_ms).encode())]


def claim_key(tp: Any) -> bytes:
    """The key of a partition's records in a claims topic (``topic:partition``)."""
    return f"{tp.topic}:{tp.partition}".encode()
