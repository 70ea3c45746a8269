"""``create_app`` and ``router``: the HTTP door to a bus."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import APIRouter, FastAPI
from starlette.types import ASGIApp, Receive, Scope, Send

from nerve import __version__
from nerve.bus import EventBus
from nerve.http import admin, events, ui, webhooks
from nerve.http.fastpath import IntakeFastPath
from nerve.http.intake import Intake
from nerve.http.settings import HTTPSettings
from nerve.llm.metrics import LLMMetrics
from nerve.observe.metrics import Metrics

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
        bus.observe(LLMMetrics(metrics.registry))
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
    """FastAPI, entered through the intake fast path when nothing stands in front of it.

    :class:`IntakeFastPath` is the innermost of the app's middleware: whatever middleware
    the user adds sees the intake requests. When there is none (and no ``root_path``, and
    FastAPI's own OpenTelemetry is off), the same middleware wrapped around FastAPI's own
    entry answers ``POST /events`` and ``/events/batch`` first, and passes every other
    request on. FastAPI's entry costs ~7 us a request before any middleware runs (its
    telemetry check alone ~4.5 us, FastAPI 0.165): 13% of the trivial-handler rate of
    ``bench.http`` (11,330 against 13,070 req/s, same sitting), and FastAPI has no public
    way to skip it. Hence this class's one override, ``__call__``: it only picks the entry.

    The pick is made at the first HTTP request, after the lifespan (FastAPI may configure
    its telemetry there); the middleware stack is built by then, so Starlette refuses
    middleware added later, which the pick could not see.
    """

    def __init__(self, intake: Intake, **options: Any) -> None:
        super().__init__(**options)
        self.add_middleware(IntakeFastPath, intake=intake)
        self._front = IntakeFastPath(super().__call__, intake)
        self._entry: ASGIApp | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        entry = self._entry
        if entry is None:
            if scope["type"] != "http":
                await super().__call__(scope, receive, send)
                return
            entry = self._entry = self._front if self._nothing_in_front() else super().__call__
        await entry(scope, receive, send)

    def _nothing_in_front(self) -> bool:
        if self.middleware_stack is None:
            # Built now, as Starlette's first request would: it then refuses new middleware.
            self.middleware_stack = self.build_middleware_stack()
        # FastAPI has no public "is its telemetry on": ``_native_telemetry`` (FastAPI 0.165)
        # is what its own __call__ asks on every request. Private, read here only; that it
        # still decides is tested on the installed FastAPI (tests/http/test_fastpath.py).
        telemetry = getattr(self, "_native_telemetry", None)
        return (
            len(self.user_middleware) == 1  # create_app's own IntakeFastPath
            and not self.root_path
            and not (telemetry is not None and telemetry.enabled())
        )


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
        intake,
        title="nerve",
        version=__version__,
        description="Events and webhooks in, agents at work: every accepted event is "
        "answered 202 once the transport has it, before any handler runs.",
        lifespan=routes.lifespan_context,
    )
    app.router.routes.extend(routes.routes)  # flat, as in router()
    return app


async def drain(bus: EventBus) -> None:
    """Stop ``bus``; an in-process one first handles what it holds, within its grace."""
    if bus.transport.durable or not bus.running:
        await bus.stop()
        return
    await bus.drain()
