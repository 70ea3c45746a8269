"""nerve's LLM layer: the openai SDK against any OpenAI-compatible endpoint.

``classify`` judges text by embeddings: the embedded all-MiniLM-L6-v2 by default (offline,
``nerve[local]``), the endpoint's embeddings when one is configured. ``chat`` and ``embed``
make one call each, charged to the running handler's event (its budget, its ``usage``),
within the model's ``LLMLimits`` (shared by every process); ``agent_output`` returns a
validated pydantic object; ``Agent`` runs the durable tool-calling loop (``run_agent`` is
its one-call form; see ``nerve.llm.agent``); ``untrusted`` puts event data into messages
as delimited data. Wrap a model call in ``nerve.step`` so a retry or replay does not pay
for it twice. See ``docs/llm.md``.
"""

from __future__ import annotations

from nerve.exceptions import (
    AgentBudgetExceeded,
    AgentStopped,
    BudgetExceeded,
    GuardrailTripped,
    ModelRequestRejected,
    ModelUnavailable,
    OutputInvalid,
    ToolArgumentsInvalid,
    ToolNotAllowed,
    TurnsExceeded,
)
from nerve.llm.agent import Agent, AgentResult, ToolCall, ToolError, run_agent
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
from nerve.llm.guardrails import Guardrail
from nerve.llm.handoffs import handoff
from nerve.llm.limits import LLMLimits
from nerve.llm.metrics import LLMMetrics
from nerve.llm.settings import LLMSettings
from nerve.llm.structured import OutputMode, agent_output
from nerve.llm.tools import Tool, Tools, tool
from nerve.llm.untrusted import untrusted
from nerve.llm.usage import LLMUsage, usage

__all__ = [
    "Agent",
    "AgentBudgetExceeded",
    "AgentResult",
    "AgentStopped",
    "Budget",
    "BudgetExceeded",
    "Classification",
    "Classifier",
    "EmbeddedModel",
    "Embedder",
    "EndpointEmbedder",
    "Guardrail",
    "GuardrailTripped",
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
    "ToolArgumentsInvalid",
    "ToolCall",
    "ToolError",
    "ToolNotAllowed",
    "Tools",
    "TurnsExceeded",
    "agent_output",
    "chat",
    "classify",
    "default_embedder",
    "embed",
    "handoff",
    "load_model",
    "openai_client",
    "run_agent",
    "tool",
    "untrusted",
    "usage",
]
