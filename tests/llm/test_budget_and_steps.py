"""Budgets stop a handler across retries; recorded steps are not paid for twice, not even
by a replay from the dead letter queue. On the memory and SQLite buses."""

from __future__ import annotations

import json

from openai import AsyncOpenAI
from openai.types.chat import ChatCompletionMessageParam
from pydantic import BaseModel

from nerve import Backoff, Event, EventBus, step
from nerve.llm import Budget, LLMSettings, agent_output, chat
from tests.llm.openai_server import OpenAIServer, Reply, completion

FAST = Backoff(initial=0.01, maximum=0.05)
HELLO: list[ChatCompletionMessageParam] = [{"role": "user", "content": "hello"}]


class Label(BaseModel):
    category: str


async def dead_error(bus: EventBus, event_id: str) -> str:
    entry = await bus.dlq.get(event_id)
    assert entry is not None, "not dead-lettered"
    last = entry.last_error
    assert last is not None
    return f"{last.type}: {last.message}"


async def test_a_token_budget_holds_across_retries(
    bus: EventBus, server: OpenAIServer, client: AsyncOpenAI
) -> None:
    server.default = completion("hi", prompt_tokens=50, completion_tokens=10)
    attempts: list[int] = []

    @bus.on("ticket.created", name="triage", retries=5, backoff=FAST)
    async def triage(event: Event) -> None:
        attempts.append(1)
        await chat(HELLO, client=client, budget=Budget(tokens=100))
        raise RuntimeError("a failure after paying for the call")

    async with bus:
        event = await bus.publish(Event(event_type="ticket.created"))
        await bus.join(timeout=10)
    # 60 tokens, then 120: the third attempt finds the budget spent before calling.
    assert len(server.chat_requests) == 2
    assert len(attempts) == 3
    error = await dead_error(bus, event.event_id)
    assert error.startswith("nerve.exceptions.BudgetExceeded: triage")
    assert "120 of 100 tokens" in error


async def test_a_time_budget_cuts_a_slow_call(
    bus: EventBus, server: OpenAIServer, client: AsyncOpenAI
) -> None:
    server.then(Reply(completion("late").body, delay=5.0))

    @bus.on("ticket.created", name="triage", retries=3, backoff=FAST)
    async def triage(event: Event) -> None:
        await chat(HELLO, client=client, budget=Budget(seconds=0.2))

    async with bus:
        event = await bus.publish(Event(event_type="ticket.created"))
        await bus.join(timeout=10)
    assert "time budget of 0.2 seconds ran out" in await dead_error(bus, event.event_id)
    assert len(server.chat_requests) == 1


async def test_budget_from_settings(
    bus: EventBus, server: OpenAIServer, client: AsyncOpenAI
) -> None:
    settings = LLMSettings(base_url=server.url, budget_tokens=10)
    server.default = completion("hi", prompt_tokens=8, completion_tokens=8)

    @bus.on("ticket.created", name="triage", retries=0)
    async def triage(event: Event) -> None:
        await chat(HELLO, client=client, settings=settings)
        await chat(HELLO, client=client, settings=settings)

    async with bus:
        event = await bus.publish(Event(event_type="ticket.created"))
        await bus.join(timeout=10)
    assert "16 of 10 tokens" in await dead_error(bus, event.event_id)
    assert len(server.chat_requests) == 1


async def test_a_replayed_event_does_not_pay_again_for_a_recorded_step(
    bus: EventBus, server: OpenAIServer, client: AsyncOpenAI
) -> None:
    server.default = completion(json.dumps({"category": "billing"}))
    broken = [True]
    results: list[Label] = []

    @bus.on("ticket.created", name="triage", retries=2, backoff=FAST)
    async def triage(event: Event) -> None:
        label = await step(
            "classify", lambda: agent_output(Label, HELLO, client=client), result_type=Label
        )
        counts = await step("count", _count_words)
        assert counts == {"words": 2}
        if broken[0]:
            raise RuntimeError("publishing the answer failed")
        results.append(label)

    async with bus:
        event = await bus.publish(Event(event_type="ticket.created"))
        await bus.join(timeout=10)
        assert len(server.chat_requests) == 1  # three attempts, one model call
        assert await bus.dlq.get(event.event_id) is not None
        broken[0] = False
        assert len(await bus.dlq.replay(event.event_id)) == 1
        await bus.join(timeout=10)
    assert results == [Label(category="billing")]
    assert len(server.chat_requests) == 1  # the replay found the recorded step
    assert await bus.dlq.get(event.event_id) is None


async def _count_words() -> dict[str, int]:
    return {"words": 2}


async def test_a_step_outside_a_handler_just_runs() -> None:
    assert await step("count", _count_words) == {"words": 2}
