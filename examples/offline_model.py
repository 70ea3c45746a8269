"""A deterministic stand-in for a chat model, for the examples' agents when no endpoint is set.

An agent's loop asks its model for the next move: call some tools, or answer. Offline
there is no chat model to ask (the embedded model only embeds), so each example writes
its *tool policy*: a plain function that reads the conversation so far (the request, and
the result of every tool called) and returns the next move, the way a model would. This
module wraps such a policy as an OpenAI-compatible client whose completions carry the
policy's tool calls. The agent loop cannot tell it from an endpoint: the same tools run,
each model call and tool call is the same durable step, approvals wait the same way.
Only the judgement differs: rules and the embedded classifier instead of a model's.

Example:
    ```python
    def policy(conversation: Conversation) -> Move:
        if "lookup_order" not in conversation.results:
            return call("lookup_order", order_id=conversation.data["order_id"])
        return answer({"reply": "done"})

    agent = Agent(..., client=offline_client(policy))
    ```
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import pydantic_core
from openai.types.chat import ChatCompletion

#: The "model" the completions name; shown in traces and usage.
MODEL = "offline-policy"
_DATA = "<<<DATA "


@dataclass(frozen=True)
class Move:
    """The policy's answer for one turn: tool calls (each a name and its arguments), or
    the final answer (text, or a JSON object for a structured output)."""

    calls: tuple[tuple[str, dict[str, Any]], ...] = ()
    final: str | None = None


def call(name: str, **arguments: Any) -> Move:
    """A move calling one tool."""
    return Move(calls=((name, arguments),))


def answer(output: str | Mapping[str, Any]) -> Move:
    """A move ending the run with ``output`` (a mapping is sent as JSON)."""
    text = output if isinstance(output, str) else json.dumps(dict(output))
    return Move(final=text)


@dataclass
class Conversation:
    """What a policy reads: the data block of the first user message (the request, as
    :func:`nerve.llm.untrusted` delimits it), and each tool's latest result by name."""

    data: Any
    results: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def of(cls, messages: Iterable[Mapping[str, Any]]) -> Conversation:
        history = list(messages)
        names: dict[str, str] = {}  # tool call id -> tool name
        found = cls(data=None)
        for message in history:
            role, content = message.get("role"), message.get("content")
            if role == "user" and found.data is None and isinstance(content, str):
                found.data = _data_block(content)
            for tool_call in message.get("tool_calls") or ():
                names[tool_call["id"]] = tool_call["function"]["name"]
            if role == "tool" and isinstance(content, str):
                name = names.get(str(message.get("tool_call_id")), "?")
                found.results[name] = _parsed(content)
        return found


Policy = Callable[[Conversation], Move]


def _data_block(content: str) -> Any:
    """The JSON between the delimiters, or the whole text when there are none."""
    if _DATA not in content:
        return content
    body = content.split("\n", 1)[1].rsplit("\n", 1)[0]
    return _parsed(body)


def _parsed(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text  # a tool's text answer (a rejection, an error)


class _Completions:
    def __init__(self, policy: Policy) -> None:
        self._policy = policy
        self.calls = 0

    async def create(
        self, *, messages: Iterable[Mapping[str, Any]], **_options: Any
    ) -> ChatCompletion:
        """The policy's next move as a chat completion (no tokens: it costs nothing)."""
        self.calls += 1
        move = self._policy(Conversation.of(messages))
        message: dict[str, Any] = {"role": "assistant", "content": move.final}
        if move.calls:
            message["tool_calls"] = [
                {
                    "id": f"call_{self.calls}_{i}",
                    "type": "function",
                    "function": {"name": name, "arguments": pydantic_core.to_json(args).decode()},
                }
                for i, (name, args) in enumerate(move.calls)
            ]
        return ChatCompletion.model_validate(
            {
                "id": f"offline-{self.calls}",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": MODEL,
                "choices": [
                    {
                        "index": 0,
                        "message": message,
                        "finish_reason": "tool_calls" if move.calls else "stop",
                    }
                ],
                "usage": {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0},
            }
        )


class _Chat:
    def __init__(self, policy: Policy) -> None:
        self.completions = _Completions(policy)


class _URL(str):
    """The endpoint's address as the calls read it (``str()`` and ``.host``), without
    importing the openai SDK's HTTP client (``httpx`` or ``httpx2``, by SDK version)."""

    host = "offline-policy.invalid"

    def __new__(cls) -> _URL:
        return super().__new__(cls, "http://offline-policy.invalid/v1")


class OfflineClient:
    """The part of ``AsyncOpenAI`` an agent's model calls use, answered by a policy."""

    base_url = _URL()

    def __init__(self, policy: Policy) -> None:
        self.chat = _Chat(policy)

    async def close(self) -> None:
        """Nothing to close (the client protocol has it)."""


def offline_client(policy: Policy) -> Any:
    """``policy`` as the client of an agent's model calls (typed ``Any``: it stands in
    for an ``AsyncOpenAI``, which it implements only as far as chat completions go)."""
    return OfflineClient(policy)
