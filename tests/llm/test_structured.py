"""agent_output: strict JSON schema, fallbacks for endpoints without it, bounded re-asks."""

from __future__ import annotations

import json
from typing import Literal

import pytest
from openai import AsyncOpenAI
from openai.types.chat import ChatCompletionMessageParam
from pydantic import BaseModel

from nerve import Event, EventBus, OutputInvalid, Reject
from nerve.llm import agent_output
from tests.llm.openai_server import OpenAIServer, completion, error

ASK: list[ChatCompletionMessageParam] = [
    {"role": "user", "content": "Triage: my card was charged twice"}
]


class Triage(BaseModel):
    category: Literal["billing", "bug", "outage"]
    reply: str
    tags: list[str] = []


VALID = json.dumps({"category": "billing", "reply": "Refunded.", "tags": []})


async def test_a_valid_answer_with_a_strict_schema(
    server: OpenAIServer, client: AsyncOpenAI
) -> None:
    server.then(completion(VALID))
    triage = await agent_output(Triage, ASK, client=client)
    assert triage == Triage(category="billing", reply="Refunded.")
    (request,) = server.chat_requests
    fmt = request.body["response_format"]
    assert fmt["type"] == "json_schema"
    assert fmt["json_schema"]["strict"] is True
    schema = fmt["json_schema"]["schema"]
    assert schema["additionalProperties"] is False
    assert schema["required"] == ["category", "reply", "tags"]
    assert "default" not in json.dumps(schema)
    assert request.body["messages"][-1]["content"] == ASK[0]["content"]


async def test_invalid_answers_are_re_asked_with_the_error(
    server: OpenAIServer, client: AsyncOpenAI
) -> None:
    server.then(
        completion("not json at all"),
        completion(json.dumps({"category": "weather", "reply": "?"})),
        completion(f"Sure! ```json\n{VALID}\n```"),
    )
    triage = await agent_output(Triage, ASK, client=client)
    assert triage.category == "billing"
    requests = server.chat_requests
    assert len(requests) == 3
    last = requests[2].body["messages"]
    assert last[-2] == {
        "role": "assistant",
        "content": json.dumps({"category": "weather", "reply": "?"}),
    }
    assert "not valid" in last[-1]["content"]
    assert "category" in last[-1]["content"]  # the validation error, for the model to fix


async def test_invalid_to_the_end_is_output_invalid(
    server: OpenAIServer, client: AsyncOpenAI
) -> None:
    server.default = completion('{"category": "nope"}')
    with pytest.raises(OutputInvalid, match="no valid Triage") as caught:
        await agent_output(Triage, ASK, client=client, max_attempts=2)
    assert len(server.chat_requests) == 2
    assert len(caught.value.errors) == 2
    assert isinstance(caught.value, Reject)  # dead-letters without pointless retries


async def test_endpoints_without_json_schema_get_json_object_then_instructions(
    server: OpenAIServer, client: AsyncOpenAI
) -> None:
    server.then(error(400, "response_format json_schema unsupported"))
    server.then(error(400, "response_format json_object unsupported"))
    server.then(completion(VALID))
    assert (await agent_output(Triage, ASK, client=client)).reply == "Refunded."
    formats = [r.body.get("response_format") for r in server.chat_requests]
    assert [f and f["type"] for f in formats] == ["json_schema", "json_object", None]
    system = server.chat_requests[-1].body["messages"][0]
    assert system["role"] == "system"
    assert '"category"' in system["content"]  # the schema, stated in words too


async def test_output_invalid_dead_letters_the_event(
    bus: EventBus, server: OpenAIServer, client: AsyncOpenAI
) -> None:
    server.default = completion("{}")

    @bus.on("ticket.created", name="triage", retries=3)
    async def triage(event: Event) -> None:
        await agent_output(Triage, ASK, client=client)

    async with bus:
        event = await bus.publish(Event(event_type="ticket.created"))
        await bus.join(timeout=10)
    entry = await bus.dlq.get(event.event_id)
    assert entry is not None
    assert entry.attempts == 1  # no retries: the same question would get the same answer
    assert entry.errors[-1].type == "nerve.exceptions.OutputInvalid"
    assert len(server.chat_requests) == 3
