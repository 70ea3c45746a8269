"""The two HTTP servers of ``bench.http``: the seed article's endpoint, and nerve's app.

Run as ``python -m bench.http_apps '<AppConfig as JSON>'``: builds one app and serves it
with uvicorn on 127.0.0.1 (one worker, ``loop="uvloop"``, ``http="httptools"``, access
log off), the same server settings for both.

- **seed**: the article's FastAPI code ("Integrating with FastAPI"), line for line, on the
  article's toy bus (:mod:`bench.toy_bus`): ``POST /events?event_type=...`` with the
  payload as the body, ``lifespan`` starting ``bus.start_processing()``. The one addition
  is a counter of accepted events (``+= 1`` after the publish).
- **nerve**: ``nerve.http.create_app(bus, HTTPSettings(api_keys=[...]))`` on
  ``memory://`` or ``sqlite:///...``, with validation, auth and metrics on.

Both subscribe the same handler to ``bench.event``: it awaits ``asyncio.sleep(sleep)``
(an LLM call's wait) unless ``sleep`` is 0, then counts the event. ``GET /bench/stats``
answers ``{"accepted", "handled", ...}`` so the driver can check that what was accepted
was handled (nerve's ``accepted`` and ``metrics_handled`` come from its own Prometheus
registry: ``nerve_http_events_accepted_total``, ``nerve_events_handled_total``).
"""

from __future__ import annotations

import asyncio
import json
import sys
import warnings
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, Literal

import uvicorn
from fastapi import FastAPI
from starlette.types import ASGIApp

from bench import toy_bus

System = Literal["seed", "nerve"]
EVENT_TYPE = "bench.event"


@dataclass(frozen=True, slots=True)
class AppConfig:
    """What one server runs.

    ``concurrency``, ``max_pending``, ``publish_timeout`` and ``api_key`` are nerve's only;
    the seed has no such knobs (one unbounded queue, one event at a time).
    """

    system: System
    port: int
    sleep: float = 0.0
    url: str = "memory://"
    concurrency: int | None = None
    max_pending: int = 1_000
    publish_timeout: float = 1.0
    api_key: str = "bench-key"


class Counts:
    """What a server accepted and handled; read by ``GET /bench/stats``."""

    def __init__(self) -> None:
        self.accepted = 0
        self.handled = 0


def _handler(counts: Counts, sleep: float) -> Any:
    if sleep > 0:

        async def handle_slow(event: Any) -> None:
            await asyncio.sleep(sleep)
            counts.handled += 1

        return handle_slow

    async def handle(event: Any) -> None:
        counts.handled += 1

    return handle


def seed_app(config: AppConfig) -> FastAPI:
    """The article's endpoint on the article's toy bus (plus the stats route)."""
    counts = Counts()
    bus = toy_bus.EventBus()
    bus.subscribe(EVENT_TYPE, _handler(counts, config.sleep))

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        task = asyncio.create_task(bus.start_processing())
        yield
        task.cancel()

    app = FastAPI(lifespan=lifespan)

    @app.post("/events")
    async def receive_event(event_type: str, payload: dict[str, Any]) -> dict[str, str]:
        event = toy_bus.Event(event_type=event_type, payload=payload)
        await bus.publish(event)
        counts.accepted += 1
        return {"event_id": event.event_id, "status": "accepted"}

    @app.get("/bench/stats")
    async def stats() -> dict[str, Any]:
        return {
            "accepted": counts.accepted,
            "handled": counts.handled,
            "queued": bus._queue.qsize(),
        }

    return app


def nerve_app(config: AppConfig) -> FastAPI:
    """nerve's app with an API key, on ``config.url`` (plus the stats route)."""
    from nerve import EventBus, Settings
    from nerve.http import HTTPSettings, create_app
    from nerve.observe.metrics import Metrics

    counts = Counts()
    bus = EventBus(
        config.url, settings=Settings(max_pending=config.max_pending, shutdown_grace=5.0)
    )
    bus.subscribe(
        EVENT_TYPE, _handler(counts, config.sleep), name="bench", concurrency=config.concurrency
    )
    metrics = Metrics()
    bus.observe(metrics)
    settings = HTTPSettings(api_keys=[config.api_key], publish_timeout=config.publish_timeout)
    app = create_app(bus, settings, metrics=metrics)
    sample = metrics.registry.get_sample_value

    @app.get("/bench/stats", include_in_schema=False)
    async def stats() -> dict[str, Any]:
        accepted = sum(
            sample("nerve_http_events_accepted_total", {"source": source}) or 0.0
            for source in ("events", "batch")
        )
        return {
            "accepted": int(accepted),
            "handled": counts.handled,
            "metrics_handled": int(
                sample(
                    "nerve_events_handled_total",
                    {"event_type": EVENT_TYPE, "subscription": "bench"},
                )
                or 0
            ),
            "saturated": int(
                sample("nerve_http_requests_rejected_total", {"reason": "saturated"}) or 0
            ),
        }

    return app


def build(config: AppConfig) -> ASGIApp:
    """The app ``config`` names, as ``nerve serve`` serves it (intake first)."""
    if config.system == "seed":
        return seed_app(config)
    from nerve.http import intake_first

    return intake_first(nerve_app(config))


def serve(config: AppConfig) -> None:
    """Serve ``config``'s app until SIGTERM / SIGINT."""
    uvicorn.run(
        build(config),
        host="127.0.0.1",
        port=config.port,
        loop="uvloop",
        http="httptools",
        workers=1,
        access_log=False,
        log_level="warning",
    )


if __name__ == "__main__":
    # The toy bus calls datetime.utcnow(), deprecated since 3.12: the article's cost, kept,
    # but its warning is not what the benchmark measures.
    warnings.simplefilter("ignore", DeprecationWarning)
    serve(AppConfig(**json.loads(sys.argv[1])))
