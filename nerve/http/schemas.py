"""The shapes the HTTP app takes and answers with, as its OpenAPI schema shows them."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import Path, Query
from pydantic import BaseModel, ConfigDict, Field

from nerve import constants
from nerve.approvals import Decision, PendingApproval
from nerve.records import DeadLetter, DeliveryState

__all__ = [
    "Accepted",
    "Approvals",
    "BatchAccepted",
    "DeadLetter",
    "DeadLetters",
    "Decision",
    "DecisionIn",
    "EventIdPath",
    "EventIdQuery",
    "EventIn",
    "EventStatusOut",
    "FieldError",
    "Problem",
    "Purged",
    "SubscriptionQuery",
    "WaitOut",
    "Waits",
    "json_body",
    "problem_responses",
    "request_body",
]


#: An event id in a path: printable, as every event id is (else 422, said in words).
EventIdPath = Annotated[
    str, Path(pattern=constants.PRINTABLE_RE, description="Printable: no control characters.")
]
EventIdQuery = Annotated[
    str | None,
    Query(
        pattern=constants.PRINTABLE_RE,
        description="Only this event's entries. Printable: no control characters.",
    ),
]
SubscriptionQuery = Annotated[
    str | None,
    Query(
        pattern=constants.PRINTABLE_RE,
        description="Only this subscription's entry (default: every one). Printable.",
    ),
]


class EventIn(BaseModel):
    """An event as senders post it; nerve fills in what is left out."""

    model_config = ConfigDict(extra="forbid")

    event_type: str = Field(
        pattern=constants.EVENT_TYPE_RE,
        max_length=255,
        description="Dot-separated segments of [a-z0-9_-], e.g. support.ticket.created.",
    )
    # Any, not JsonValue: the schema stays self-contained (no recursive $defs to resolve).
    payload: Any = Field(default=None, description="Any JSON value (default {}).")
    event_id: str | None = Field(
        default=None,
        min_length=1,
        max_length=255,
        pattern=constants.PRINTABLE_RE,
        description="Your id for it: re-posting the same id is accepted, and not handled "
        "again once the first copy is done (within the idempotency window). Printable: no "
        "control characters or line breaks.",
    )
    source: str = Field(
        default="",
        max_length=2048,
        pattern=constants.PRINTABLE_RE,
        description="Who emitted it (a URI-reference). Printable.",
    )
    correlation_id: str | None = Field(
        default=None,
        max_length=255,
        pattern=constants.PRINTABLE_RE,
        description="The chain it belongs to (default: its own id). Printable.",
    )
    causation_id: str | None = Field(
        default=None,
        max_length=255,
        pattern=constants.PRINTABLE_RE,
        description="The event that caused it. Printable.",
    )
    timestamp: str | None = Field(
        default=None,
        max_length=64,
        pattern=constants.PRINTABLE_RE,
        description="ISO 8601 (default: now, UTC).",
    )
    metadata: dict[str, str] = Field(default_factory=dict)


class Accepted(BaseModel):
    """The transport has the event; handlers run after this answer."""

    event_id: str
    status: Literal["accepted"] = "accepted"


class BatchAccepted(BaseModel):
    """Every event of the batch was accepted, in the order sent."""

    accepted: int
    results: list[Accepted]


class FieldError(BaseModel):
    loc: list[str | int] = Field(description="Where: body, index, field.")
    msg: str
    type: str


class Problem(BaseModel):
    """Why a request was refused."""

    error: str = Field(description="A stable code: unauthorized, too_large, invalid, ...")
    detail: str = Field(description="What went wrong and how to fix it.")
    errors: list[FieldError] | None = Field(default=None, description="Per-field errors (422).")


class EventStatusOut(BaseModel):
    """Where an event stands with each subscription that should handle it."""

    event_id: str
    event_type: str
    settled: bool = Field(description="Every subscription is done or dead-lettered.")
    subscriptions: dict[str, DeliveryState]
    reasons: dict[str, str] = Field(
        default_factory=dict,
        description="Why a deferred subscription waits (throttled until T, debounced, "
        "waiting for a slot of its key), by subscription.",
    )


class DeadLetters(BaseModel):
    dead_letters: list[DeadLetter]


class Purged(BaseModel):
    purged: int


class Approvals(BaseModel):
    """The approvals runs wait for, oldest first."""

    approvals: list[PendingApproval]


class DecisionIn(BaseModel):
    """A person's decision on a pending approval."""

    model_config = ConfigDict(extra="forbid")

    decision: Literal["approve", "reject"]
    by: str | None = Field(
        default=None,
        max_length=255,
        pattern=constants.PRINTABLE_RE,
        description="Who decides (kept in the decision). Printable.",
    )
    comment: str | None = Field(
        default=None, max_length=4000, description="Why, for the run and the record."
    )


class WaitOut(BaseModel):
    """A run suspended in ``wait_for``: whose, for what, since and until when."""

    subscription: str
    event_id: str = Field(description="The waiting run's event.")
    event_type: str = Field(description="The waiting run's event type.")
    name: str = Field(description="The wait's name within its run (wait:1, approval:...).")
    awaited: str = Field(description="The event type that resumes it.")
    match: dict[str, Any] = Field(description="Paths of the awaited event and their values.")
    since: datetime = Field(description="Events published from then on can answer it.")
    deadline: datetime | None = Field(description="When it times out (null: never).")
    info: dict[str, Any] = Field(description="What it is for, as the handler said.")


class Waits(BaseModel):
    waits: list[WaitOut]


def problem_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` saying each of ``statuses`` answers with a :class:`Problem`."""
    return {status: {"model": Problem} for status in statuses}


def json_body(schema: dict[str, Any], *media_types: str, required: bool = True) -> dict[str, Any]:
    """An OpenAPI ``requestBody`` for an endpoint that reads its body itself."""
    return request_body(dict.fromkeys(media_types, schema), required=required)


def request_body(schemas: dict[str, dict[str, Any]], *, required: bool = True) -> dict[str, Any]:
    """An OpenAPI ``requestBody`` with a schema per media type."""
    content = {media: {"schema": schema} for media, schema in schemas.items()}
    return {"requestBody": {"required": required, "content": content}}
