"""nerve's LLM layer: the openai SDK against any OpenAI-compatible endpoint.

``classify`` judges text by embeddings: the embedded all-MiniLM-L6-v2 by default (offline,
``nerve[local]``), the endpoint's embeddings when one is configured. ``chat`` and ``embed``
make one call each, charged to the running handler's event (its budget, its ``usage``),
within the model's ``LLMLimits`` (shared by every process);
``agent_output`` returns a validated pydantic object; ``run_agent``
lets the model call the tools on an allow-list; ``untrusted`` puts event data into
messages as delimited data. Wrap a model call in ``nerve.step`` so a retry or replay does
not pay for it twice. See ``docs/llm.md``.
"""

from __future__ import annotations

from nerve.exceptions import (
    BudgetExceeded,
    ModelRequestRejected,
    ModelUnavailable,
    OutputInvalid,
    ToolNotAllowed,
)
from nerve.llm.budget import Budget
from nerve.llm.calls import chat, embed
from nerve.llm.classify import (
    Classification,
    Classifier,
    Embedder,
    EndpointEmbedder,
    LocalEmbedder,
    classify,
    default_embedder,
)
from nerve.llm.client import openai_client
from nerve.llm.embedded import EmbeddedModel, load_model
from nerve.llm.limits import LLMLimits
from nerve.llm.metrics import LLMMetrics
from nerve.llm.settings import LLMSettings
from nerve.llm.structured import OutputMode, agent_output
from nerve.llm.tools import Tool, Tools, run_agent, tool
from nerve.llm.untrusted import untrusted
from nerve.llm.usage import LLMUsage, usage

__all__ = [
    "Budget",
    "BudgetExceeded",
    "Classification",
    "Classifier",
    "EmbeddedModel",
    "Embedder",
    "EndpointEmbedder",
    "LLMLimits",
    "LLMMetrics",
    "LLMSettings",
    "LLMUsage",
    "LocalEmbedder",
    "ModelRequestRejected",
    "ModelUnavailable",
    "OutputInvalid",
    "OutputMode",
    "Tool",
    "ToolNotAllowed",
    "Tools",
    "agent_output",
    "chat",
    "classify",
    "default_embedder",
    "embed",
    "load_model",
    "openai_client",
    "run_agent",
    "tool",
    "untrusted",
    "usage",
]
