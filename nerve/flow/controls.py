"""The flow controls a subscription can have, and what each promises.

Each is global: it holds across every process whose bus shares the store, because its
state lives there (:class:`nerve.stores.base.Limits` and timers). A key (a path such as
``"payload.customer_id"``, or a function of the event) makes one limit per key value;
without one, the subscription has one limit.

- :class:`Concurrency`: at most ``limit`` handlers per key running at once, anywhere. An
  event whose key is at its limit is deferred (acknowledged and kept as a timer, holding
  nothing) and comes back shortly, so other keys are not held up behind it.
- :class:`Throttle`: at most ``limit`` events per ``per`` per key start, in bursts of at
  most ``burst``; the excess is delayed (never lost): each gets the next free moment,
  reserved for it (GCRA), and comes back then.
- :class:`RateLimit`: the same rule, but the excess is dropped (settled as done, logged)
  or dead-lettered with :class:`RateLimited`.
- :class:`Debounce`: one handler call per burst per key: events are absorbed until the key
  was quiet for ``period`` (never longer than ``max_wait`` after the burst's first); then
  the last event is handled.
- Priority (``priority=`` on ``bus.on``): a process hands its subscription's received
  deliveries to the handler highest priority first (an event's priority: the
  ``nerve-priority`` metadata, or the subscription's function of the event; default 0).
  It orders what the process has received (its prefetch, at least 128 deliveries), not
  the broker's whole backlog: an approximation on every transport, exact for a backlog
  that fits in the prefetch.
- :class:`Batch`: the handler takes a ``list[Event]``: up to ``max_size`` events of one key,
  gathered for at most ``max_wait`` (per process: each batches what it received). Each
  event keeps its own done mark, status and dead letter; a failing batch is retried event
  by event (they come back together and batch again); :class:`RejectItems` dead-letters
  some events of a batch and settles the rest as done.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Literal

from nerve.events import Event
from nerve.exceptions import Reject
from nerve.matching import value_at

KeySpec = str | Callable[[Event[Any]], Hashable] | None
PrioritySpec = str | Callable[[Event[Any]], int]
#: Metadata an event's priority may be given in (an int, higher first; default 0).
PRIORITY_KEY = "nerve-priority"


class RejectItems(Exception):  # an outcome, like Reject
    """Raised by a batch handler: these events of the batch (event id -> why) are
    dead-lettered, never retried; the others are done."""

    def __init__(self, items: Mapping[str, str]) -> None:
        super().__init__(f"{len(items)} event(s) of the batch rejected")
        self.items = dict(items)


class RateLimited(Reject):
    """The event went over its subscription's rate limit (``RateLimit(excess=
    "dead_letter")``)."""


def _seconds(value: timedelta | float) -> float:
    seconds = value.total_seconds() if isinstance(value, timedelta) else float(value)
    if seconds <= 0:
        raise ValueError(f"a period must be > 0 seconds, got {seconds}")
    return seconds


def key_of(spec: KeySpec, event: Event[Any]) -> str:
    """The limit key of ``event``: ``""`` without a key spec; a path is read from the
    event (``payload.a.b``, ``correlation_id``; a bare ``a.b`` is a payload path)."""
    if spec is None:
        return ""
    if callable(spec):
        return str(spec(event))
    path = spec if spec.split(".", 1)[0] in _ROOTS else f"payload.{spec}"
    value = value_at(event, path)
    return "" if value is None or not isinstance(value, str | int | float | bool) else str(value)


def priority_of(spec: PrioritySpec | None, event: Event[Any]) -> int:
    """An event's priority: ``spec`` (a function, or a path read as :func:`key_of` does),
    else its ``nerve-priority`` metadata, else 0. Not a number: 0."""
    if callable(spec):
        return int(spec(event))
    found = key_of(spec, event) if spec is not None else event.metadata.get(PRIORITY_KEY, "")
    try:
        return int(found)
    except ValueError:
        return 0


_ROOTS = frozenset({"payload", "metadata", "event_type", "source", "correlation_id"})


@dataclass(frozen=True, slots=True)
class Concurrency:
    """At most ``limit`` handlers of the subscription per key at once, in every process.

    ``lease`` bounds how long a crashed process's slot stays taken (seconds).
    """

    limit: int
    key: KeySpec = None
    lease: float = 600.0

    def __post_init__(self) -> None:
        if self.limit < 1:
            raise ValueError(f"Concurrency limit must be >= 1, got {self.limit}")


@dataclass(frozen=True, slots=True)
class Throttle:
    """At most ``limit`` starts per ``per`` per key; the excess is delayed, not lost.

    ``burst``: how many may start at once (default 1: evenly spaced, one every
    ``per / limit``).
    """

    limit: int
    per: timedelta | float
    key: KeySpec = None
    burst: int | None = None

    @property
    def interval(self) -> float:
        return _seconds(self.per) / self.limit

    @property
    def bursts(self) -> float:
        return float(self.burst if self.burst is not None else 1)


@dataclass(frozen=True, slots=True)
class RateLimit:
    """At most ``limit`` events per ``per`` per key; the excess is dropped or dead-lettered."""

    limit: int
    per: timedelta | float
    key: KeySpec = None
    excess: Literal["drop", "dead_letter"] = "drop"

    @property
    def interval(self) -> float:
        return _seconds(self.per) / self.limit


@dataclass(frozen=True, slots=True)
class Debounce:
    """One call per burst per key: the last event, once the key was quiet ``period``,
    never later than ``max_wait`` after the burst's first event."""

    period: timedelta | float
    key: KeySpec = None
    max_wait: timedelta | float | None = None

    @property
    def seconds(self) -> float:
        return _seconds(self.period)

    @property
    def longest(self) -> float | None:
        return None if self.max_wait is None else _seconds(self.max_wait)


@dataclass(frozen=True, slots=True)
class Batch:
    """The handler takes ``list[Event]``: up to ``max_size`` events of one key at once,
    gathered for at most ``max_wait`` after the first."""

    max_size: int = 100
    max_wait: timedelta | float = 1.0
    key: KeySpec = None

    def __post_init__(self) -> None:
        if self.max_size < 1:
            raise ValueError(f"Batch max_size must be >= 1, got {self.max_size}")

    @property
    def seconds(self) -> float:
        return _seconds(self.max_wait)
