"""What the running handler is handling, carried by a contextvar.

``publish`` reads it to stamp ``causation_id`` / ``correlation_id`` on events a handler
emits, so chains trace themselves without the handler passing ids around. Tasks a
handler spawns inherit the context, and with it the chain.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from nerve.events import Event
from nerve.exceptions import NerveError

if TYPE_CHECKING:
    from nerve.stores.base import Store


@dataclass(slots=True)
class LLMUsage:
    """Model tokens and calls of one attempt of a handler, in total and per model.

    ``nerve.llm`` adds to it after every model call made inside a handler.
    """

    prompt_tokens: int = 0
    completion_tokens: int = 0
    calls: int = 0
    by_model: dict[str, LLMUsage] = field(default_factory=dict)

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def add(self, model: str, prompt_tokens: int, completion_tokens: int) -> None:
        """Count one call to ``model``."""
        self.prompt_tokens += prompt_tokens
        self.completion_tokens += completion_tokens
        self.calls += 1
        per_model = self.by_model.get(model)
        if per_model is None:
            per_model = self.by_model[model] = LLMUsage()
        per_model.prompt_tokens += prompt_tokens
        per_model.completion_tokens += completion_tokens
        per_model.calls += 1


class HandlerContext:
    """The delivery a handler is running for: its event, subscription and attempt.

    ``usage`` counts the model calls of this attempt (see :class:`LLMUsage`).
    """

    __slots__ = ("attempt", "event", "store", "subscription", "usage")

    def __init__(self, event: Event[Any], subscription: str, attempt: int, store: Store) -> None:
        self.event = event
        self.subscription = subscription
        self.attempt = attempt
        self.store = store
        self.usage = LLMUsage()

    def __repr__(self) -> str:
        return f"HandlerContext({self.subscription}, {self.event.event_id}, attempt {self.attempt})"


#: The delivery being handled in this task: set by the runner around each handler call.
handling: ContextVar[HandlerContext | None] = ContextVar("nerve_handler", default=None)


def current() -> HandlerContext | None:
    """The delivery being handled in this task, or None outside handlers."""
    return handling.get()


@asynccontextmanager
async def transaction() -> AsyncIterator[Any]:
    """Inside a handler: a store transaction that commits the handler's writes together
    with the record that this subscription handled this event (exactly-once effects).

    Example:
        ```python
        bus = EventBus("sqlite:///app.db")  # the SQLite store lives in the same file

        @bus.on("payment.received")
        async def book(event: Event) -> None:
            async with nerve.transaction() as tx:  # keep it short: no LLM calls inside
                await tx.execute("INSERT INTO ledger VALUES (?, ?)", (event.event_id, 42))
        ```

    If the process dies before the commit, nothing was written and the event comes back;
    after it, the event is recorded as handled and is not handled again. If another
    worker committed the same event first, :class:`nerve.AlreadyHandled` rolls this one
    back and the delivery is acknowledged as a duplicate.
    """
    ctx = handling.get()
    if ctx is None:
        raise NerveError("nerve.transaction() works only inside a handler")
    async with ctx.store.transaction(ctx.subscription, ctx.event.event_id) as tx:
        yield tx
