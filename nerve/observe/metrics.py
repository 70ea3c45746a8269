"""Prometheus metrics of a bus and its HTTP intake; every name starts with ``nerve_``.

Each :class:`Metrics` has its own registry (no process-wide state), served by the HTTP
app at ``/metrics``, which awaits :meth:`Metrics.refresh` first: lag is asked of the
transport at scrape time. Labels are bounded, whatever the traffic: subscription names
come from the code, HTTP rejections from a fixed set of reasons, and event types (which a
sender chooses) keep their own label for the first ``max_event_types`` (100) seen, every
later one counting under ``event_type="other"``.
With several worker processes each serves its own figures (scrape each, or sum them).

Example:
    ```python
    metrics = Metrics()
    bus.observe(metrics)
    await metrics.refresh(bus)  # the lag gauge
    print(metrics.render().decode())
    ```
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client import exposition as _exposition

from nerve.events import Event
from nerve.observe.observer import Observer

if TYPE_CHECKING:
    from nerve.context import HandlerContext
    from nerve.transports.base import Transport

log = logging.getLogger("nerve")


class Lagging(Protocol):
    """What :meth:`Metrics.refresh` reads of a bus: its transport and subscriptions."""

    @property
    def transport(self) -> Transport: ...

    @property
    def subscriptions(self) -> Mapping[str, object]: ...


#: The content type of :meth:`Metrics.render`'s output.
CONTENT_TYPE = _exposition.CONTENT_TYPE_LATEST

#: Handler latency buckets, seconds: from a fast rule to a slow LLM call.
LATENCY_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)
#: Distinct ``event_type`` label values a :class:`Metrics` keeps; later new types are
#: counted under :data:`OTHER` (a sender choosing types must not grow the series).
MAX_EVENT_TYPES = 100
#: The ``event_type`` label of every type past :data:`MAX_EVENT_TYPES`.
OTHER = "other"
#: Longest wait for the transport's lag figures at a scrape, in seconds.
LAG_TIMEOUT = 5.0


class Metrics(Observer):
    """Counters and histograms of what a bus does, fed by its observer hooks.

    Args:
        registry: where the metrics live (default: a registry of their own).
    """

    def __init__(
        self,
        registry: CollectorRegistry | None = None,
        *,
        max_event_types: int = MAX_EVENT_TYPES,
    ) -> None:
        self.registry = registry or CollectorRegistry(auto_describe=True)
        self.max_event_types = max_event_types
        self._types: set[str] = set()
        reg = self.registry
        by_type = ["event_type"]
        by_sub = ["event_type", "subscription"]
        self.events_published = Counter(
            "nerve_events_published", "Events the transport accepted.", by_type, registry=reg
        )
        self.events_handled = Counter(
            "nerve_events_handled", "Events a subscription handled.", by_sub, registry=reg
        )
        self.events_failed = Counter(
            "nerve_events_failed", "Failed attempts (each, retried or not).", by_sub, registry=reg
        )
        self.events_retried = Counter(
            "nerve_events_retried", "Failed attempts that will be retried.", by_sub, registry=reg
        )
        self.events_dead_lettered = Counter(
            "nerve_events_dead_lettered", "Events given up on.", by_sub, registry=reg
        )
        self.handler_seconds = Histogram(
            "nerve_handler_duration_seconds",
            "Time in the handler per attempt, successful or not.",
            ["subscription"],
            buckets=LATENCY_BUCKETS,
            registry=reg,
        )
        self.http_accepted = Counter(
            "nerve_http_events_accepted",
            "Events the HTTP intake accepted (202), by how they came.",
            ["source"],
            registry=reg,
        )
        self.http_rejected = Counter(
            "nerve_http_requests_rejected",
            "Requests the HTTP intake refused, by reason.",
            ["reason"],
            registry=reg,
        )
        self.loop_blocked = Counter(
            "nerve_loop_blocked_seconds",
            "Time a subscription's handlers held the event loop, in stalls longer than the "
            "loop watchdog's threshold (NERVE_LOOP_WATCHDOG).",
            ["subscription"],
            registry=reg,
        )
        self.loop_blocks = Counter(
            "nerve_loop_blocks",
            "Stalls of the event loop longer than the watchdog's threshold, by the "
            "subscription whose handler held it.",
            ["subscription"],
            registry=reg,
        )
        self.subscription_lag = Gauge(
            "nerve_subscription_lag",
            "Events published to a subscription and not yet settled (waiting, in flight or "
            "waiting to retry), as the transport counts them at scrape time.",
            ["subscription"],
            registry=reg,
        )
        self._published_by_type: dict[str, Any] = {}
        self._handled_by: dict[tuple[str, str], tuple[Any, Any]] = {}

    # observer hooks

    def _type(self, event_type: str) -> str:
        """The label of ``event_type``: itself among the first ``max_event_types`` seen,
        else :data:`OTHER`."""
        types = self._types
        if event_type in types:
            return event_type
        if len(types) < self.max_event_types:
            types.add(event_type)
            return event_type
        return OTHER

    def published(self, events: Sequence[Event[Any]]) -> None:
        if len(events) == 1:
            self._published_child(self._type(events[0].event_type)).inc()
            return
        counts: dict[str, int] = {}
        for event in events:
            label = self._type(event.event_type)
            counts[label] = counts.get(label, 0) + 1
        for event_type, count in counts.items():
            self._published_child(event_type).inc(count)

    def _published_child(self, event_type: str) -> Any:
        # labels() takes a lock and hashes its arguments on every call: keep the children
        # of the hot paths (as many as the label values, which the app's code bounds).
        child = self._published_by_type.get(event_type)
        if child is None:
            child = self._published_by_type[event_type] = self.events_published.labels(event_type)
        return child

    def handled(
        self, subscription: str, event: Event[Any], seconds: float, context: HandlerContext
    ) -> None:
        key = (self._type(event.event_type), subscription)
        children = self._handled_by.get(key)
        if children is None:
            children = self._handled_by[key] = (
                self.events_handled.labels(*key),
                self.handler_seconds.labels(subscription),
            )
        children[0].inc()
        children[1].observe(seconds)

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
        labels = (self._type(event.event_type), subscription)
        self.events_failed.labels(*labels).inc()
        if retry_in is None:
            self.events_dead_lettered.labels(*labels).inc()
        else:
            self.events_retried.labels(*labels).inc()
        self.handler_seconds.labels(subscription).observe(seconds)

    def blocked(self, subscription: str, event: Event[Any], seconds: float) -> None:
        self.loop_blocks.labels(subscription).inc()
        self.loop_blocked.labels(subscription).inc(seconds)

    # exposition

    async def refresh(self, bus: Lagging) -> None:
        """Ask the transport for each subscription's lag (``nerve_subscription_lag``).

        Call it before :meth:`render` (the HTTP app's ``/metrics`` does). A subscription
        whose transport cannot say (or does not answer within :data:`LAG_TIMEOUT`) has no
        sample rather than a stale one.
        """
        names = list(bus.subscriptions)
        transport = bus.transport
        results: list[int | BaseException | None]
        try:
            async with asyncio.timeout(LAG_TIMEOUT):
                results = await asyncio.gather(
                    *(transport.lag(name) for name in names), return_exceptions=True
                )
        except TimeoutError:
            log.warning("no lag figures from the transport within %.1fs", LAG_TIMEOUT)
            results = [None] * len(names)
        for name, lag in zip(names, results, strict=True):
            if isinstance(lag, int):
                self.subscription_lag.labels(name).set(lag)
                continue
            if isinstance(lag, BaseException):
                if not isinstance(lag, Exception):
                    raise lag  # a cancellation, not a transport failure
                log.debug("could not get the lag of %s", name, exc_info=lag)
            self.subscription_lag.remove(name)  # no sample rather than a stale one

    def render(self) -> bytes:
        """The registry in Prometheus' text format."""
        return generate_latest(self.registry)
