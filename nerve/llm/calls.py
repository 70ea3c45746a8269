"""One model call: budget checked, usage and spend recorded, vendor errors translated.

Each call is a CLIENT span (``gen_ai.*`` attributes: model, token usage) when an
OpenTelemetry SDK is installed; inside a handler it is a child of the handling span.

Everything in ``nerve.llm`` calls the endpoint through :func:`chat` and :func:`embed`.
Retries of one call (connection errors, 408, 409, 429, 5xx) are the openai SDK's own,
``max_retries`` times, honouring ``Retry-After`` / ``retry-after-ms`` up to two minutes;
past that the error becomes :class:`~nerve.ModelUnavailable`, a :class:`~nerve.Retry`
that retries the event later (after the endpoint's ``Retry-After`` when it gave one).
A model with :class:`~nerve.llm.LLMLimits` in the settings is called within them
(:mod:`nerve.llm.limits`): there nerve retries itself, so a pause is shared.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager
from typing import Any

import openai
from openai import AsyncOpenAI
from openai.types import CreateEmbeddingResponse
from openai.types.chat import ChatCompletion, ChatCompletionMessageParam

from nerve.context import current
from nerve.exceptions import ConfigurationError, ModelRequestRejected, ModelUnavailable
from nerve.llm.budget import Budget, charge, ran_out, seconds_left
from nerve.llm.client import openai_client
from nerve.llm.limits import estimate_tokens, limited
from nerve.llm.settings import LLMSettings
from nerve.llm.usage import usage
from nerve.observe.tracing import model_call, record_usage
from nerve.urls import redact

#: Statuses a later attempt may get past; any other 4xx would be refused again.
_TRANSIENT = frozenset({408, 409, 429})


async def chat(
    messages: Iterable[ChatCompletionMessageParam],
    *,
    client: AsyncOpenAI | None = None,
    settings: LLMSettings | None = None,
    model: str | None = None,
    budget: Budget | None = None,
    **options: Any,
) -> ChatCompletion:
    """One chat completion, charged to the running handler's event.

    Args:
        messages: the conversation (see :func:`nerve.llm.untrusted` for event data).
        client: the endpoint; by default one made from ``settings`` for this call.
        settings: defaults for the model, the budget and the client (read from the
            environment when not given).
        model: the model; ``settings.model`` by default.
        budget: the event's budget; ``settings``' by default.
        **options: passed to ``client.chat.completions.create`` (``temperature``,
            ``response_format``, ``tools``...).

    Raises:
        BudgetExceeded: the event's budget is spent, or ran out during the call.
        ModelUnavailable: the endpoint failed after the SDK's retries (the event retries).
        ModelRequestRejected: the endpoint refused the request (the event dead-letters).
        ConfigurationError: no client given and no endpoint configured.
    """
    settings = settings or LLMSettings()
    model = model or settings.model
    budget = budget or Budget.from_settings(settings)
    messages = list(messages)
    async with _client(client, settings) as endpoint:

        async def once(endpoint: AsyncOpenAI) -> tuple[ChatCompletion, int]:
            with model_call("chat", model, endpoint.base_url.host) as span:
                async with _metered(endpoint, model, budget) as meter:
                    response: ChatCompletion = await endpoint.chat.completions.create(
                        model=model, messages=messages, **options
                    )
                    if response.usage is not None:
                        meter.tokens(response.usage.prompt_tokens, response.usage.completion_tokens)
                record_usage(span, response.model, meter.prompt, meter.completion)
            return response, meter.prompt + meter.completion

        limits = settings.limits_of(model)
        if limits is None:
            return (await once(endpoint))[0]
        most = options.get("max_completion_tokens") or options.get("max_tokens")
        tokens = estimate_tokens(
            messages,
            most if isinstance(most, int) else limits.completion_tokens,
        )
        unretried = endpoint.with_options(max_retries=0)
        return await limited(limits, tokens, lambda: once(unretried), retries=settings.max_retries)


async def embed(
    texts: Sequence[str],
    *,
    client: AsyncOpenAI | None = None,
    settings: LLMSettings | None = None,
    model: str | None = None,
    budget: Budget | None = None,
) -> list[list[float]]:
    """Embeddings of ``texts`` from the endpoint, in order, charged like :func:`chat`."""
    settings = settings or LLMSettings()
    model = model or settings.embedding_model
    budget = budget or Budget.from_settings(settings)
    async with _client(client, settings) as endpoint:

        async def once(endpoint: AsyncOpenAI) -> tuple[CreateEmbeddingResponse, int]:
            with model_call("embeddings", model, endpoint.base_url.host) as span:
                async with _metered(endpoint, model, budget) as meter:
                    response: CreateEmbeddingResponse = await endpoint.embeddings.create(
                        model=model, input=list(texts)
                    )
                    meter.tokens(response.usage.prompt_tokens, 0)
                record_usage(span, response.model, meter.prompt, 0)
            return response, meter.prompt

        limits = settings.limits_of(model)
        if limits is None:
            response = (await once(endpoint))[0]
        else:
            tokens = math.ceil(sum(len(text) for text in texts) / 4)
            unretried = endpoint.with_options(max_retries=0)
            response = await limited(
                limits, tokens, lambda: once(unretried), retries=settings.max_retries
            )
    return [item.embedding for item in sorted(response.data, key=lambda d: d.index)]


@asynccontextmanager
async def _client(client: AsyncOpenAI | None, settings: LLMSettings) -> AsyncIterator[AsyncOpenAI]:
    if client is not None:
        yield client
        return
    made = openai_client(settings)
    if made is None:
        raise ConfigurationError(
            "no model endpoint configured: set NERVE_LLM_BASE_URL (or OPENAI_BASE_URL) to an "
            "OpenAI-compatible server and/or OPENAI_API_KEY; without one, use nerve's "
            "embedded model (docs/llm.md)"
        )
    async with made:
        yield made


class _Meter:
    """The tokens one call reports."""

    def __init__(self) -> None:
        self.prompt = 0
        self.completion = 0

    def tokens(self, prompt: int, completion: int) -> None:
        self.prompt, self.completion = prompt, completion


@asynccontextmanager
async def _metered(endpoint: AsyncOpenAI, model: str, budget: Budget) -> AsyncIterator[_Meter]:
    """Check the budget, bound the call by the time left, then record what it cost."""
    ctx = current()
    left = await seconds_left(ctx, budget)
    meter = _Meter()
    started = time.monotonic()
    try:
        async with asyncio.timeout(left) as scope:
            yield meter
    except TimeoutError as exc:
        if scope.expired():
            await charge(ctx, budget, 0, time.monotonic() - started)
            raise ran_out(ctx, budget) from exc
        raise
    except openai.APIError as exc:
        await charge(ctx, budget, 0, time.monotonic() - started)
        raise _translated(exc, endpoint, model) from exc
    if ctx is not None:
        usage(ctx).add(model, meter.prompt, meter.completion)
    await charge(ctx, budget, meter.prompt + meter.completion, time.monotonic() - started)


def _translated(
    exc: openai.APIError, endpoint: AsyncOpenAI, model: str
) -> ModelUnavailable | ModelRequestRejected:
    """The SDK's error as nerve's: transient ones retry the event, refusals dead-letter it."""
    where = f"{model} at {redact(str(endpoint.base_url))}"
    if isinstance(exc, openai.APIStatusError):
        status = exc.status_code
        if status in _TRANSIENT or status >= 500:
            return ModelUnavailable(f"{where}: {exc.message}", delay=_retry_after(exc.response))
        return ModelRequestRejected(f"{where}: {exc.message}")
    return ModelUnavailable(f"{where}: {type(exc).__name__}: {exc.message}")


def _retry_after(response: Any) -> float | None:
    """The seconds a response's ``Retry-After`` asks for (the SDK waits up to two minutes
    and gives up on longer ones: the event then retries after that long)."""
    value = response.headers.get("retry-after")
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        return None  # absent, or an HTTP date: the subscription's backoff decides
    return seconds if math.isfinite(seconds) and seconds > 0 else None
