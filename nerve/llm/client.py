"""The ``AsyncOpenAI`` client nerve's agents call, made from :class:`LLMSettings`."""

from __future__ import annotations

from openai import AsyncOpenAI

from nerve.llm.settings import LLMSettings

#: The SDK refuses to start without a key; local servers (vLLM, Ollama) ignore it.
_NO_KEY = "not-needed"


def openai_client(settings: LLMSettings | None = None) -> AsyncOpenAI | None:
    """An ``AsyncOpenAI`` client for the configured endpoint, or None when none is.

    None means no ``NERVE_LLM_BASE_URL`` / ``OPENAI_BASE_URL`` / ``OPENAI_API_KEY`` is set:
    nerve then uses its embedded local model. Nothing is cached: the caller keeps the
    client (one per process is plenty) and closes it with ``await client.close()``.

    Example:
        ```python
        client = openai_client()
        if client is None:
            ...  # offline: the embedded model
        ```
    """
    settings = settings or LLMSettings()
    if not settings.configured:
        return None
    key = settings.api_key.get_secret_value() if settings.api_key is not None else _NO_KEY
    return AsyncOpenAI(
        base_url=settings.base_url,
        api_key=key,
        timeout=settings.timeout,
        max_retries=settings.max_retries,
    )
