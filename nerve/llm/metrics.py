"""Prometheus metrics of the model calls handlers make: tokens and estimated cost.

An observer of its own, beside the core's :class:`nerve.observe.metrics.Metrics` and on
the same registry: the core counts events, this counts what ``nerve.llm`` records in each
attempt's usage (:func:`nerve.llm.usage`). ``nerve serve`` adds both.

Example:
    ```python
    metrics = Metrics()
    bus.observe(metrics)
    bus.observe(LLMMetrics(metrics.registry))
    ```
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from prometheus_client import CollectorRegistry, Counter
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from nerve.context import HandlerContext
from nerve.events import Event
from nerve.llm.limits import limited_seconds, reserved_ahead
from nerve.llm.settings import LLMSettings, ModelPrice
from nerve.llm.usage import usage_if_any
from nerve.observe.observer import Observer

__all__ = ["LLMMetrics"]


class LLMMetrics(Observer):
    """``nerve_llm_tokens_total`` and ``nerve_llm_cost_dollars_total``, per subscription
    and model, counted when an attempt ends (handled or failed); and the model limits
    (:mod:`nerve.llm.limits`) of this process: ``nerve_llm_limited_seconds_total`` (time
    calls waited for limits and pauses, per model) and ``nerve_llm_limit_ahead_seconds``
    (how far ahead a model's request or token rate was reserved at its last call: 0 is a
    bucket with room).

    Args:
        registry: the registry to add them to (the core :class:`Metrics`' registry, so
            ``/metrics`` serves both).
        prices: USD per million tokens by model, for the cost (default:
            ``LLMSettings().prices``, i.e. ``NERVE_LLM_PRICES``). Models without a price
            count tokens and no cost.
    """

    def __init__(
        self,
        registry: CollectorRegistry,
        *,
        prices: Mapping[str, ModelPrice] | None = None,
    ) -> None:
        self.prices = dict(LLMSettings().prices if prices is None else prices)
        self.llm_tokens = Counter(
            "nerve_llm_tokens",
            "LLM tokens spent by handlers.",
            ["subscription", "model", "kind"],
            registry=registry,
        )
        self.llm_cost = Counter(
            "nerve_llm_cost_dollars",
            "Estimated LLM spend of handlers in US dollars (tokens times NERVE_LLM_PRICES).",
            ["subscription", "model"],
            registry=registry,
        )
        registry.register(_LimitsCollector())

    def handled(
        self, subscription: str, event: Event[Any], seconds: float, context: HandlerContext
    ) -> None:
        self._count(subscription, context)

    def waiting(
        self, subscription: str, event: Event[Any], seconds: float, context: HandlerContext
    ) -> None:
        self._count(subscription, context)

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
        self._count(subscription, context)

    def _count(self, subscription: str, context: HandlerContext) -> None:
        spent_by_model = usage_if_any(context)
        if spent_by_model is None:
            return
        for model, spent in spent_by_model.by_model.items():
            if spent.prompt_tokens:
                self.llm_tokens.labels(subscription, model, "prompt").inc(spent.prompt_tokens)
            if spent.completion_tokens:
                self.llm_tokens.labels(subscription, model, "completion").inc(
                    spent.completion_tokens
                )
            price = self.prices.get(model)
            if price is not None:
                dollars = price.cost(spent.prompt_tokens, spent.completion_tokens)
                if dollars:
                    self.llm_cost.labels(subscription, model).inc(dollars)


class _LimitsCollector(Collector):
    """The model limits' figures of this process, read at scrape time."""

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        waited = CounterMetricFamily(
            "nerve_llm_limited_seconds",
            "Seconds model calls waited for the model's limits and pauses.",
            labels=["model"],
        )
        for model, seconds in sorted(limited_seconds().items()):
            waited.add_metric([model], seconds)
        ahead = GaugeMetricFamily(
            "nerve_llm_limit_ahead_seconds",
            "How far ahead the model's rate was reserved at its last call (0: room left).",
            labels=["model", "limit"],
        )
        for (model, limit), seconds in sorted(reserved_ahead().items()):
            ahead.add_metric([model, limit], seconds)
        yield waited
        yield ahead
