"""Hooks the core calls as events move: what metrics, logs and traces hang on.

An :class:`Observer` overrides the hooks it needs; the rest do nothing. Hooks run inline
on the bus's event loop, so they must be quick and must not raise (an exception from one
is logged and swallowed: observing never changes what happens to an event). A bus with
no observers pays nothing for them.

Example:
    ```python
    class Printer(Observer):
        def handled(self, subscription, event, seconds, context):
            print(f"{subscription} handled {event.event_id} in {seconds * 1000:.1f} ms")

    bus.observe(Printer())
    ```
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from nerve.events import Event

if TYPE_CHECKING:
    from nerve.context import HandlerContext

log = logging.getLogger("nerve")


class Observer:
    """Base class of observers: every hook does nothing until overridden.

    For one attempt, ``started`` runs in the handler's task just before the handler and
    ``handled`` or ``failed`` in the same task just after, so an observer may set a
    context variable in one and reset it in the other (a tracing span does).
    """

    def publishing(self, event: Event[Any]) -> Event[Any]:
        """Called before the transport gets ``event``; may return a copy with more metadata
        (a trace context, say). Inside a handler it runs in the handler's task."""
        return event

    def published(self, events: Sequence[Event[Any]]) -> None:
        """The transport has these events (one publish, or one ``publish_many``)."""

    def started(self, subscription: str, event: Event[Any], context: HandlerContext) -> None:
        """An attempt is about to run the handler (``context.attempt`` counts from 1)."""

    def handled(
        self, subscription: str, event: Event[Any], seconds: float, context: HandlerContext
    ) -> None:
        """A handler returned: the event is done for this subscription."""

    def failed(
        self,
        subscription: str,
        event: Event[Any],
        error: BaseException,
        seconds: float,
        context: HandlerContext,
        *,
        retry_in: float | None,
    ) -> None:
        """An attempt failed; ``retry_in`` seconds until the next, None if dead-lettered."""

    def waiting(
        self, subscription: str, event: Event[Any], seconds: float, context: HandlerContext
    ) -> None:
        """The handler suspended in ``wait_for``: the event waits, settled but not done."""

    def cancelled(
        self, subscription: str, event: Event[Any], seconds: float, context: HandlerContext
    ) -> None:
        """The run was cancelled (``bus.cancel``, ``cancel_on``): settled, not retried."""

    def blocked(self, subscription: str, event: Event[Any], seconds: float) -> None:
        """The subscription's handler held the event loop ``seconds`` (at least the loop
        watchdog's threshold) handling ``event``: nothing else ran meanwhile."""


class Observers(Observer):
    """Several observers as one; each hook's failure is logged, never raised.

    Each hook calls only the members that override it (bound methods gathered when a
    member is added), so a hook nobody overrides costs an empty loop.
    """

    def __init__(self, observers: Sequence[Observer] = ()) -> None:
        self.members: list[Observer] = []
        self._hooks: dict[str, tuple[Callable[..., Any], ...]] = {}
        for observer in observers:
            self.add(observer)

    def add(self, observer: Observer) -> None:
        """Call ``observer``'s hooks too, after those of the members already here."""
        self.members.append(observer)
        for name in _HOOKS:
            overridden = getattr(type(observer), name) is not getattr(Observer, name)
            if overridden:
                self._hooks[name] = (*self._hooks.get(name, ()), getattr(observer, name))
        self._publishing = self._hooks.get("publishing", ())
        self._published = self._hooks.get("published", ())
        self._started = self._hooks.get("started", ())
        self._handled = self._hooks.get("handled", ())
        self._failed = self._hooks.get("failed", ())
        self._blocked = self._hooks.get("blocked", ())
        self._waiting = self._hooks.get("waiting", ())
        self._cancelled = self._hooks.get("cancelled", ())

    def __bool__(self) -> bool:
        return bool(self.members)

    def publishing(self, event: Event[Any]) -> Event[Any]:
        for hook in self._publishing:
            try:
                event = hook(event)
            except Exception:
                log.exception("observer hook %r failed", hook)
        return event

    def published(self, events: Sequence[Event[Any]]) -> None:
        for hook in self._published:
            try:
                hook(events)
            except Exception:
                log.exception("observer hook %r failed", hook)

    def started(self, subscription: str, event: Event[Any], context: HandlerContext) -> None:
        for hook in self._started:
            try:
                hook(subscription, event, context)
            except Exception:
                log.exception("observer hook %r failed", hook)

    def handled(
        self, subscription: str, event: Event[Any], seconds: float, context: HandlerContext
    ) -> None:
        for hook in self._handled:
            try:
                hook(subscription, event, seconds, context)
            except Exception:
                log.exception("observer hook %r failed", hook)

    def failed(
        self,
        subscription: str,
        event: Event[Any],
        error: BaseException,
        seconds: float,
        context: HandlerContext,
        *,
        retry_in: float | None,
    ) -> None:
        for hook in self._failed:
            try:
                hook(subscription, event, error, seconds, context, retry_in=retry_in)
            except Exception:
                log.exception("observer hook %r failed", hook)

    def waiting(
        self, subscription: str, event: Event[Any], seconds: float, context: HandlerContext
    ) -> None:
        for hook in self._waiting:
            try:
                hook(subscription, event, seconds, context)
            except Exception:
                log.exception("observer hook %r failed", hook)

    def cancelled(
        self, subscription: str, event: Event[Any], seconds: float, context: HandlerContext
    ) -> None:
        for hook in self._cancelled:
            try:
                hook(subscription, event, seconds, context)
            except Exception:
                log.exception("observer hook %r failed", hook)

    def blocked(self, subscription: str, event: Event[Any], seconds: float) -> None:
        for hook in self._blocked:
            try:
                hook(subscription, event, seconds)
            except Exception:
                log.exception("observer hook %r failed", hook)


_HOOKS = (
    "publishing",
    "published",
    "started",
    "handled",
    "failed",
    "blocked",
    "waiting",
    "cancelled",
)
