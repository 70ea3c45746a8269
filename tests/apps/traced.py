"""Apps for the cross-process tracing test: each worker process traces to a JSON file.

``TRACE_SPANS`` is the file: every finished span is appended as one JSON line (the
in-memory exporter lives in one process, so each process writes its own file).
``traced:first`` handles ``trace.a`` and publishes ``trace.b``; ``traced:second`` handles
``trace.b``. Set up at import: a test app, not the library.
"""

from __future__ import annotations

import os

from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor

from nerve import Event, EventBus
from tests.apps.span_files import JSONLinesExporter

provider = TracerProvider()
provider.add_span_processor(SimpleSpanProcessor(JSONLinesExporter(os.environ["TRACE_SPANS"])))
trace.set_tracer_provider(provider)

first = EventBus()
second = EventBus()


@first.on("trace.a", name="first")
async def handle_a(event: Event) -> None:
    await first.publish(Event(event_type="trace.b", payload={"from": event.event_id}))


@second.on("trace.b", name="second")
async def handle_b(event: Event) -> None:
    pass
