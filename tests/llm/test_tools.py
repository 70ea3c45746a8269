"""Tools: an allow-list; a tool the model names that is not on it never runs."""

from __future__ import annotations

import json

import pytest
from openai import AsyncOpenAI

from nerve import ConfigurationError, Reject, ToolNotAllowed
from nerve.llm import Tools, run_agent, untrusted
from tests.llm.openai_server import OpenAIServer, completion, tool_call

ran: list[str] = []


async def order_status(order_id: str, verbose: bool = False) -> dict[str, str]:
    """The shipping status of an order."""
    ran.append(f"order_status {order_id}")
    return {"order_id": order_id, "status": "shipped"}


def refund(order_id: str, amount: float) -> str:
    """Refund an order (not allowed for the triage agent)."""
    ran.append(f"refund {order_id}")
    return "refunded"


@pytest.fixture(autouse=True)
def _forget_runs() -> None:
    ran.clear()


async def test_allowed_tools_run_and_their_results_go_back(
    server: OpenAIServer, client: AsyncOpenAI
) -> None:
    tools = Tools(order_status)
    server.then(completion(tool_calls=[tool_call("order_status", {"order_id": "A1"})]))
    server.then(completion("Your order shipped."))
    final = await run_agent(
        untrusted("Answer the ticket.", {"body": "where is A1?"}), tools=tools, client=client
    )
    assert final.choices[0].message.content == "Your order shipped."
    assert ran == ["order_status A1"]
    first, second = server.chat_requests
    (definition,) = first.body["tools"]
    assert definition["function"]["name"] == "order_status"
    assert definition["function"]["description"] == "The shipping status of an order."
    assert definition["function"]["parameters"]["required"] == ["order_id", "verbose"]
    tool_message = second.body["messages"][-1]
    assert tool_message["role"] == "tool"
    assert tool_message["tool_call_id"] == "call_1"
    assert json.loads(tool_message["content"]) == {"order_id": "A1", "status": "shipped"}
    assert second.body["messages"][-2]["tool_calls"][0]["function"]["name"] == "order_status"


async def test_a_tool_off_the_list_is_refused_and_never_runs(
    server: OpenAIServer, client: AsyncOpenAI
) -> None:
    tools = Tools(order_status)
    server.then(completion(tool_calls=[tool_call("refund", {"order_id": "A1", "amount": 5})]))
    with pytest.raises(ToolNotAllowed, match="'refund', not on the allow-list") as caught:
        await run_agent([{"role": "user", "content": "refund me"}], tools=tools, client=client)
    assert isinstance(caught.value, Reject)
    assert ran == []
    assert [d["function"]["name"] for d in server.chat_requests[0].body["tools"]] == [
        "order_status"
    ]


async def test_invalid_arguments_go_back_to_the_model(
    server: OpenAIServer, client: AsyncOpenAI
) -> None:
    tools = Tools(order_status, refund)
    server.then(completion(tool_calls=[tool_call("refund", {"order_id": "A1"})]))
    server.then(completion("I need the amount."))
    await run_agent([{"role": "user", "content": "refund"}], tools=tools, client=client)
    assert ran == []
    answer = server.chat_requests[1].body["messages"][-1]["content"]
    assert answer.startswith("error: invalid arguments for refund")
    assert "amount" in answer


def test_two_tools_of_one_name_are_refused() -> None:
    with pytest.raises(ConfigurationError, match="two tools"):
        Tools(order_status, order_status)
