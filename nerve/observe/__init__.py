"""Observing a bus: the hooks the core calls as events move (:mod:`.observer`), and what
hangs on them: the outcome log (:mod:`.logs`), traces (:mod:`.tracing`) and Prometheus
metrics (:mod:`.metrics`). The core imports only :mod:`.observer`; the bus adds the
default observers below."""

from __future__ import annotations

from nerve.observe.logs import EventLog
from nerve.observe.observer import Observer, Observers
from nerve.observe.tracing import Tracing

__all__ = ["Observer", "Observers", "default_observers"]


def default_observers() -> list[Observer]:
    """The observers every bus starts with: the outcome log line, then the trace span.

    The log line comes before the span ends, so it carries the trace id.
    """
    return [EventLog(), Tracing()]
