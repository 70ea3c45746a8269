"""LLM tokens spent by handlers reach the Prometheus metrics, per subscription and model."""

from __future__ import annotations

from openai import AsyncOpenAI
from openai.types.chat import ChatCompletionMessageParam

from nerve import Event, EventBus
from nerve.llm import LLMMetrics, chat
from nerve.observe.metrics import Metrics
from tests.http.test_admin import metric
from tests.llm.openai_server import OpenAIServer, completion

HELLO: list[ChatCompletionMessageParam] = [{"role": "user", "content": "hello"}]


async def test_tokens_are_counted_per_subscription_and_model(
    bus: EventBus, server: OpenAIServer, client: AsyncOpenAI
) -> None:
    metrics = Metrics()
    bus.observe(LLMMetrics(metrics.registry))
    server.then(
        completion("a", prompt_tokens=100, completion_tokens=20),
        completion("b", prompt_tokens=7, completion_tokens=3, model="other"),
        completion("c", prompt_tokens=50, completion_tokens=5),
    )

    @bus.on("ticket.created", name="triage")
    async def triage(event: Event) -> None:
        await chat(HELLO, client=client)
        await chat(HELLO, client=client, model="other")

    @bus.on("ticket.created", name="summary")
    async def summary(event: Event) -> None:
        await chat(HELLO, client=client)

    async with bus:
        await bus.publish(Event(event_type="ticket.created"))
        await bus.join(timeout=10)
    text = metrics.render().decode()
    spent = {
        (sub, model, kind): metric(
            text, "nerve_llm_tokens_total", subscription=sub, model=model, kind=kind
        )
        for sub in ("triage", "summary")
        for model in ("gpt-4o-mini", "other")
        for kind in ("prompt", "completion")
    }
    # Which handler got which scripted answer depends on who asked first; the sums do not.
    assert sum(v for (s, m, k), v in spent.items() if k == "prompt") == 157
    assert sum(v for (s, m, k), v in spent.items() if k == "completion") == 28
    assert spent[("triage", "other", "prompt")] + spent[("triage", "other", "completion")] > 0
    assert spent[("summary", "other", "prompt")] == 0
