"""Configuration from the environment (``NERVE_*``), overridable in code."""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from types import MappingProxyType
from typing import Any

from pydantic import Field
from pydantic_settings import (
    BaseSettings,
    InitSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

#: What :class:`Settings` takes in place of the environment's ``NERVE_*`` values, inside
#: :func:`environment_override`.
_OVERRIDES: ContextVar[Mapping[str, Any]] = ContextVar(
    "nerve_settings_overrides", default=MappingProxyType({})
)


@contextmanager
def environment_override(**values: Any) -> Iterator[None]:
    """Inside the block, :class:`Settings` takes ``values`` in place of the environment's.

    Values given in code (``Settings(url=...)``, ``EventBus("redis://...")``) still win, as
    they win over ``NERVE_*`` variables. This is how ``nerve serve --url`` and ``--app`` with
    ``--url`` reach the ``EventBus()`` an app makes as it is imported, without writing
    ``os.environ``.

    Example:
        ```python
        with environment_override(url="sqlite:///nerve.db"):
            bus = load_bus("app:bus")  # app.py: bus = EventBus()
        ```
    """
    token = _OVERRIDES.set(MappingProxyType({**_OVERRIDES.get(), **values}))
    try:
        yield
    finally:
        _OVERRIDES.reset(token)


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
    state_dir: Path | None = Field(
        default=None,
        description="Where a transport with no store of its own (amqp://, kafka://) keeps "
        "nerve's state by default: a SQLite file per prefix, shared by the processes of "
        "one host (default: $XDG_STATE_HOME/nerve, else ~/.local/state/nerve).",
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
    loop_watchdog: float = Field(
        default=0.1,
        ge=0,
        description="Seconds a handler may hold the event loop before the watchdog logs it "
        "(and counts it in nerve_loop_blocked_seconds); 0 turns the watchdog off.",
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
    wait_timeout: float = Field(
        default=7 * 24 * 3600.0,
        gt=0,
        description="Timeout of a wait_for given none, in seconds (NERVE_WAIT_TIMEOUT).",
    )
    max_wait_timeout: float = Field(
        default=90 * 24 * 3600.0,
        gt=0,
        description="Longest timeout a wait_for may ask for, in seconds (NERVE_MAX_WAIT_TIMEOUT).",
    )
    timer_poll: float = Field(
        default=0.25,
        gt=0,
        description="Seconds between a running bus's looks for due timers: delayed events, "
        "schedules, waits' timeouts (NERVE_TIMER_POLL).",
    )
    history_retention: float = Field(
        default=7 * 24 * 3600.0,
        gt=0,
        description="Seconds the event log keeps events and outcomes (default 7 days).",
    )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Arguments, then :func:`environment_override`'s values, then the environment."""
        overrides = InitSettingsSource(settings_cls, init_kwargs=dict(_OVERRIDES.get()))
        return init_settings, overrides, env_settings, dotenv_settings, file_secret_settings

    def state_directory(self) -> Path:
        """:attr:`state_dir`, or its default: ``$XDG_STATE_HOME/nerve``, else
        ``~/.local/state/nerve``."""
        if self.state_dir is not None:
            return self.state_dir
        xdg = os.environ.get("XDG_STATE_HOME")
        return (Path(xdg) if xdg else Path.home() / ".local" / "state") / "nerve"

    def state_store_url(self, prefix: str) -> str:
        """The default store of a transport with none of its own: a SQLite file named for
        the transport's prefix in :meth:`state_directory` (durable, shared on the host)."""
        return f"sqlite:///{self.state_directory() / f'nerve-{prefix}.db'}"
