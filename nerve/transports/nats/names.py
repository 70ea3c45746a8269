"""The names nerve gives things on the NATS server: the stream, the subjects, the consumers.

Layout (every name under ``prefix``, default ``nerve``; the names are the constants below)::

    stream    {prefix}-events                       every subject {prefix}.ev.>
    subject   {prefix}.ev.<event_type>.<target>     target: "_" (every subscription) or
                                                    one subscription's consumer name
    consumer  <subscription name, made NATS-safe>   durable, pull, explicit ack

Why a trailing ``<target>`` token: nerve's ``#`` matches *zero* or more segments, NATS's
``>`` one or more, and server 2.9 has a single filter subject per consumer (no
``FilterSubjects`` before 2.10). With one token always after the event type, a pattern
ending in ``#`` maps exactly: ``github.#`` filters on ``{prefix}.ev.github.>``, which
matches ``github`` itself (``{prefix}.ev.github._``) as well as ``github.push``. A pattern
without ``#`` maps one to one, its target token as ``*``. A ``#`` anywhere else
(``#.created``, ``a.#.b``) cannot be said in one NATS filter: the filter stops at the
first ``#`` (``{prefix}.ev.>``, ``{prefix}.ev.a.>``) and the client checks the event type
against the pattern, acknowledging what does not match on the spot, as the Redis
transport does for everything. The same token carries a DLQ replay to one subscription
(:meth:`NATSTransport.publish` with ``subscription=``): its consumer's filter matches the
replay, and any other consumer whose filter also does skips it (the last token is not
``_`` nor its own name). Two consumers per subscription would avoid that skipping, but
then one receive would have to wait on two pull requests; replays are rare.
"""

from __future__ import annotations

import hashlib
import re
from typing import Final

from nerve.connections.nats import SAFE_NAME
from nerve.routing import validate_pattern

# Wire names, in one place (the prefix's default and rule: nerve.connections.nats).
STREAM: Final = "{prefix}-events"
SUBJECTS: Final = "{prefix}.ev.>"
SUBJECT: Final = "{prefix}.ev.{event_type}.{target}"
#: The target token of an event for every matching subscription.
BROADCAST: Final = "_"
PULL_SUBJECT: Final = "$JS.API.CONSUMER.MSG.NEXT.{stream}.{consumer}"
MAX_DELIVERIES_SUBJECT: Final = "$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.{stream}.*"
MSG_ID_HEADER: Final = "Nats-Msg-Id"
STATUS_HEADER: Final = "Status"
DESCRIPTION_HEADER: Final = "Description"


def stream_name(prefix: str) -> str:
    """The stream holding every event published under ``prefix``."""
    return STREAM.format(prefix=prefix)


def event_subject(prefix: str, event_type: str, target: str = BROADCAST) -> str:
    """The subject an event is published on: for every subscription, or one's replay."""
    return SUBJECT.format(prefix=prefix, event_type=event_type, target=target)


def split_subject(prefix: str, subject: str) -> tuple[str, str]:
    """The event type and the target token of an :func:`event_subject`."""
    # {prefix}.ev.<event_type>.<target>
    event_type, _, target = subject[len(prefix) + 4 :].rpartition(".")
    return event_type, target


def consumer_name(subscription: str) -> str:
    """The durable consumer (and target token) of a subscription: its name if NATS allows
    it as is, else a readable form with a hash of the name (so distinct names stay distinct).
    """
    if SAFE_NAME.match(subscription) and subscription != BROADCAST:
        return subscription
    readable = re.sub(r"[^A-Za-z0-9_-]+", "_", subscription).strip("_")[:40]
    digest = hashlib.sha256(subscription.encode()).hexdigest()[:12]
    return f"{readable}_{digest}" if readable else digest


def filter_subject(prefix: str, pattern: str) -> str:
    """The NATS filter subject of a nerve pattern (exact unless ``#`` is not last)."""
    tokens: list[str] = []
    for segment in validate_pattern(pattern).split("."):
        if segment == "#":
            tokens.append(">")  # covers the rest and the target token
            break
        tokens.append(segment)
    else:
        tokens.append("*")  # the target token
    return f"{prefix}.ev.{'.'.join(tokens)}"
