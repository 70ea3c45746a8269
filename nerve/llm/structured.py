"""Structured output: the model's answer as a validated pydantic object."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from typing import Any, Literal, TypeVar

from openai import APIStatusError
from openai.types.chat import ChatCompletionMessageParam
from pydantic import BaseModel, ValidationError

from nerve.exceptions import ModelRequestRejected, OutputInvalid
from nerve.llm.calls import chat
from nerve.llm.schema import strict_schema

M = TypeVar("M", bound=BaseModel)

#: How the answer's format is asked for, strictest first; an endpoint that answers 400
#: (or 422) to one is asked the next way.
OutputMode = Literal["json_schema", "json_object", "text"]
_MODES: tuple[OutputMode, ...] = ("json_schema", "json_object", "text")
_UNSUPPORTED = frozenset({400, 422})

_FENCED = re.compile(r"```(?:json)?\s*(.*?)```", re.DOTALL)


async def agent_output(
    model_type: type[M],
    messages: Iterable[ChatCompletionMessageParam],
    *,
    max_attempts: int = 3,
    mode: OutputMode = "json_schema",
    **options: Any,
) -> M:
    """Ask the model for an answer that validates as ``model_type``; return it validated.

    The format is asked for as a strict JSON schema (``response_format`` type
    ``json_schema``); an endpoint that refuses that with a 400 is asked for a JSON object,
    then for JSON by instructions alone. The schema is also stated in a system message,
    for servers that ignore ``response_format``. An answer that does not validate is sent
    back with the validation error and asked again, up to ``max_attempts`` answers in all.

    Args:
        model_type: the pydantic model of the answer.
        messages: the conversation (see :func:`nerve.llm.untrusted` for event data).
        max_attempts: answers to get at most, re-asks included.
        mode: the strictest way to ask for the format.
        **options: passed to :func:`nerve.llm.chat` (``client``, ``settings``, ``model``,
            ``budget``, ``temperature``...).

    Raises:
        OutputInvalid: no valid answer in ``max_attempts`` (the event dead-letters).
        BudgetExceeded, ModelUnavailable, ModelRequestRejected, ConfigurationError: as
            :func:`nerve.llm.chat`.

    Example:
        ```python
        class Triage(BaseModel):
            category: Literal["billing", "bug", "outage"]
            reply: str

        triage = await agent_output(Triage, untrusted("Triage this ticket.", event.payload))
        ```
    """
    if max_attempts < 1:
        raise ValueError(f"max_attempts must be at least 1, not {max_attempts}")
    schema = strict_schema(model_type)
    history = [_schema_message(model_type.__name__, schema), *messages]
    modes = list(_MODES[_MODES.index(mode) :])
    errors: list[str] = []
    while len(errors) < max_attempts:
        try:
            response = await chat(
                history, **_response_format(modes[0], model_type, schema), **options
            )
        except ModelRequestRejected as exc:
            if len(modes) > 1 and _format_refused(exc):
                modes.pop(0)
                continue
            raise
        message = response.choices[0].message
        text = message.content or ""
        try:
            if message.refusal:
                raise ValueError(f"the model refused: {message.refusal}")
            return model_type.model_validate_json(_json_in(text))
        except (ValidationError, ValueError) as exc:
            errors.append(str(exc))
            history.append({"role": "assistant", "content": text})
            history.append({"role": "user", "content": _re_ask(exc)})
    raise OutputInvalid(
        f"no valid {model_type.__name__} from the model in {max_attempts} attempt(s); "
        f"last error: {errors[-1]}",
        errors,
    )


def _schema_message(name: str, schema: dict[str, Any]) -> ChatCompletionMessageParam:
    return {
        "role": "system",
        "content": (
            f"Answer with one JSON object, a {name}, that validates against this JSON "
            f"schema, and nothing else:\n{json.dumps(schema)}"
        ),
    }


def _response_format(
    mode: OutputMode, model_type: type[BaseModel], schema: dict[str, Any]
) -> dict[str, Any]:
    """The request's ``response_format`` option; none at all for instructions alone."""
    if mode == "json_schema":
        name = re.sub(r"[^a-zA-Z0-9_-]", "_", model_type.__name__)[:64]
        strict = {"name": name, "schema": schema, "strict": True}
        return {"response_format": {"type": "json_schema", "json_schema": strict}}
    if mode == "json_object":
        return {"response_format": {"type": "json_object"}}
    return {}


def _format_refused(exc: ModelRequestRejected) -> bool:
    cause = exc.__cause__
    return isinstance(cause, APIStatusError) and cause.status_code in _UNSUPPORTED


def _json_in(text: str) -> str:
    """The JSON object in an answer that may wrap it in a code fence or prose."""
    fenced = _FENCED.search(text)
    if fenced:
        text = fenced.group(1)
    start, end = text.find("{"), text.rfind("}")
    return text[start : end + 1] if 0 <= start < end else text


def _re_ask(exc: Exception) -> str:
    return (
        f"That answer is not valid: {exc}\n"
        "Answer again with only the corrected JSON object, matching the schema."
    )
