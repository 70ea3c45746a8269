"""OpenTelemetry traces of a bus: a span per publish, per handling attempt, per model call.

:class:`Tracing` is an observer. ``publishing`` opens a PRODUCER span and writes its W3C
trace context into the event's metadata (``traceparent``, ``tracestate``: CloudEvents'
distributed-tracing extension, so it travels on every transport and across processes);
``started`` reads it back and opens a CONSUMER span, a child of the publish span, and makes
it current for the handler: what the handler does (model calls, events it publishes, any
instrumented HTTP client) lands in the same trace. One trace follows a whole chain.

Only the OpenTelemetry API is a dependency. Until an SDK ``TracerProvider`` is installed
(``opentelemetry.trace.set_tracer_provider``) the default observer does nothing at all: no
span objects, no metadata. An event that arrives with a ``traceparent`` from outside (an
HTTP client that traces) continues the client's trace.

Example:
    ```python
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(provider)  # every bus traces from now on
    ```
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import (
    NoOpTracerProvider,
    ProxyTracerProvider,
    SpanKind,
    Status,
    StatusCode,
    Tracer,
    TracerProvider,
)
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from nerve.events import Event
from nerve.observe.observer import Observer

if TYPE_CHECKING:
    from nerve.context import HandlerContext

#: The instrumentation scope of nerve's spans.
TRACER_NAME = "nerve"
#: ``messaging.system`` of publish and handling spans.
MESSAGING_SYSTEM = "nerve"
#: Seconds between looks for a global tracer provider while none is installed: one
#: installed after a bus started is used from at most this long after.
PROVIDER_LOOK_INTERVAL = 1.0
#: Publish spans whose publish never completed (the transport raised) are ended after this
#: many newer ones, so a failing transport cannot grow the table.
MAX_OPEN_PUBLISHES = 1024

_PROPAGATOR = TraceContextTextMapPropagator()


class _Handling:
    """The span of the attempt running in this task, and how to undo its context."""

    __slots__ = ("span", "token", "tracer")

    def __init__(self, span: trace.Span, token: object, tracer: Tracer) -> None:
        self.span = span
        self.token = token
        self.tracer = tracer


_handling: ContextVar[_Handling | None] = ContextVar("nerve_trace", default=None)


def _installed(provider: TracerProvider) -> bool:
    """Whether ``provider`` is an SDK's (the API's own providers make no spans)."""
    return not isinstance(provider, ProxyTracerProvider | NoOpTracerProvider)


class Tracing(Observer):
    """Spans for publishes and handling attempts, linked through the events' metadata.

    Args:
        provider: where spans go. By default the global one, looked for once a second
            until an SDK's is installed (so one installed after the bus was made is
            used); until then every hook returns at once.
    """

    def __init__(self, provider: TracerProvider | None = None) -> None:
        self._provider = provider
        self._tracer: Tracer | None = None
        self._next_look = 0.0  # when to look for a global provider again
        # Publish spans between publishing() and published(), by the event object.
        self._open: OrderedDict[int, tuple[Event[Any], trace.Span]] = OrderedDict()

    def tracer(self) -> Tracer | None:
        """The tracer to use now, or None while no SDK is installed."""
        if self._tracer is not None:
            return self._tracer
        # Looking the global provider up costs a microsecond (it reads the environment):
        # without an SDK, look once a second. Once installed it is final (the API refuses
        # to replace it), so its tracer is kept.
        now = time.monotonic()
        if now < self._next_look:
            return None
        self._next_look = now + PROVIDER_LOOK_INTERVAL
        provider = self._provider or trace.get_tracer_provider()
        if not _installed(provider):
            return None
        self._tracer = provider.get_tracer(TRACER_NAME)
        return self._tracer

    # observer hooks

    def publishing(self, event: Event[Any]) -> Event[Any]:
        tracer = self.tracer()
        if tracer is None:
            return event
        parent: otel_context.Context | None = None
        if not trace.get_current_span().get_span_context().is_valid and (
            "traceparent" in event.metadata
        ):
            parent = _PROPAGATOR.extract(event.metadata)  # a traced client's event
        span = tracer.start_span(
            f"publish {event.event_type}",
            context=parent,
            kind=SpanKind.PRODUCER,
            attributes={
                "messaging.system": MESSAGING_SYSTEM,
                "messaging.operation.type": "send",
                "messaging.destination.name": event.event_type,
                "messaging.message.id": event.event_id,
                "nerve.event.type": event.event_type,
                "nerve.event.id": event.event_id,
                "nerve.correlation_id": event.correlation_id,
            },
        )
        carrier: dict[str, str] = {}
        _PROPAGATOR.inject(carrier, context=trace.set_span_in_context(span))
        if carrier:
            event = event.model_copy(update={"metadata": {**event.metadata, **carrier}})
        self._open[id(event)] = (event, span)
        while len(self._open) > MAX_OPEN_PUBLISHES:
            _, (_, stale) = self._open.popitem(last=False)
            stale.set_status(Status(StatusCode.ERROR, "the publish did not complete"))
            stale.end()
        return event

    def published(self, events: Sequence[Event[Any]]) -> None:
        if not self._open:
            return
        for event in events:
            entry = self._open.pop(id(event), None)
            if entry is not None and entry[0] is event:
                entry[1].end()

    def started(self, subscription: str, event: Event[Any], context: HandlerContext) -> None:
        left = _handling.get()
        if left is not None:  # the last attempt in this task ended without a verdict
            _finish(left, "abandoned")
        tracer = self.tracer()
        if tracer is None:
            return
        parent = _PROPAGATOR.extract(event.metadata)
        span = tracer.start_span(
            f"process {subscription}",
            context=parent,
            kind=SpanKind.CONSUMER,
            attributes={
                "messaging.system": MESSAGING_SYSTEM,
                "messaging.operation.type": "process",
                "messaging.destination.name": event.event_type,
                "messaging.message.id": event.event_id,
                "messaging.consumer.group.name": subscription,
                "nerve.event.type": event.event_type,
                "nerve.event.id": event.event_id,
                "nerve.correlation_id": event.correlation_id,
                "nerve.subscription": subscription,
                "nerve.attempt": context.attempt,
            },
        )
        token = otel_context.attach(trace.set_span_in_context(span, parent))
        _handling.set(_Handling(span, token, tracer))

    def handled(
        self, subscription: str, event: Event[Any], seconds: float, context: HandlerContext
    ) -> None:
        handling = _handling.get()
        if handling is not None:
            _finish(handling, "handled")

    def waiting(
        self, subscription: str, event: Event[Any], seconds: float, context: HandlerContext
    ) -> None:
        handling = _handling.get()
        if handling is not None:
            _finish(handling, "waiting")

    def cancelled(
        self, subscription: str, event: Event[Any], seconds: float, context: HandlerContext
    ) -> None:
        handling = _handling.get()
        if handling is not None:
            _finish(handling, "cancelled")

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
        handling = _handling.get()
        if handling is None:
            return
        span = handling.span
        span.record_exception(error)
        span.set_status(Status(StatusCode.ERROR, f"{type(error).__name__}: {error}"))
        if retry_in is not None:
            span.set_attribute("nerve.retry_in", retry_in)
        _finish(handling, "dead_lettered" if retry_in is None else "retrying")


def _finish(handling: _Handling, outcome: str) -> None:
    _handling.set(None)
    handling.span.set_attribute("nerve.outcome", outcome)
    handling.span.end()
    otel_context.detach(handling.token)  # type: ignore[arg-type]  # attach()'s own token


def current_tracer() -> Tracer | None:
    """The tracer of the handling span running in this task, else the global one (None
    while no SDK is installed): model calls made by a handler join its trace."""
    handling = _handling.get()
    if handling is not None:
        return handling.tracer
    provider = trace.get_tracer_provider()
    if not _installed(provider):
        return None
    return provider.get_tracer(TRACER_NAME)


@contextmanager
def model_call(
    operation: str, model: str, server: str | None = None
) -> Iterator[trace.Span | None]:
    """A CLIENT span around one model call (``gen_ai.*`` attributes), current inside.

    Yields None, and costs nothing, while no SDK is installed. An exception escaping the
    block is recorded on the span.
    """
    tracer = current_tracer()
    if tracer is None:
        yield None
        return
    attributes: dict[str, str] = {
        "gen_ai.operation.name": operation,
        "gen_ai.provider.name": "openai",
        "gen_ai.request.model": model,
    }
    if server:
        attributes["server.address"] = server
    span = tracer.start_span(f"{operation} {model}", kind=SpanKind.CLIENT, attributes=attributes)
    with trace.use_span(span, end_on_exit=True):
        yield span


def record_usage(span: trace.Span | None, model: str | None, prompt: int, completion: int) -> None:
    """Put a model call's token usage (and the model that answered) on its span."""
    if span is None:
        return
    if model:
        span.set_attribute("gen_ai.response.model", model)
    span.set_attribute("gen_ai.usage.input_tokens", prompt)
    span.set_attribute("gen_ai.usage.output_tokens", completion)
