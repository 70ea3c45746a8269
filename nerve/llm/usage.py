"""The model calls of one handler attempt: tokens and calls, in total and per model."""

from __future__ import annotations

from dataclasses import dataclass, field

from nerve.context import HandlerContext, current

__all__ = ["LLMUsage", "usage"]

#: Where an attempt's usage is kept in :attr:`HandlerContext.extensions`.
_KEY = "nerve.llm.usage"


@dataclass(slots=True)
class LLMUsage:
    """Model tokens and calls of one attempt of a handler, in total and per model.

    ``nerve.llm`` adds to it after every model call made inside a handler.
    """

    prompt_tokens: int = 0
    completion_tokens: int = 0
    calls: int = 0
    by_model: dict[str, LLMUsage] = field(default_factory=dict)

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def add(self, model: str, prompt_tokens: int, completion_tokens: int) -> None:
        """Count one call to ``model``."""
        self.prompt_tokens += prompt_tokens
        self.completion_tokens += completion_tokens
        self.calls += 1
        per_model = self.by_model.get(model)
        if per_model is None:
            per_model = self.by_model[model] = LLMUsage()
        per_model.prompt_tokens += prompt_tokens
        per_model.completion_tokens += completion_tokens
        per_model.calls += 1


def usage(context: HandlerContext | None = None) -> LLMUsage:
    """The model usage of a handler attempt: the running handler's by default.

    ``nerve.llm`` adds every model call made inside a handler to it; observers read it
    from the context they are given (``nerve.llm.LLMMetrics`` does). Outside a handler
    it is a fresh, empty one.
    """
    context = context or current()
    if context is None:
        return LLMUsage()
    found: LLMUsage | None = context.extensions.get(_KEY)
    if found is None:
        found = context.extensions[_KEY] = LLMUsage()
    return found


def usage_if_any(context: HandlerContext) -> LLMUsage | None:
    """The attempt's usage if it made a model call, else None (nothing allocated)."""
    found: LLMUsage | None = context.extensions.get(_KEY)
    return found
