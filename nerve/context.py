"""What the running handler is handling, carried by a contextvar.

``publish`` reads it to stamp ``causation_id`` / ``correlation_id`` on events a handler
emits, so chains trace themselves without the handler passing ids around. Tasks a
handler spawns inherit the context, and with it the chain.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any, Protocol

from nerve.events import Event
from nerve.exceptions import NerveError

if TYPE_CHECKING:
    from nerve.stores.base import Store


class Waiter(Protocol):
    """What ``nerve.wait_for`` asks of the bus running the handler (``nerve.waits``)."""

    async def wait(
        self,
        ctx: HandlerContext,
        event_type: str,
        match: Mapping[str, Any],
        timeout: float | None,
        name: str | None,
        info: Mapping[str, Any],
    ) -> Event[Any] | None: ...

    async def publish(self, event: Event[Any]) -> Event[Any]:
        """Publish through the bus running the handler (a request its wait answers)."""
        ...


class HandlerContext:
    """The delivery a handler is running for: its event, subscription and attempt.

    ``extensions`` holds what layers above the core keep per attempt, by a key of their
    own (``nerve.llm`` keeps the attempt's model usage there: ``nerve.llm.usage()``).
    ``waiter`` is the bus's wait service (``nerve.wait_for`` suspends through it).
    """

    __slots__ = ("attempt", "event", "extensions", "store", "subscription", "waiter")

    def __init__(
        self,
        event: Event[Any],
        subscription: str,
        attempt: int,
        store: Store,
        waiter: Waiter | None = None,
    ) -> None:
        self.event = event
        self.subscription = subscription
        self.attempt = attempt
        self.store = store
        self.waiter = waiter
        self.extensions: dict[str, Any] = {}

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
