"""What the running handler is handling, carried by a contextvar.

``publish`` reads it to stamp ``causation_id`` / ``correlation_id`` on events a handler
emits, so chains trace themselves without the handler passing ids around. Tasks a
handler spawns inherit the context, and with it the chain.
"""

from __future__ import annotations

from contextvars import ContextVar
from typing import Any

from nerve.events import Event


class HandlerContext:
    """The delivery a handler is running for: its event, subscription and attempt."""

    __slots__ = ("attempt", "event", "subscription")

    def __init__(self, event: Event[Any], subscription: str, attempt: int) -> None:
        self.event = event
        self.subscription = subscription
        self.attempt = attempt

    def __repr__(self) -> str:
        return f"HandlerContext({self.subscription}, {self.event.event_id}, attempt {self.attempt})"


_current: ContextVar[HandlerContext | None] = ContextVar("nerve_handler", default=None)


def current() -> HandlerContext | None:
    """The delivery being handled in this task, or None outside handlers."""
    return _current.get()
