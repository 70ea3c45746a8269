"""The HTTP app's settings (``NERVE_*`` environment variables), overridable in code."""

from __future__ import annotations

import json
from typing import Annotated, Any

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

#: One MiB: the default ``max_body_bytes`` (GitHub caps webhook payloads at 25 MB, but
#: an event is not a file upload).
MIB = 1024 * 1024
#: orjson refuses to parse JSON nested deeper than this: ``max_json_depth`` stays within it.
ORJSON_MAX_DEPTH = 1024


def _split(value: Any) -> Any:
    """``"a, b"`` -> ``["a", "b"]``; a list passes through."""
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


Secrets = Annotated[list[SecretStr], NoDecode]


class HTTPSettings(BaseSettings):
    """Keys, webhook secrets and limits of the HTTP app.

    Every secret field takes several values (comma-separated in the environment) so a
    secret can be rotated without downtime: add the new one, move the senders, drop the
    old one. Secrets never appear in reprs, logs or dead letters.

    Example:
        ```python
        app = create_app(bus, HTTPSettings(api_keys=["k1"], github_webhook_secret=["s"]))
        ```
    """

    model_config = SettingsConfigDict(env_prefix="NERVE_", extra="ignore")

    api_keys: Secrets = Field(
        default_factory=list,
        description="Bearer keys for the event endpoints (and admin ones, unless "
        "NERVE_ADMIN_API_KEYS is set). Empty: no key asked (development only).",
    )
    admin_api_keys: Secrets = Field(
        default_factory=list,
        description="Bearer keys for dead letters, replay and the dashboard; an event key "
        "then gets 403 there (an event key still reads an event's status). Empty: the event "
        "keys are admin keys too.",
    )
    github_webhook_secret: Secrets = Field(
        default_factory=list, description="GitHub webhook secret(s) for POST /webhooks/github."
    )
    stripe_webhook_secret: Secrets = Field(
        default_factory=list,
        description="Stripe endpoint signing secret(s) (whsec_...) for POST /webhooks/stripe.",
    )
    webhook_secrets: dict[str, Secrets] = Field(
        default_factory=dict,
        description='Standard Webhooks senders: JSON {"source": "whsec_..." or [...]}, '
        "served at POST /webhooks/{source}.",
    )
    webhook_tolerance: int = Field(
        default=300,
        ge=1,
        description="Seconds a signed webhook timestamp may be off (Stripe, Standard Webhooks).",
    )
    max_body_bytes: int = Field(default=MIB, ge=1, description="Largest request body (413).")
    max_json_depth: int = Field(
        default=32,
        ge=1,
        le=ORJSON_MAX_DEPTH,
        description="Deepest nesting of objects and arrays in a body (422).",
    )
    max_batch: int = Field(default=1000, ge=1, description="Most events in one batch (413).")
    publish_timeout: float = Field(
        default=1.0,
        gt=0,
        description="Seconds a request waits for room on a saturated bus before 503.",
    )
    retry_after: int = Field(
        default=1, ge=1, description="Retry-After seconds sent with 503 (saturated bus)."
    )
    allowed_origins: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Browser origins (scheme://host[:port]) whose pages may call this app "
        "from another site, comma-separated; '*' allows any. A page of this app's own "
        "origin (the dashboard) needs none.",
    )
    body_timeout: float = Field(
        default=30.0,
        gt=0,
        description="Seconds a request's whole body may take to arrive (408 after).",
    )
    # What nerve serve hands its server (uvicorn): create_app itself does not read these.
    max_header_bytes: int = Field(
        default=32 * 1024,
        ge=1024,
        description="nerve serve: largest request line and headers of a request (431).",
    )
    header_timeout: float = Field(
        default=10.0,
        gt=0,
        description="nerve serve: seconds a request's line and headers may take to arrive, "
        "from the connection or the request's first byte (408, then closed).",
    )
    keep_alive_timeout: int = Field(
        default=5,
        ge=1,
        description="nerve serve: seconds an idle connection is kept between requests.",
    )
    max_connections: int = Field(
        default=1024,
        ge=1,
        description="nerve serve: connections (or requests in flight) a worker process "
        "takes at once; past it new requests are answered 503.",
    )

    @field_validator(
        "api_keys",
        "admin_api_keys",
        "github_webhook_secret",
        "stripe_webhook_secret",
        "allowed_origins",
        mode="before",
    )
    @classmethod
    def _comma_separated(cls, value: Any) -> Any:
        return _split(value)

    @field_validator("webhook_secrets", mode="before")
    @classmethod
    def _json_object(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = json.loads(value) if value.strip() else {}
        if isinstance(value, dict):
            return {name: _split(secrets) for name, secrets in value.items()}
        return value
