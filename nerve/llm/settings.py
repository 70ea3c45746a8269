"""The LLM layer's settings: which OpenAI-compatible endpoint, which models, what limits."""

from __future__ import annotations

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from nerve.llm.limits import LLMLimits


class ModelPrice(BaseModel):
    """What a model's tokens cost, in US dollars per million tokens.

    Example:
        ```python
        ModelPrice(input=0.15, output=0.60).cost(2_000, 500)  # 0.0006
        ```
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    input: float = Field(ge=0, description="USD per million prompt (input) tokens.")
    output: float = Field(default=0.0, ge=0, description="USD per million completion tokens.")

    def cost(self, prompt_tokens: int, completion_tokens: int) -> float:
        """Dollars for one workload of tokens."""
        return (prompt_tokens * self.input + completion_tokens * self.output) / 1_000_000


class LLMSettings(BaseSettings):
    """Where nerve's agents send model calls. Read from the environment, overridable in code.

    With neither ``base_url`` nor ``api_key`` set no endpoint is configured, and nerve uses
    its embedded local model (see ``docs/llm.md``). Fields without an alias read
    ``NERVE_LLM_<FIELD>`` (``NERVE_LLM_TIMEOUT``, ``NERVE_LLM_BUDGET_TOKENS``, ...).

    Example:
        ```python
        settings = LLMSettings(base_url="http://127.0.0.1:11434/v1", model="qwen2.5:3b")
        client = openai_client(settings)
        ```
    """

    model_config = SettingsConfigDict(
        env_prefix="NERVE_LLM_", extra="ignore", validate_by_name=True, validate_by_alias=True
    )

    base_url: str | None = Field(
        default=None,
        validation_alias=AliasChoices("NERVE_LLM_BASE_URL", "OPENAI_BASE_URL"),
        description="OpenAI-compatible endpoint, e.g. http://127.0.0.1:8000/v1.",
    )
    api_key: SecretStr | None = Field(
        default=None,
        validation_alias=AliasChoices("NERVE_LLM_API_KEY", "OPENAI_API_KEY"),
        description="API key of the endpoint; never logged (a SecretStr).",
    )
    model: str = Field(default="gpt-4o-mini", description="Chat model name.")
    embedding_model: str = Field(
        default="text-embedding-3-small", description="Embedding model name."
    )
    timeout: float = Field(default=60.0, gt=0, description="Seconds per HTTP request.")
    max_retries: int = Field(
        default=3,
        ge=0,
        description="Retries of one call on connection errors, 408, 409, 429 and 5xx "
        "(honouring Retry-After), made by the openai SDK.",
    )
    budget_tokens: int | None = Field(
        default=None,
        ge=1,
        description="Default token budget per event and subscription, across retries; "
        "None is no limit.",
    )
    budget_seconds: float | None = Field(
        default=None,
        gt=0,
        description="Default budget of seconds spent waiting on the model per event and "
        "subscription, across retries; None is no limit.",
    )

    prices: dict[str, ModelPrice] = Field(
        default_factory=dict,
        description="Prices by model name (exact match), for the nerve_llm_cost_dollars_total "
        'metric; NERVE_LLM_PRICES=\'{"gpt-4o-mini": {"input": 0.15, "output": 0.6}}\' (USD '
        "per million tokens). Empty by default: prices change, so set your own.",
    )

    limits: list[LLMLimits] = Field(
        default_factory=list,
        description="Limits per model shared by every process on the store (requests and "
        "tokens per minute, pauses on Retry-After, a circuit); "
        'NERVE_LLM_LIMITS=\'[{"model": "gpt-4o-mini", "tokens_per_minute": 200000}]\'. '
        "See nerve.llm.limits.",
    )

    def limits_of(self, model: str) -> LLMLimits | None:
        """The limits of ``model``, or None when it has none."""
        return next((limits for limits in self.limits if limits.model == model), None)

    @property
    def configured(self) -> bool:
        """Whether an endpoint is set (a base URL or an API key)."""
        return self.base_url is not None or self.api_key is not None
