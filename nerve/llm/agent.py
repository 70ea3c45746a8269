"""Agents that act: the durable tool-calling loop.

An :class:`Agent` holds what stays the same from run to run: its instructions, the
tools it may call, its limits (turns, budget), its guardrails, the event types it may
hand off to, and the type of its answer. ``await agent.run(prompt)`` runs the loop: call
the model; run the tools it asks for (concurrently when it asks for several); send their
results back; until it answers without calling one.

Why an object and not only a function: an agent is declared once, next to the handler,
and run once per event; the allow-list, the guardrails and the hand-off types are its
security boundary, so they belong to one reviewable value rather than to keyword
arguments repeated at each call site. :func:`run_agent` stays, a thin wrapper for one
loop over a :class:`~nerve.llm.Tools`.

Durable inside a handler: every model call and every tool call is a ``nerve.step``,
named by the agent, its run within the attempt, the turn and the tool call's id. A
retry, a redelivery after a crash, a resume after an approval or a replay from the dead
letter queue runs the handler again from the top: completed model calls come back from
the store (not sent again, not paid again) and completed tool calls are not run again;
the loop goes on where it stopped. Outside a handler the loop simply runs.

- A tool whose ``needs_approval`` holds for the call's arguments waits durably for a
  person (:func:`nerve.approvals.approval`): approved, the tool runs once; rejected or
  timed out, it never runs and the model gets ``rejected by <who>: <comment>``.
- Arguments that fail validation go back to the model as the tool's error, at most
  ``max_invalid_arguments`` times in a run (then :class:`~nerve.ToolArgumentsInvalid`).
  A tool that raises :class:`ToolError` tells the model; any other exception fails the
  attempt (the event retries, completed calls are kept).
- A tool not on the allow-list raises :class:`~nerve.ToolNotAllowed`; running out of
  turns raises :class:`~nerve.TurnsExceeded`, of budget
  :class:`~nerve.AgentBudgetExceeded`: all dead-letter the event with the conversation.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Generic, TypeVar, cast

import pydantic_core
from openai import AsyncOpenAI
from openai.types.chat import (
    ChatCompletion,
    ChatCompletionMessageFunctionToolCall,
    ChatCompletionMessageParam,
)
from pydantic import BaseModel, ValidationError

from nerve.approvals import approval
from nerve.context import current
from nerve.exceptions import (
    AgentBudgetExceeded,
    BudgetExceeded,
    OutputInvalid,
    ToolArgumentsInvalid,
    ToolNotAllowed,
    TurnsExceeded,
)
from nerve.llm.budget import Budget
from nerve.llm.calls import chat
from nerve.llm.guardrails import Guardrail, guard
from nerve.llm.handoffs import handoff_tool
from nerve.llm.schema import strict_schema
from nerve.llm.settings import LLMSettings
from nerve.llm.structured import _json_in, _re_ask, _response_format
from nerve.llm.tools import Tool, Tools, _assistant, _InvalidArguments
from nerve.llm.usage import LLMUsage
from nerve.steps import step

__all__ = ["Agent", "AgentResult", "ToolCall", "ToolError", "run_agent"]

OutputT = TypeVar("OutputT")

#: Per handler attempt (``HandlerContext.extensions``): runs started, by agent name.
_RUNS = "nerve.llm.agent.runs"
#: Per handler attempt: a summary of each agent run (turns, tool calls, usage).
RUNS_KEY = "nerve.llm.agent"


class ToolError(Exception):
    """Raise in a tool to tell the model it failed (its message is the tool's result)."""


@dataclass(frozen=True, slots=True)
class ToolCall:
    """One tool call of a run: what the model asked for and what it got back."""

    turn: int
    call_id: str
    name: str
    arguments: str
    result: str
    status: str  # "ok", "invalid", "error", "rejected"


@dataclass(slots=True)
class AgentResult(Generic[OutputT]):
    """What a run came to: the answer, the conversation, and what it took."""

    output: OutputT | str
    messages: list[ChatCompletionMessageParam]
    turns: int
    usage: LLMUsage
    tool_calls: list[ToolCall]
    completion: ChatCompletion


@dataclass(frozen=True, kw_only=True)
class Agent(Generic[OutputT]):
    """A model with instructions, an allow-list of tools and limits; ``run`` loops.

    Args:
        name: names the agent's steps and approvals (unique among a handler's agents).
        instructions: the system message.
        tools: functions (made tools by :func:`nerve.llm.tool`), :class:`Tool` objects
            (MCP's too), or a :class:`Tools` allow-list.
        model: the model (``settings.model`` by default).
        max_turns: model calls in a run at most.
        budget: the event's token/time budget (``nerve.llm.Budget``).
        output: a pydantic model the final answer must validate as (asked for as JSON
            schema; an invalid answer is re-asked, within ``max_turns``).
        input_guardrails / output_guardrails: ``(messages) -> None | str`` and
            ``(answer text) -> None | str`` functions (sync or async): raise
            :class:`~nerve.GuardrailTripped` to block the run, return text to rewrite
            the last user message / the answer.
        handoffs: event types the model may hand off to, through a ``handoff`` tool.
        max_invalid_arguments: tool calls with invalid arguments a run tolerates.
        approval_timeout: how long a tool call waits for a person's decision.
        client / settings: the endpoint (as for :func:`nerve.llm.chat`).

    Example:
        ```python
        @tool(needs_approval=lambda args: args["amount"] > 100)
        async def issue_refund(order_id: str, amount: float) -> str:
            \"\"\"Refund an order.\"\"\"
            ...

        support = Agent(name="support", instructions="Resolve the ticket.",
                        tools=[order_status, issue_refund], max_turns=6,
                        handoffs=["billing.requested"])

        @bus.on("support.ticket.created")
        async def answer(event: Event) -> None:
            result = await support.run(untrusted("Answer the ticket.", event.payload))
            await bus.publish(Event(event_type="support.answered",
                                    payload={"reply": result.output}))
        ```
    """

    name: str = "agent"
    instructions: str = ""
    tools: Sequence[Callable[..., Any] | Tool] | Tools = ()
    model: str | None = None
    max_turns: int = 10
    budget: Budget | None = None
    output: type[OutputT] | None = None
    input_guardrails: Sequence[Guardrail] = ()
    output_guardrails: Sequence[Guardrail] = ()
    handoffs: Sequence[str] = ()
    max_invalid_arguments: int = 3
    approval_timeout: timedelta | float | None = None
    client: AsyncOpenAI | None = None
    settings: LLMSettings | None = None
    allowed: Tools = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.max_turns < 1:
            raise ValueError(f"max_turns must be at least 1, not {self.max_turns}")
        listed = self.tools if isinstance(self.tools, Tools) else Tools(*self.tools)
        if self.handoffs:
            listed = Tools(*listed, handoff_tool(self.name, list(self.handoffs)))
        object.__setattr__(self, "allowed", listed)

    async def run(
        self, prompt: str | Iterable[ChatCompletionMessageParam], **options: Any
    ) -> AgentResult[OutputT]:
        """Run the loop on ``prompt`` (a user message) or a conversation; its result.

        ``options`` go to :func:`nerve.llm.chat` (``temperature``...).

        Raises:
            TurnsExceeded, AgentBudgetExceeded, ToolArgumentsInvalid: the run stopped
                (the conversation so far is on the error).
            GuardrailTripped: a guardrail blocked the run.
            ToolNotAllowed: the model called a tool off the allow-list.
            ModelUnavailable: the endpoint failed (the event retries).
        """
        return await _Run(self, _prefix(self.name), options).go(prompt)


class _Run(Generic[OutputT]):
    """One run of an agent: its conversation and its tallies."""

    def __init__(self, agent: Agent[OutputT], prefix: str, options: dict[str, Any]) -> None:
        self.agent = agent
        self.prefix = prefix
        self.options = options
        self.history: list[ChatCompletionMessageParam] = []
        self.usage = LLMUsage()
        self.calls: list[ToolCall] = []
        self.invalid = 0

    async def go(self, prompt: str | Iterable[ChatCompletionMessageParam]) -> AgentResult[OutputT]:
        agent = self.agent
        given = [{"role": "user", "content": prompt}] if isinstance(prompt, str) else prompt
        if agent.instructions:
            self.history.append({"role": "system", "content": agent.instructions})
        self.history.extend(cast("Iterable[ChatCompletionMessageParam]", given))
        for index, rail in enumerate(agent.input_guardrails):
            rewritten = await guard(f"{self.prefix}:input:{index}", rail, list(self.history))
            if rewritten is not None:
                _rewrite_last_user(self.history, rewritten)
        for turn in range(1, agent.max_turns + 1):
            response = await self._model(turn)
            message = response.choices[0].message
            self.history.append(_assistant(message.model_dump(exclude_none=True)))
            if message.tool_calls:
                if turn == agent.max_turns:
                    break  # no model call would read the results: run nothing
                await self._tools(turn, message.tool_calls)
                continue
            answer = message.content or ""
            for index, rail in enumerate(agent.output_guardrails):
                rewritten = await guard(f"{self.prefix}:output:{turn}:{index}", rail, answer)
                answer = answer if rewritten is None else rewritten
            if agent.output is None:
                return self._result(answer, turn, response)
            try:
                return self._result(_parse(agent.output, answer), turn, response)
            except (ValidationError, ValueError) as exc:
                self.history.append({"role": "user", "content": _re_ask(exc)})
        raise TurnsExceeded(
            f"agent {agent.name}: no answer after {agent.max_turns} model calls (max_turns)",
            self.history,
        )

    async def _model(self, turn: int) -> ChatCompletion:
        agent = self.agent
        options = dict(self.options)
        definitions = agent.allowed.definitions()
        if definitions:
            options["tools"] = definitions
        if agent.output is not None and issubclass(agent.output, BaseModel):
            options.update(
                _response_format("json_schema", agent.output, strict_schema(agent.output))
            )
        history = list(self.history)

        async def call() -> ChatCompletion:
            return await chat(
                history,
                client=agent.client,
                settings=agent.settings,
                model=agent.model,
                budget=agent.budget,
                **options,
            )

        try:
            response = await step(f"{self.prefix}:{turn}:model", call, result_type=ChatCompletion)
        except BudgetExceeded as exc:
            raise AgentBudgetExceeded(f"agent {agent.name}: {exc}", self.history) from exc
        if response.usage is not None:
            self.usage.add(
                response.model, response.usage.prompt_tokens, response.usage.completion_tokens
            )
        return response

    async def _tools(self, turn: int, calls: Sequence[Any]) -> None:
        """Run one turn's tool calls: approvals first, in order; then the tools at once."""
        found = [self._allowed(call) for call in calls]  # nothing runs if one is refused
        runs: list[Callable[[], Awaitable[dict[str, str]]]] = []
        for index, (call, tool) in enumerate(zip(calls, found, strict=True)):
            name = f"{self.prefix}:{turn}:tool:{index}:{call.id}"
            refused = await self._approve(name, call, tool)
            runs.append(_invoke(name, tool, call.function.arguments, refused))
        results = await _all(runs)
        for call, tool, result in zip(calls, found, results, strict=True):
            status, content = result["status"], result["content"]
            self.history.append({"role": "tool", "tool_call_id": call.id, "content": content})
            self.calls.append(
                ToolCall(turn, call.id, tool.name, call.function.arguments, content, status)
            )
            if status == "invalid":
                self.invalid += 1
        if self.invalid > self.agent.max_invalid_arguments:
            raise ToolArgumentsInvalid(
                f"agent {self.agent.name}: {self.invalid} tool calls with invalid arguments "
                f"(max_invalid_arguments={self.agent.max_invalid_arguments})",
                self.history,
            )

    def _allowed(self, call: Any) -> Tool:
        name = call.function.name if call.type == "function" else call.custom.name
        found = self.agent.allowed.get(name)
        if found is None or not isinstance(call, ChatCompletionMessageFunctionToolCall):
            allowed = ", ".join(sorted(self.agent.allowed.names)) or "none"
            raise ToolNotAllowed(f"the model called {name!r}, not on the allow-list ({allowed})")
        return found

    async def _approve(self, name: str, call: Any, tool: Tool) -> dict[str, str] | None:
        """None if the call may run; else its result for the model (rejected, timed out)."""
        arguments = _arguments(call.function.arguments)
        if arguments is None or not tool.approval_needed(arguments):
            return None
        decision = await approval(
            name,
            payload={"agent": self.agent.name, "tool": tool.name, "arguments": arguments},
            timeout=self.agent.approval_timeout,
        )
        if decision.approved:
            return None
        if decision.status == "timed_out":
            content = f"not run: no decision on {tool.name} in time (approval timed out)"
        else:
            content = f"rejected by {decision.by or 'unknown'}: {decision.comment or ''}".rstrip()
        return {"status": "rejected", "content": content}

    def _result(
        self, output: OutputT | str, turns: int, response: ChatCompletion
    ) -> AgentResult[OutputT]:
        ctx = current()
        if ctx is not None:
            ctx.extensions.setdefault(RUNS_KEY, []).append(
                {"agent": self.agent.name, "turns": turns, "tool_calls": len(self.calls)}
            )
        return AgentResult(output, self.history, turns, self.usage, self.calls, response)


def _invoke(
    name: str, tool: Tool, arguments: str, refused: dict[str, str] | None
) -> Callable[[], Awaitable[dict[str, str]]]:
    """One tool call as a step (``status`` and ``content``); a refused call runs nothing."""

    async def run() -> dict[str, str]:
        parsed = _arguments(arguments)
        if parsed is None:
            return _invalid(f"the arguments for {tool.name} are not a JSON object")
        try:
            result = await tool.call(parsed)
        except _InvalidArguments as exc:
            return _invalid(f"invalid arguments for {tool.name}: {exc}")
        except ToolError as exc:
            return {"status": "error", "content": f"error: {tool.name} failed: {exc}"}
        text = result if isinstance(result, str) else pydantic_core.to_json(result).decode()
        return {"status": "ok", "content": text}

    async def durable() -> dict[str, str]:
        if refused is not None:
            return refused
        return await step(name, run)

    return durable


def _invalid(message: str) -> dict[str, str]:
    return {"status": "invalid", "content": f"error: {message}"}


def _arguments(text: str) -> dict[str, Any] | None:
    try:
        parsed = json.loads(text or "{}")
    except ValueError:
        return None
    return parsed if isinstance(parsed, dict) else None


async def _all(runs: list[Callable[[], Awaitable[dict[str, str]]]]) -> list[dict[str, str]]:
    """Run ``runs`` concurrently, each to its end (so every tool that finishes has its
    step recorded, and a retry does not run it again); then raise the first failure."""
    if len(runs) == 1:
        return [await runs[0]()]
    results = await asyncio.gather(*(run() for run in runs), return_exceptions=True)
    for result in results:
        if isinstance(result, BaseException):
            raise result
    return cast("list[dict[str, str]]", results)


def _parse(output: type[OutputT], text: str) -> OutputT:
    if issubclass(output, BaseModel):
        return cast("OutputT", output.model_validate_json(_json_in(text)))
    raise TypeError(f"output must be a pydantic model, not {output!r}")


def _rewrite_last_user(history: list[ChatCompletionMessageParam], text: str) -> None:
    for index in range(len(history) - 1, -1, -1):
        if history[index]["role"] == "user":
            history[index] = {"role": "user", "content": text}
            return
    history.append({"role": "user", "content": text})


def _prefix(name: str) -> str:
    """The steps' prefix of this run: ``agent:<name>:<n>``, n-th run of the attempt."""
    ctx = current()
    if ctx is None:
        return f"agent:{name}:1"
    runs: dict[str, int] = ctx.extensions.setdefault(_RUNS, {})
    runs[name] = runs.get(name, 0) + 1
    return f"agent:{name}:{runs[name]}"


async def run_agent(
    messages: Iterable[ChatCompletionMessageParam],
    *,
    tools: Tools,
    max_rounds: int = 8,
    client: AsyncOpenAI | None = None,
    settings: LLMSettings | None = None,
    model: str | None = None,
    budget: Budget | None = None,
    **options: Any,
) -> ChatCompletion:
    """Call the model with its allowed tools until it answers without calling one.

    A thin wrapper of :class:`Agent` (durable inside a handler the same way). ``options``
    go to :func:`nerve.llm.chat` (``temperature``...). Returns the final completion; its
    text is ``completion.choices[0].message.content``.

    Raises:
        ToolNotAllowed: the model called a tool not in ``tools``.
        OutputInvalid: still calling tools after ``max_rounds`` rounds.
    """
    agent: Agent[str] = Agent(
        tools=tools,
        max_turns=max_rounds,
        client=client,
        settings=settings,
        model=model,
        budget=budget,
        max_invalid_arguments=max_rounds,
    )
    try:
        return (await agent.run(messages, **options)).completion
    except TurnsExceeded as exc:
        raise OutputInvalid(f"the model was still calling tools after {max_rounds} rounds") from exc
