"""LLM cost per subscription: tokens times the price table, in nerve_llm_cost_dollars_total."""

from __future__ import annotations

import pytest
from openai import AsyncOpenAI
from openai.types.chat import ChatCompletionMessageParam

from nerve import Event, EventBus
from nerve.llm import LLMMetrics, LLMSettings, chat
from nerve.llm.settings import ModelPrice
from nerve.observe.metrics import Metrics
from tests.http.test_admin import metric
from tests.llm.openai_server import OpenAIServer, completion

HELLO: list[ChatCompletionMessageParam] = [{"role": "user", "content": "hello"}]


async def test_cost_is_tokens_times_the_models_price_per_subscription(
    bus: EventBus, server: OpenAIServer, client: AsyncOpenAI
) -> None:
    metrics = Metrics()
    prices = {"gpt-4o-mini": ModelPrice(input=0.15, output=0.60), "big": ModelPrice(input=5)}
    bus.observe(LLMMetrics(metrics.registry, prices=prices))
    server.then(
        completion("a", prompt_tokens=1_000_000, completion_tokens=500_000),
        completion("b", prompt_tokens=2_000, completion_tokens=1_000),
        completion("c", prompt_tokens=10, completion_tokens=10),
    )

    @bus.on("ticket.created", name="triage")
    async def triage(event: Event) -> None:
        await chat(HELLO, client=client)  # 0.15 + 0.30 = 0.45 USD
        await chat(HELLO, client=client, model="big")  # 2,000 x 5 / 1M = 0.01 USD
        await chat(HELLO, client=client, model="unpriced")  # tokens only

    async with bus:
        await bus.publish(Event(event_type="ticket.created"))
        await bus.join(timeout=10)
    text = metrics.render().decode()

    def cost(model: str) -> float:
        return metric(text, "nerve_llm_cost_dollars_total", subscription="triage", model=model)

    assert cost("gpt-4o-mini") == pytest.approx(0.45)
    assert cost("big") == pytest.approx(0.01)
    assert "unpriced" not in [
        line.split('model="')[1].split('"')[0]
        for line in text.splitlines()
        if line.startswith("nerve_llm_cost_dollars_total{")
    ]
    tokens = {"subscription": "triage", "model": "unpriced", "kind": "prompt"}
    assert metric(text, "nerve_llm_tokens_total", **tokens) == 10


def test_prices_come_from_nerve_llm_prices(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NERVE_LLM_PRICES", '{"m": {"input": 1.5, "output": 6}}')
    assert LLMSettings().prices == {"m": ModelPrice(input=1.5, output=6)}
    assert LLMMetrics(Metrics().registry).prices["m"].cost(2_000_000, 1_000_000) == pytest.approx(
        9.0
    )
    monkeypatch.delenv("NERVE_LLM_PRICES")
    assert LLMMetrics(Metrics().registry).prices == {}  # no prices unless given: they change
