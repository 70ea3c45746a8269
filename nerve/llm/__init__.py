"""nerve's LLM layer: the openai SDK against any OpenAI-compatible endpoint."""

from __future__ import annotations

from nerve.llm.client import openai_client
from nerve.llm.settings import LLMSettings

__all__ = ["LLMSettings", "openai_client"]
