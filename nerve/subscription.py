"""A subscription: a handler, the pattern it listens on, and how its events are delivered.

Everything that can be decided once (the payload model, the ordering key, the retry
schedule) is decided here at subscribe time, so the hot path only reads attributes.
"""

from __future__ import annotations

import inspect
import random
import typing
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import TypeAdapter, ValidationError

from nerve.events import Event
from nerve.exceptions import PayloadInvalid, SubscriptionError
from nerve.flow.controls import (
    Batch,
    Concurrency,
    Debounce,
    PrioritySpec,
    RateLimit,
    Throttle,
)
from nerve.matching import check_paths
from nerve.routing import validate_pattern

Handler = Callable[[Any], Awaitable[object]] | Callable[[Any], object]
"""A function of one event: async, or plain with ``blocking=True`` (run in a thread). Its
return value is ignored."""

KeyFunc = Callable[[Event[Any]], Hashable]
StartFrom = Literal["earliest", "latest"]


@dataclass(frozen=True, slots=True)
class Backoff:
    """Exponential backoff with jitter between attempts.

    The n-th retry waits ``min(maximum, initial * multiplier ** (n - 1))``, shortened by a
    random fraction up to ``jitter`` so that retries of many events do not arrive together.
    The defaults retry first within half a second, interactive enough for development.
    """

    initial: float = 0.5
    multiplier: float = 2.0
    maximum: float = 60.0
    jitter: float = 0.5

    def delay(self, retry: int) -> float:
        """Seconds to wait before retry number ``retry`` (1 for the first retry)."""
        base = min(self.maximum, self.initial * self.multiplier ** (retry - 1))
        return base * (1.0 - self.jitter * random.random())


@dataclass(slots=True)
class Subscription:
    """One handler's subscription to a pattern. Made by ``EventBus.on`` / ``subscribe``."""

    name: str
    pattern: str
    handler: Handler
    retries: int = 3
    timeout: float | None = None
    concurrency: int = 64
    backoff: Backoff = field(default_factory=Backoff)
    ordered_by: KeyFunc | None = None
    start_from: StartFrom = "earliest"
    payload_model: type[Any] | None = None
    blocking: bool = False
    #: ``(event type, path)`` pairs: an event of that type whose value at ``path`` equals
    #: the handled event's cancels the run while it waits or retries.
    cancel_on: tuple[tuple[str, str], ...] = ()
    #: Flow controls, global across processes (:mod:`nerve.flow`).
    limit: Concurrency | None = None
    throttle: Throttle | None = None
    rate_limit: RateLimit | None = None
    debounce: Debounce | None = None
    #: Deliveries run highest priority first: True (the ``nerve-priority`` metadata), a
    #: path, or a function of the event; None: in the order received.
    priority: PrioritySpec | Literal[True] | None = None
    #: The handler takes ``list[Event]`` batches (:class:`nerve.flow.Batch`).
    batch: Batch | None = None
    _event_class: type[Event[Any]] | None = field(default=None, repr=False)
    _adapter: TypeAdapter[Any] | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        validate_pattern(self.pattern)
        if self.retries < 0:
            raise SubscriptionError(f"retries must be >= 0, got {self.retries}")
        if self.concurrency < 1:
            raise SubscriptionError(f"concurrency must be >= 1, got {self.concurrency}")
        if self.timeout is not None and self.timeout <= 0:
            raise SubscriptionError(f"timeout must be > 0 seconds, got {self.timeout}")
        for event_type, path in self.cancel_on:
            validate_pattern(event_type)
            if any(c in event_type for c in "*#"):
                raise SubscriptionError(
                    f"cancel_on takes event types, not patterns: {event_type!r}"
                )
            try:
                check_paths({path: None})
            except ValueError as exc:
                raise SubscriptionError(f"cancel_on: {exc}") from None
        if self.batch is not None:
            clash = [
                name
                for name, on in (
                    ("ordered_by", self.ordered_by),
                    ("blocking", self.blocking),
                    ("cancel_on", self.cancel_on),
                    ("flow controls", self.controlled),
                    ("payload_model", self.payload_model),
                )
                if on
            ]
            if clash:
                raise SubscriptionError(f"a batch subscription takes no {', '.join(clash)}")
            return
        if self.payload_model is None:
            self._event_class, self.payload_model = _declared_event_class(self.handler)
        elif self._event_class is None:
            self._event_class = Event[self.payload_model]  # type: ignore[name-defined]  # a runtime generic alias
        if self.payload_model is not None:
            self._adapter = TypeAdapter(self.payload_model)

    @property
    def controlled(self) -> bool:
        """Whether the subscription has flow controls (its deliveries pass a gate)."""
        return any((self.limit, self.throttle, self.rate_limit, self.debounce))

    def prepare(self, event: Event[Any]) -> Event[Any]:
        """The event as the handler wants it: with its payload validated if it asked.

        Raises:
            PayloadInvalid: the payload does not validate (never retried).
        """
        if self._adapter is None or self._event_class is None:
            return event
        try:
            payload = self._adapter.validate_python(event.payload)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(map(str, err['loc'])) or 'payload'}: {err['msg']}"
                for err in exc.errors()
            )
            raise PayloadInvalid(
                f"payload does not validate as {_type_name(self.payload_model)}: {problems}"
            ) from exc
        fields = dict(event)
        fields["payload"] = payload
        return self._event_class.model_construct(event.model_fields_set, **fields)


def default_name(handler: Handler) -> str:
    """A handler's stable subscription name: its module and qualified name."""
    module = getattr(handler, "__module__", None) or "handler"
    qualname = getattr(handler, "__qualname__", None) or type(handler).__qualname__
    return f"{module}.{qualname}"


def check_handler(handler: Handler, *, blocking: bool = False) -> None:
    """Raise :class:`SubscriptionError` unless ``handler`` is an async callable, or a plain
    one with ``blocking=True``."""
    call = getattr(handler, "__call__", None)  # noqa: B004  # an async __call__ counts
    is_async = inspect.iscoroutinefunction(handler) or inspect.iscoroutinefunction(call)
    if blocking and is_async:
        raise SubscriptionError(
            f"handler {default_name(handler)} is async: blocking=True runs a plain function "
            "(def handler(event): ...) in a thread; an async handler runs on the event loop "
            "and can move blocking work off it with await asyncio.to_thread(...)"
        )
    if not blocking and not is_async:
        if not callable(handler):
            raise SubscriptionError(f"handler {default_name(handler)} is not callable")
        raise SubscriptionError(
            f"handler {default_name(handler)} must be an async function of one event "
            "(async def handler(event): ...), or a plain one with blocking=True to run it "
            "in a thread (CPU-bound or blocking work)"
        )


def key_func(ordered_by: str | KeyFunc | None) -> KeyFunc | None:
    """Turn ``ordered_by`` into a function of the event.

    A string is a dotted path into the payload (``"customer.id"``); a missing path gives
    the key ``None``, so such events are ordered among themselves.
    """
    if ordered_by is None or callable(ordered_by):
        return ordered_by
    path = ordered_by.split(".")

    def from_payload(event: Event[Any]) -> Hashable:
        value: Any = event.payload
        for part in path:
            if not isinstance(value, dict):
                return None
            value = value.get(part)
        return value if isinstance(value, Hashable) else repr(value)

    return from_payload


def _declared_event_class(handler: Handler) -> tuple[type[Event[Any]] | None, type[Any] | None]:
    """Find ``Event[Model]`` on the handler's first parameter, if it declares one."""
    target: Callable[..., object] = handler
    if not (inspect.isfunction(handler) or inspect.ismethod(handler)):
        target = getattr(handler, "__call__", handler)  # noqa: B004  # an async callable object
    try:
        params = [p for p in inspect.signature(target).parameters.values() if p.name != "self"]
    except (TypeError, ValueError):
        return None, None  # no signature to read (a builtin): the payload stays plain JSON
    if not params:
        return None, None
    try:
        hints = typing.get_type_hints(target)
    except NameError as exc:
        if "[" in str(params[0].annotation):  # it meant to declare Event[Model]
            raise SubscriptionError(
                f"cannot resolve the annotation {params[0].annotation!r} of "
                f"{default_name(handler)} ({exc}); define the model at module level "
                "or pass payload_model="
            ) from exc
        return None, None
    hint = hints.get(params[0].name)
    meta = getattr(hint, "__pydantic_generic_metadata__", None)
    if isinstance(hint, type) and issubclass(hint, Event) and meta and meta["args"]:
        return hint, meta["args"][0]
    return None, None


def _type_name(tp: object) -> str:
    return getattr(tp, "__name__", repr(tp))
