"""What the core records and reads back: delivery states, attempt errors, dead letters,
and the event log's records. Plain data, shared by the stores (which write and
return them), the core (which makes them) and the readers (CLI, HTTP, dashboard)."""

from __future__ import annotations

import traceback
from collections.abc import Sequence
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from nerve.events import Event
from nerve.matching import match_key

__all__ = [
    "AttemptError",
    "DeadLetter",
    "DeliveryState",
    "EventRecord",
    "Outcome",
    "OutcomeRow",
    "OutcomeState",
    "PublishedRow",
    "Timer",
    "TraceNode",
    "WaitRecord",
]


class DeliveryState(StrEnum):
    """Where an event stands with one subscription."""

    PENDING = "pending"
    """Published, not yet handled (or being handled for the first time)."""
    DONE = "done"
    """Handled successfully."""
    FAILED = "failed"
    """At least one attempt failed; a retry is scheduled."""
    DEAD_LETTERED = "dead_lettered"
    """All attempts failed (or the event was rejected); it waits in the dead letter queue."""
    WAITING = "waiting"
    """The handler is suspended in ``wait_for``: a matching event or the timeout resumes it."""
    SCHEDULED = "scheduled"
    """Published with a delay: handed to the transport when due."""
    DEFERRED = "deferred"
    """Held back by a flow control (throttled, debounced, waiting for its key's slot):
    kept as a timer, handed back to the subscription when due."""


class AttemptError(BaseModel):
    """The error of one failed attempt."""

    model_config = ConfigDict(frozen=True)

    attempt: int
    type: str
    message: str
    traceback: str
    time: str = Field(default_factory=lambda: datetime.now(UTC).isoformat())

    @classmethod
    def from_exception(cls, exc: BaseException, attempt: int) -> AttemptError:
        kind = type(exc)
        name = (
            kind.__qualname__
            if kind.__module__ == "builtins"
            else f"{kind.__module__}.{kind.__qualname__}"
        )
        return cls(
            attempt=attempt,
            type=name,
            message=str(exc),
            traceback="".join(traceback.format_exception(exc)),
        )


class DeadLetter(BaseModel):
    """An event that one subscription gave up on, with every attempt's error."""

    model_config = ConfigDict(frozen=True)

    event: Event[Any]
    subscription: str
    attempts: int
    errors: list[AttemptError]
    dead_at: str = Field(default_factory=lambda: datetime.now(UTC).isoformat())

    @property
    def last_error(self) -> AttemptError | None:
        return self.errors[-1] if self.errors else None

    def __repr__(self) -> str:
        last = self.last_error
        why = f"{last.type}: {last.message}" if last else "no error recorded"
        return (
            f"DeadLetter({self.event.event_type} {self.event.event_id} in {self.subscription}, "
            f"{self.attempts} attempt(s), last error {why})"
        )

    __str__ = __repr__


# the event log

OutcomeState = Literal["done", "retrying", "dead_lettered", "waiting", "cancelled"]

#: One outcome as the recorder buffers and the store writes it: (subscription, event_id,
#: attempt, state, ended_at (unix time), seconds, error type or None, error message or None).
OutcomeRow = tuple[str, str, int, str, float, float, "str | None", "str | None"]
#: One published event as the recorder buffers it: (event, published_at (unix time)).
PublishedRow = tuple[Event[Any], float]


class Outcome(BaseModel):
    """How one attempt of one subscription at one event ended."""

    model_config = ConfigDict(frozen=True)

    subscription: str
    attempt: int = Field(description="1 for the first attempt")
    state: OutcomeState = Field(
        description="done; retrying (failed, will be retried); dead_lettered (failed, gave "
        "up); waiting (suspended in wait_for); cancelled (bus.cancel or cancel_on)"
    )
    ended_at: datetime
    seconds: float = Field(description="how long the handler ran")
    error_type: str | None = None
    error_message: str | None = None

    @classmethod
    def from_row(cls, row: Sequence[Any]) -> Outcome:
        """From an :data:`OutcomeRow` (or a store's row in the same order)."""
        sub, _event_id, attempt, state, ended_at, seconds, error_type, error_message = row
        return cls(
            subscription=sub,
            attempt=int(attempt),
            state=state,
            ended_at=datetime.fromtimestamp(float(ended_at), UTC),
            seconds=float(seconds),
            error_type=error_type,
            error_message=error_message,
        )


class EventRecord(BaseModel):
    """A published event, when it was published, and the outcomes recorded so far."""

    model_config = ConfigDict(frozen=True)

    event: Event[Any]
    published_at: datetime
    outcomes: list[Outcome] = Field(default_factory=list, description="oldest first")
    cursor: str | None = Field(
        default=None, description="its place in the log: recent(after=cursor) starts after it"
    )

    @classmethod
    def from_log(
        cls,
        event: Event[Any] | str | bytes,
        published_at: float,
        outcomes: list[Outcome],
        cursor: int | str,
    ) -> EventRecord:
        """A record from a store's log: the event (or its JSON), when it was published
        (seconds since the epoch), its outcomes, and its place in the log."""
        return cls(
            event=event if isinstance(event, Event) else Event.model_validate_json(event),
            published_at=datetime.fromtimestamp(float(published_at), UTC),
            outcomes=outcomes,
            cursor=str(cursor),
        )

    def final_states(self) -> dict[str, OutcomeState]:
        """Each subscription's latest outcome state."""
        return {o.subscription: o.state for o in self.outcomes}


class TraceNode(BaseModel):
    """One event of a chain and the events its handlers published (by ``causation_id``)."""

    record: EventRecord
    children: list[TraceNode] = Field(default_factory=list, description="oldest first")


# time and waiting


class Timer(BaseModel):
    """Something due at a time, kept in the store (:class:`nerve.stores.base.Timers`).

    The id says what it is (``event:...`` a delayed event, ``wait:...`` a wait's timeout
    or answer, ``schedule:...`` a schedule's next firing); the body is JSON for it.
    """

    model_config = ConfigDict(frozen=True)

    timer_id: str
    due: float = Field(description="unix time")
    body: str


class WaitRecord(BaseModel):
    """A handler suspended in ``wait_for``, as the store indexes it.

    ``match`` maps paths of the awaited event (``payload.refund_id``, ``correlation_id``)
    to the values they must have; the store finds waits by ``(event_type, match key)``
    (:func:`nerve.matching.match_key`), one lookup per shape of match in use.
    """

    model_config = ConfigDict(frozen=True)

    wait_id: str
    subscription: str
    name: str = Field(description="the wait's name within its run (wait:1, or given)")
    event: Event[Any] = Field(description="the event whose handling is suspended")
    event_type: str = Field(description="the awaited event's type")
    match: dict[str, Any] = Field(default_factory=dict)
    since: float = Field(description="events published from this unix time on can answer it")
    deadline: float | None = Field(default=None, description="unix time it times out")
    kind: Literal["wait", "cancel"] = "wait"
    info: dict[str, Any] = Field(default_factory=dict, description="what it is for (shown)")
    created_at: float = 0.0

    @property
    def key(self) -> str:
        """Its match key (see :mod:`nerve.matching`)."""
        return match_key(self.match)

    @property
    def shape(self) -> tuple[str, ...]:
        """The paths it matches on, sorted."""
        return tuple(sorted(self.match))
