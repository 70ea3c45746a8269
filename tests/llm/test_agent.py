"""The agent loop against the scripted OpenAI-compatible server, on the memory and SQLite
buses: tool calls single and parallel, malformed arguments, tools that raise, a model that
never stops, 429s; model requests and tool runs counted across retries and replays."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from openai import AsyncOpenAI
from pydantic import BaseModel

from nerve import Backoff, Event, EventBus, Reject
from nerve.approvals import decide, pending_approvals
from nerve.llm import (
    Agent,
    AgentBudgetExceeded,
    Budget,
    GuardrailTripped,
    LLMSettings,
    ToolArgumentsInvalid,
    ToolError,
    ToolNotAllowed,
    TurnsExceeded,
    openai_client,
    tool,
)
from tests.llm.openai_server import (
    OpenAIServer,
    calling,
    completion,
    error,
    raw_tool_call,
    tool_call,
)

FAST = Backoff(initial=0.01, maximum=0.05)
ran: list[str] = []


@pytest.fixture(autouse=True)
def _forget_runs() -> None:
    ran.clear()


async def lookup(order_id: str) -> dict[str, str]:
    """The status of an order."""
    ran.append(f"lookup {order_id}")
    return {"order_id": order_id, "status": "shipped"}


async def dead_error(bus: EventBus, event_id: str) -> str:
    entry = await bus.dlq.get(event_id)
    assert entry is not None, "not dead-lettered"
    last = entry.last_error
    assert last is not None
    return f"{last.type}: {last.message}"


def tool_results(server: OpenAIServer, request: int) -> list[str]:
    messages = server.chat_requests[request].body["messages"]
    return [m["content"] for m in messages if m["role"] == "tool"]


async def test_a_run_outside_a_handler_calls_tools_and_answers(
    server: OpenAIServer, client: AsyncOpenAI
) -> None:
    server.then(calling(tool_call("lookup", {"order_id": "A1"})), completion("It shipped."))
    agent: Agent[str] = Agent(
        name="support", instructions="Be brief.", tools=[lookup], client=client
    )
    result = await agent.run("where is A1?")
    assert result.output == "It shipped."
    assert result.turns == 2
    assert ran == ["lookup A1"]
    assert [(c.name, c.status) for c in result.tool_calls] == [("lookup", "ok")]
    assert result.usage.calls == 2
    assert result.usage.total_tokens == 30
    first = server.chat_requests[0].body["messages"]
    assert first == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "where is A1?"},
    ]
    assert json.loads(tool_results(server, 1)[0]) == {"order_id": "A1", "status": "shipped"}
    assert [m["role"] for m in result.messages] == [
        "system",
        "user",
        "assistant",
        "tool",
        "assistant",
    ]


async def test_parallel_tool_calls_run_concurrently(
    server: OpenAIServer, client: AsyncOpenAI
) -> None:
    started: set[str] = set()
    both = asyncio.Event()

    async def slow(name: str) -> str:
        """Waits for its sibling: only concurrent calls finish."""
        started.add(name)
        if len(started) == 2:
            both.set()
        await asyncio.wait_for(both.wait(), timeout=5)
        return f"done {name}"

    server.then(
        calling(tool_call("slow", {"name": "a"}, "c1"), tool_call("slow", {"name": "b"}, "c2")),
        completion("both done"),
    )
    agent: Agent[str] = Agent(tools=[slow], client=client)
    result = await agent.run("go")
    assert result.output == "both done"
    assert tool_results(server, 1) == ["done a", "done b"]


async def test_malformed_arguments_go_back_to_the_model_then_stop_the_run(
    bus: EventBus, server: OpenAIServer, client: AsyncOpenAI
) -> None:
    server.then(
        calling(raw_tool_call("lookup", "{not json")),
        calling(tool_call("lookup", {"id": "A1"})),  # the wrong field
        calling(tool_call("lookup", {"order_id": "A1"})),
        completion("shipped"),
    )
    agent: Agent[str] = Agent(tools=[lookup], client=client, max_invalid_arguments=1)
    outputs: list[str] = []

    @bus.on("ticket", name="agent", retries=0)
    async def handle(event: Event) -> None:
        outputs.append(str((await agent.run("where is A1?")).output))

    async with bus:
        event = await bus.publish(Event(event_type="ticket"))
        await bus.join(timeout=10)
    assert ran == []
    assert tool_results(server, 1) == ["error: the arguments for lookup are not a JSON object"]
    assert len(server.chat_requests) == 2  # the second invalid call stopped the run
    message = await dead_error(bus, event.event_id)
    assert message.startswith("nerve.exceptions.ToolArgumentsInvalid: agent agent: 2 tool")
    assert "conversation so far" in message
    assert "{not json" in message
    assert outputs == []


async def test_a_tool_failure_retries_without_resending_completed_calls(
    bus: EventBus, server: OpenAIServer, client: AsyncOpenAI
) -> None:
    failures = [2]

    async def flaky(order_id: str) -> str:
        """Fails twice, then works."""
        ran.append(f"flaky {order_id}")
        if failures[0]:
            failures[0] -= 1
            raise RuntimeError("the order service is down")
        return "ok"

    async def told(order_id: str) -> str:
        """Tells the model it failed."""
        ran.append(f"told {order_id}")
        raise ToolError("no such order")

    server.then(
        calling(tool_call("lookup", {"order_id": "A1"})),
        calling(tool_call("told", {"order_id": "A2"})),
        calling(tool_call("flaky", {"order_id": "A3"})),
        completion("done"),
    )
    agent: Agent[str] = Agent(tools=[lookup, flaky, told], client=client)
    outputs: list[Any] = []

    @bus.on("ticket", name="agent", retries=3, backoff=FAST)
    async def handle(event: Event) -> None:
        outputs.append((await agent.run("go")).output)

    async with bus:
        await bus.publish(Event(event_type="ticket"))
        await bus.join(timeout=10)
    assert outputs == ["done"]
    assert len(server.chat_requests) == 4  # three attempts, each model call sent once
    assert ran == ["lookup A1", "told A2", "flaky A3", "flaky A3", "flaky A3"]
    assert tool_results(server, 2)[-1] == "error: told failed: no such order"


async def test_a_dlq_replay_resumes_where_the_run_stopped(
    bus: EventBus, server: OpenAIServer, client: AsyncOpenAI
) -> None:
    broken = [True]

    async def charge(order_id: str) -> str:
        """Charges an order."""
        ran.append(f"charge {order_id}")
        if broken[0]:
            raise RuntimeError("the payment service is down")
        return "charged"

    server.then(
        calling(tool_call("lookup", {"order_id": "A1"}, "c1")),
        calling(
            tool_call("lookup", {"order_id": "A2"}, "c1"),
            tool_call("charge", {"order_id": "A2"}, "c2"),
        ),
        completion("charged"),
    )
    agent: Agent[str] = Agent(tools=[lookup, charge], client=client)

    @bus.on("ticket", name="agent", retries=0)
    async def handle(event: Event) -> None:
        await agent.run("go")

    async with bus:
        event = await bus.publish(Event(event_type="ticket"))
        await bus.join(timeout=10)
        assert "payment service is down" in await dead_error(bus, event.event_id)
        broken[0] = False
        assert len(await bus.dlq.replay(event.event_id)) == 1
        await bus.join(timeout=10)
    assert await bus.dlq.get(event.event_id) is None
    assert len(server.chat_requests) == 3
    assert sorted(ran) == ["charge A2", "charge A2", "lookup A1", "lookup A2"]


async def test_a_model_that_never_stops_dead_letters_with_the_conversation(
    bus: EventBus, server: OpenAIServer, client: AsyncOpenAI
) -> None:
    server.default = calling(tool_call("lookup", {"order_id": "A1"}))
    agent: Agent[str] = Agent(name="looper", tools=[lookup], client=client, max_turns=3)

    @bus.on("ticket", name="agent", retries=2, backoff=FAST)
    async def handle(event: Event) -> None:
        await agent.run("go")

    async with bus:
        event = await bus.publish(Event(event_type="ticket"))
        await bus.join(timeout=10)
    message = await dead_error(bus, event.event_id)
    assert message.startswith("nerve.exceptions.TurnsExceeded: agent looper: no answer after 3")
    assert '"role": "tool"' in message
    assert len(server.chat_requests) == 3  # a Reject: not retried
    assert ran == ["lookup A1", "lookup A1"]  # the last turn's call ran nothing


async def test_a_429_retries_the_event_and_resends_only_the_failed_call(
    bus: EventBus, server: OpenAIServer, settings: LLMSettings
) -> None:
    impatient = openai_client(settings.model_copy(update={"max_retries": 0}))
    assert impatient is not None
    server.then(
        calling(tool_call("lookup", {"order_id": "A1"})),
        error(429, "slow down"),
        completion("shipped"),
    )
    agent: Agent[str] = Agent(tools=[lookup], client=impatient)
    outputs: list[Any] = []

    @bus.on("ticket", name="agent", retries=2, backoff=FAST)
    async def handle(event: Event) -> None:
        outputs.append((await agent.run("go")).output)

    async with impatient, bus:
        await bus.publish(Event(event_type="ticket"))
        await bus.join(timeout=10)
    assert outputs == ["shipped"]
    assert len(server.chat_requests) == 3
    assert ran == ["lookup A1"]


async def test_the_budget_stops_the_run_with_the_conversation(
    bus: EventBus, server: OpenAIServer, client: AsyncOpenAI
) -> None:
    server.default = calling(tool_call("lookup", {"order_id": "A1"}))
    agent: Agent[str] = Agent(tools=[lookup], client=client, budget=Budget(tokens=40))

    @bus.on("ticket", name="agent", retries=0)
    async def handle(event: Event) -> None:
        await agent.run("go")

    async with bus:
        event = await bus.publish(Event(event_type="ticket"))
        await bus.join(timeout=10)
    message = await dead_error(bus, event.event_id)
    assert message.startswith("nerve.exceptions.AgentBudgetExceeded: agent agent:")
    assert "45 of 40 tokens" in message
    assert "lookup" in message
    assert len(server.chat_requests) == 3
    assert issubclass(AgentBudgetExceeded, Reject)


async def test_a_tool_off_the_list_runs_nothing(server: OpenAIServer, client: AsyncOpenAI) -> None:
    server.then(
        calling(tool_call("lookup", {"order_id": "A1"}, "c1"), tool_call("refund", {}, "c2"))
    )
    with pytest.raises(ToolNotAllowed, match="'refund', not on the allow-list"):
        await Agent(tools=[lookup], client=client).run("go")
    assert ran == []


class Answer(BaseModel):
    status: str


async def test_structured_output_is_validated_and_re_asked(
    server: OpenAIServer, client: AsyncOpenAI
) -> None:
    server.then(completion("not json"), completion('```json\n{"status": "shipped"}\n```'))
    result = await Agent(output=Answer, client=client).run("status?")
    assert result.output == Answer(status="shipped")
    assert server.chat_requests[0].body["response_format"]["type"] == "json_schema"
    assert server.chat_requests[1].body["messages"][-1]["content"].startswith("That answer")


async def test_guardrails_rewrite_and_block(server: OpenAIServer, client: AsyncOpenAI) -> None:
    def redact(messages: list[dict[str, Any]]) -> str | None:
        text = messages[-1]["content"]
        return text.replace("4111", "****") if "4111" in text else None

    async def no_refunds(answer: str) -> str | None:
        if "refund" in answer:
            raise GuardrailTripped("the answer promises a refund")
        return answer.upper()

    agent: Agent[str] = Agent(
        input_guardrails=[redact], output_guardrails=[no_refunds], client=client
    )
    server.then(completion("shipped"), completion("a refund is on its way"))
    assert (await agent.run("card 4111")).output == "SHIPPED"
    assert server.chat_requests[0].body["messages"][-1]["content"] == "card ****"
    with pytest.raises(GuardrailTripped, match="promises a refund"):
        await agent.run("refund?")


async def test_a_handoff_publishes_a_caused_event(
    bus: EventBus, server: OpenAIServer, client: AsyncOpenAI
) -> None:
    received: list[Event] = []
    agent: Agent[str] = Agent(name="triage", handoffs=["billing.requested"], client=client)
    server.then(
        calling(tool_call("handoff", {"to": "support.escalated", "message": "x"}, "c1")),
        calling(tool_call("handoff", {"to": "billing.requested", "message": "refund A1"}, "c2")),
        completion("Billing will contact you."),
    )

    @bus.on("ticket", name="triage", retries=0)
    async def triage(event: Event) -> None:
        await agent.run("I want a refund")

    @bus.on("billing.requested", name="billing")
    async def billing(event: Event) -> None:
        received.append(event)

    async with bus:
        ticket = await bus.publish(Event(event_type="ticket"))
        await bus.join(timeout=10)
    assert tool_results(server, 1)[0].startswith("error: invalid arguments for handoff")
    (handed,) = received
    assert handed.payload == {"message": "refund A1", "from_agent": "triage"}
    assert handed.causation_id == ticket.event_id
    assert handed.correlation_id == (ticket.correlation_id or ticket.event_id)
    definitions = server.chat_requests[0].body["tools"]
    assert definitions[0]["function"]["parameters"]["properties"]["to"]["enum"] == [
        "billing.requested"
    ]


@pytest.mark.parametrize("approved", [True, False])
async def test_a_risky_tool_waits_for_a_person(
    bus: EventBus, server: OpenAIServer, client: AsyncOpenAI, approved: bool
) -> None:
    @tool(needs_approval=lambda args: args["amount"] > 100)
    async def refund(order_id: str, amount: float) -> str:
        """Refund an order."""
        ran.append(f"refund {order_id} {amount}")
        return "refunded"

    server.then(
        calling(
            tool_call("refund", {"order_id": "A1", "amount": 20}, "c1"),
            tool_call("refund", {"order_id": "A2", "amount": 500}, "c2"),
        ),
        completion("done"),
    )
    agent: Agent[str] = Agent(tools=[refund], client=client)
    outputs: list[Any] = []

    @bus.on("ticket", name="agent")
    async def handle(event: Event) -> None:
        outputs.append((await agent.run("refund both")).output)

    async with bus:
        await bus.publish(Event(event_type="ticket"))
        for _ in range(200):
            pending = await pending_approvals(bus)
            if pending:
                break
            await asyncio.sleep(0.02)
        (asked,) = pending
        assert asked.payload == {
            "agent": "agent",
            "tool": "refund",
            "arguments": {"order_id": "A2", "amount": 500},
        }
        assert ran == []
        assert len(server.chat_requests) == 1
        await decide(bus, asked.approval_id, approved=approved, by="alice", comment="too much")
        for _ in range(200):
            if outputs:
                break
            await asyncio.sleep(0.02)
    assert outputs == ["done"]
    assert len(server.chat_requests) == 2
    if approved:
        assert ran == ["refund A1 20.0", "refund A2 500.0"]
        assert tool_results(server, 1) == ["refunded", "refunded"]
    else:
        assert ran == ["refund A1 20.0"]
        assert tool_results(server, 1) == ["refunded", "rejected by alice: too much"]


async def test_errors_are_typed() -> None:
    assert issubclass(TurnsExceeded, Reject)
    assert issubclass(ToolArgumentsInvalid, Reject)
    with pytest.raises(ValueError, match="max_turns"):
        Agent(max_turns=0)
