"""Configuration from the environment (``NERVE_*``), overridable in code."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """nerve's settings. Every field reads ``NERVE_<FIELD>`` from the environment.

    Example:
        ```python
        bus = EventBus(settings=Settings(url="memory://", chain_limit=8))
        ```
    """

    model_config = SettingsConfigDict(env_prefix="NERVE_", extra="ignore")

    url: str = Field(default="memory://", description="Transport URL (NERVE_URL).")
    store_url: str | None = Field(
        default=None,
        description="Store URL; by default the transport's own kind (memory for memory://).",
    )
    max_pending: int = Field(
        default=1_000,
        ge=1,
        description="Deliveries waiting for workers (in-process bus) before publish waits.",
    )
    publish_timeout: float | None = Field(
        default=None, gt=0, description="Seconds publish waits for room before BusFull; None waits."
    )
    shutdown_grace: float = Field(
        default=30.0, ge=0, description="Seconds in-flight handlers get at stop."
    )
    chain_limit: int = Field(
        default=16, ge=1, description="Deepest causal chain a handler may extend."
    )
    idempotency_window: float = Field(
        default=24 * 3600.0, gt=0, description="Seconds done marks are kept."
    )
    retries: int = Field(default=3, ge=0, description="Default retries after the first attempt.")
    timeout: float | None = Field(
        default=None, gt=0, description="Default handler timeout in seconds."
    )
    concurrency: int = Field(
        default=64, ge=1, description="Default handlers in flight per subscription."
    )
    history: bool | None = Field(
        default=None,
        description="Record published events and handler outcomes in the store's event log "
        "(NERVE_HISTORY); by default on for durable transports, off for memory://.",
    )
    history_retention: float = Field(
        default=7 * 24 * 3600.0,
        gt=0,
        description="Seconds the event log keeps events and outcomes (default 7 days).",
    )
