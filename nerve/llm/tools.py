"""The tools a model may call: an explicit allow-list, checked before anything runs."""

from __future__ import annotations

import inspect
import json
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, cast, get_type_hints, overload

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


@dataclass(frozen=True, slots=True)
class Tool:
    """A tool a model may call: its name, description, JSON schema and what runs it.

    Made from a Python function by :func:`tool` (its annotated parameters are the
    schema, validated by pydantic before it runs), or from elsewhere (an MCP server's
    tools: ``nerve.mcp``). ``call`` takes the arguments as a JSON object (already
    validated against ``parameters`` where the maker can) and returns the result: text,
    or anything JSON can carry.

    ``needs_approval``: True, or a predicate on the arguments (refunds above 100): the
    call waits for a person's decision first (see ``nerve.llm.agent``).
    """

    name: str
    description: str
    parameters: dict[str, Any]
    call: Callable[[dict[str, Any]], Awaitable[Any]]
    needs_approval: bool | Callable[[dict[str, Any]], bool] = False
    strict: bool = True

    def definition(self) -> ChatCompletionToolParam:
        """The tool as the ``tools=`` argument of a chat completion lists it."""
        return {
            "type": "function",
            "function": {
                "name": self.name,
                "description": self.description,
                "parameters": self.parameters,
                "strict": self.strict,
            },
        }

    async def run(self, arguments: str) -> str:
        """Run the tool on the model's arguments (JSON text); its result as text for the
        model. Arguments that do not parse come back as an error for the model."""
        try:
            parsed = json.loads(arguments or "{}")
        except ValueError as exc:
            return f"error: the arguments for {self.name} are not JSON: {exc}"
        if not isinstance(parsed, dict):
            return f"error: the arguments for {self.name} must be a JSON object"
        try:
            result = await self.call(parsed)
        except _InvalidArguments as exc:
            return f"error: invalid arguments for {self.name}: {exc}"
        return result if isinstance(result, str) else pydantic_core.to_json(result).decode()

    def approval_needed(self, arguments: dict[str, Any]) -> bool:
        """Whether this call (these arguments) waits for a person's decision."""
        rule = self.needs_approval
        return rule(arguments) if callable(rule) else bool(rule)


class _InvalidArguments(Exception):  # an answer for the model
    """The model's arguments did not validate (told to the model, which may retry)."""


@overload
def tool(fn: Callable[..., Any], /) -> Tool: ...


@overload
def tool(
    *, name: str | None = None, needs_approval: bool | Callable[[dict[str, Any]], bool] = False
) -> Callable[[Callable[..., Any]], Tool]: ...


def tool(
    fn: Callable[..., Any] | None = None,
    /,
    *,
    name: str | None = None,
    needs_approval: bool | Callable[[dict[str, Any]], bool] = False,
) -> Tool | Callable[[Callable[..., Any]], Tool]:
    """Make a :class:`Tool` of a function (sync or async): ``@tool`` or ``@tool(...)``.

    Its annotated parameters are the schema (validated by pydantic before it runs), its
    docstring the description.

    Example:
        ```python
        @tool(needs_approval=lambda args: args["amount"] > 100)
        async def issue_refund(order_id: str, amount: float) -> dict[str, str]:
            \"\"\"Refund an order.\"\"\"
            return {"order_id": order_id, "refunded": str(amount)}
        ```
    """

    def make(function: Callable[..., Any]) -> Tool:
        return _from_function(function, name or function.__name__, needs_approval)

    return make if fn is None else make(fn)


def _from_function(
    fn: Callable[..., Any], name: str, needs_approval: bool | Callable[[dict[str, Any]], bool]
) -> Tool:
    hints = get_type_hints(fn)
    fields: dict[str, Any] = {}
    for param in inspect.signature(fn).parameters.values():
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            raise ConfigurationError(f"tool {name}: *args and **kwargs have no schema")
        default = ... if param.default is param.empty else param.default
        fields[param.name] = (hints.get(param.name, Any), default)
    model: type[BaseModel] = create_model(f"{name}_arguments", **fields)

    async def call(arguments: dict[str, Any]) -> Any:
        try:
            parsed = model.model_validate(arguments)
        except ValidationError as exc:
            raise _InvalidArguments(str(exc)) from exc
        result = fn(**{field: getattr(parsed, field) for field in type(parsed).model_fields})
        if inspect.isawaitable(result):
            result = await result
        return result

    return Tool(
        name=name,
        description=inspect.getdoc(fn) or "",
        parameters=strict_schema(model),
        call=call,
        needs_approval=needs_approval,
    )


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

    def __init__(self, *tools: Callable[..., Any] | Tool) -> None:
        self._tools: dict[str, Tool] = {}
        for item in tools:
            made = item if isinstance(item, Tool) else tool(item)
            if made.name in self._tools:
                raise ConfigurationError(f"two tools are named {made.name!r}")
            self._tools[made.name] = made

    def get(self, name: str) -> Tool | None:
        """The allowed tool of this name, or None."""
        return self._tools.get(name)

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
