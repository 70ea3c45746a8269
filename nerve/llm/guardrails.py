"""Guardrails: checks an agent runs on its input and on its answer, which can block or
rewrite.

A guardrail is a function (sync or async) of the conversation (input guardrails) or of
the answer's text (output guardrails). It raises :class:`~nerve.GuardrailTripped` to
block the run (the event dead-letters with the reason), returns text to rewrite (the
last user message; the answer), or returns None to let it through. A guardrail may call
a model itself: its outcome is a step, so a retried or resumed run does not ask again.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from typing import Any

from nerve.steps import step

__all__ = ["Guardrail", "guard"]

#: ``(messages or answer text) -> None | str``, sync or async.
Guardrail = Callable[[Any], Awaitable[str | None] | str | None]


async def guard(name: str, rail: Guardrail, subject: Any) -> str | None:
    """Run ``rail`` on ``subject`` once per run (a step named ``name``): the rewritten
    text, or None. A raised :class:`~nerve.GuardrailTripped` records nothing."""

    async def check() -> dict[str, str | None]:
        result = rail(subject)
        if inspect.isawaitable(result):
            result = await result
        if result is not None and not isinstance(result, str):
            raise TypeError(f"guardrail {rail!r} returned {type(result).__name__}, not str/None")
        return {"text": result}

    return (await step(name, check))["text"]
