"""``create_app`` and ``router``: the HTTP door to a bus."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import APIRouter, FastAPI
from starlette.types import Receive, Scope, Send

from nerve import __version__
from nerve.bus import EventBus
from nerve.http import admin, events, ui, webhooks
from nerve.http.fastpath import IntakeFastPath, handles
from nerve.http.intake import Intake
from nerve.http.settings import HTTPSettings
from nerve.metrics import Metrics

log = logging.getLogger("nerve.http")


def router(
    bus: EventBus, settings: HTTPSettings | None = None, *, metrics: Metrics | None = None
) -> APIRouter:
    """Every nerve endpoint, to mount in an existing FastAPI app.

    The router's lifespan starts the bus and drains it at shutdown, so
    ``app.include_router(router(bus))`` is all an app needs.

    Args:
        bus: where accepted events go; its subscriptions run in this process.
        settings: keys, secrets and limits (default: from ``NERVE_*`` variables).
        metrics: what ``/metrics`` serves (default: a new registry observing ``bus``).
    """
    return _build(bus, settings, metrics)[0]


def _build(
    bus: EventBus, settings: HTTPSettings | None, metrics: Metrics | None
) -> tuple[APIRouter, Intake]:
    settings = settings or HTTPSettings()
    if metrics is None:
        metrics = Metrics()
        bus.observe(metrics)
    intake = Intake(bus, settings, metrics)
    if intake.keys.open:
        log.warning("no API keys configured (NERVE_API_KEYS): every endpoint is open")

    @asynccontextmanager
    async def lifespan(_app: Any) -> AsyncIterator[None]:
        await bus.start()
        try:
            yield
        finally:
            await drain(bus)

    top = APIRouter(lifespan=lifespan)
    # The routes go in flat: FastAPI resolves each include_router level on every request.
    for part in (
        events.routes(intake),
        webhooks.routes(intake),
        admin.routes(intake),
        ui.routes(intake),
    ):
        top.routes.extend(part.routes)
    return top, intake


class _App(FastAPI):
    """FastAPI, with the intake fast path ahead of the whole middleware stack.

    When nothing stands in front of the intake (no middleware added besides nerve's, no
    ``root_path``, FastAPI's own OpenTelemetry instrumentation not configured),
    ``POST /events`` and ``POST /events/batch`` skip the framework's per-request layers:
    its telemetry check, error, telemetry and body-limit middleware, and their wrapping of
    every ``send``. That is decided once, at the first request (Starlette refuses new
    middleware after it). Otherwise the requests go through the stack, where the same
    :class:`IntakeFastPath` answers them as middleware.
    """

    def __init__(self, fast: IntakeFastPath, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._fast = fast
        self._direct: bool | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if handles(scope):
            direct = self._direct
            if direct is None:
                direct = self._direct = self._nothing_in_front()
            if direct:
                await self._fast.answer(scope, receive, send)
                return
        await super().__call__(scope, receive, send)

    def _nothing_in_front(self) -> bool:
        if self.middleware_stack is None:
            # Built now, as Starlette's first request would: it then refuses new middleware,
            # which this decision could not see.
            self.middleware_stack = self.build_middleware_stack()
        telemetry = getattr(self, "_native_telemetry", None)  # FastAPI >= 0.165
        return (
            len(self.user_middleware) == 1
            and self.user_middleware[0].cls is IntakeFastPath  # type: ignore[comparison-overlap]
            and not self.root_path
            and not (telemetry is not None and telemetry.enabled())
        )


async def _unused(scope: Scope, receive: Receive, send: Send) -> None:
    raise AssertionError("the direct fast path answers its requests itself")


def create_app(
    bus: EventBus, settings: HTTPSettings | None = None, *, metrics: Metrics | None = None
) -> FastAPI:
    """A FastAPI app that takes events and webhooks for ``bus`` and answers 202 at once.

    Its lifespan starts the bus and, at shutdown, drains it: an in-process bus handles
    what it accepted (within ``shutdown_grace``); a durable one stops, leaving the rest
    to the broker for the next worker.

    Example:
        ```python
        bus = EventBus("sqlite:///nerve.db")
        app = create_app(bus)  # uvicorn module:app, or: nerve serve module:bus
        ```
    """
    routes, intake = _build(bus, settings, metrics)
    app = _App(
        IntakeFastPath(_unused, intake),
        title="nerve",
        version=__version__,
        description="Events and webhooks in, agents at work: every accepted event is "
        "answered 202 once the transport has it, before any handler runs.",
        lifespan=routes.lifespan_context,
    )
    app.router.routes.extend(routes.routes)  # flat, as in router()
    app.add_middleware(IntakeFastPath, intake=intake)
    return app


async def drain(bus: EventBus) -> None:
    """Stop ``bus``; an in-process one first handles what it holds, within its grace."""
    if bus.transport.durable or not bus.running:
        await bus.stop()
        return
    await bus.drain()
