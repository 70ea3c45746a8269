"""The tools a model may call: an explicit allow-list, checked before anything runs."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable, Mapping
from typing import Any, cast, get_type_hints

import pydantic_core
from openai.types.chat import (
    ChatCompletion,
    ChatCompletionMessageParam,
    ChatCompletionMessageToolCallUnion,
    ChatCompletionToolParam,
)
from pydantic import BaseModel, ValidationError, create_model

from nerve.exceptions import ConfigurationError, OutputInvalid, ToolNotAllowed
from nerve.llm.calls import chat
from nerve.llm.schema import strict_schema


class Tools:
    """The tools one subscription's agent may call, and nothing else.

    Each tool is a function (sync or async) whose annotated parameters become its JSON
    schema and are validated before it runs; its docstring is its description. A call
    the model makes to any other name raises :class:`~nerve.ToolNotAllowed` (which
    dead-letters the event) and runs nothing; arguments that do not validate go back to
    the model as the tool's answer, for it to correct.

    Example:
        ```python
        async def order_status(order_id: str) -> dict[str, str]:
            \"\"\"The shipping status of an order.\"\"\"
            return {"order_id": order_id, "status": "shipped"}

        SUPPORT_TOOLS = Tools(order_status)

        @bus.on("support.ticket.created")
        async def answer(event: Event) -> None:
            reply = await run_agent(untrusted("Answer the ticket.", event.payload),
                                    tools=SUPPORT_TOOLS)
        ```
    """

    def __init__(self, *functions: Callable[..., Any]) -> None:
        self._tools: dict[str, _Tool] = {}
        for fn in functions:
            tool = _Tool(fn)
            if tool.name in self._tools:
                raise ConfigurationError(f"two tools are named {tool.name!r}")
            self._tools[tool.name] = tool

    @property
    def names(self) -> frozenset[str]:
        """The names on the allow-list."""
        return frozenset(self._tools)

    def definitions(self) -> list[ChatCompletionToolParam]:
        """The ``tools=`` argument of a chat completion: the allowed tools only."""
        return [tool.definition() for tool in self._tools.values()]

    async def run(self, call: ChatCompletionMessageToolCallUnion) -> str:
        """Run one tool call of the model's, if allowed; its result as text for the model.

        Raises:
            ToolNotAllowed: the tool is not on this allow-list (nothing ran).
        """
        name = call.function.name if call.type == "function" else call.custom.name
        tool = self._tools.get(name)
        if tool is None or call.type != "function":
            allowed = ", ".join(sorted(self._tools)) or "none"
            raise ToolNotAllowed(f"the model called {name!r}, not on the allow-list ({allowed})")
        return await tool.run(call.function.arguments)


class _Tool:
    def __init__(self, fn: Callable[..., Any]) -> None:
        self.fn = fn
        self.name: str = fn.__name__
        self.description = inspect.getdoc(fn) or ""
        hints = get_type_hints(fn)
        fields: dict[str, Any] = {}
        for param in inspect.signature(fn).parameters.values():
            if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
                raise ConfigurationError(f"tool {self.name}: *args and **kwargs have no schema")
            default = ... if param.default is param.empty else param.default
            fields[param.name] = (hints.get(param.name, Any), default)
        self.arguments: type[BaseModel] = create_model(f"{self.name}_arguments", **fields)

    def definition(self) -> ChatCompletionToolParam:
        return {
            "type": "function",
            "function": {
                "name": self.name,
                "description": self.description,
                "parameters": strict_schema(self.arguments),
                "strict": True,
            },
        }

    async def run(self, arguments: str) -> str:
        try:
            parsed = self.arguments.model_validate_json(arguments or "{}")
        except ValidationError as exc:
            return f"error: invalid arguments for {self.name}: {exc}"
        result = self.fn(**{name: getattr(parsed, name) for name in type(parsed).model_fields})
        if inspect.isawaitable(result):
            result = await result
        return result if isinstance(result, str) else pydantic_core.to_json(result).decode()


async def run_agent(
    messages: Iterable[ChatCompletionMessageParam],
    *,
    tools: Tools,
    max_rounds: int = 8,
    **options: Any,
) -> ChatCompletion:
    """Call the model with its allowed tools until it answers without calling one.

    Each round runs the tool calls of the model's message (allowed ones only) and sends
    their results back. ``options`` go to :func:`nerve.llm.chat` (``client``, ``settings``,
    ``model``, ``budget``, ``temperature``...). Returns the final completion; its text is
    ``completion.choices[0].message.content``.

    Raises:
        ToolNotAllowed: the model called a tool not in ``tools``.
        OutputInvalid: still calling tools after ``max_rounds`` rounds.
    """
    history: list[ChatCompletionMessageParam] = list(messages)
    definitions = tools.definitions()
    for _ in range(max_rounds):
        response = await chat(history, tools=definitions, **options)
        message = response.choices[0].message
        if not message.tool_calls:
            return response
        history.append(_assistant(message.model_dump(exclude_none=True)))
        for call in message.tool_calls:
            history.append(
                {"role": "tool", "tool_call_id": call.id, "content": await tools.run(call)}
            )
    raise OutputInvalid(f"the model was still calling tools after {max_rounds} rounds")


def _assistant(message: Mapping[str, Any]) -> ChatCompletionMessageParam:
    """The model's message as the request's assistant message (the fields it takes)."""
    kept = {k: v for k, v in message.items() if k in ("role", "content", "tool_calls")}
    return cast("ChatCompletionMessageParam", kept)
