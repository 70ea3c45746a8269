"""``create_app`` and ``router``: the HTTP door to a bus."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from http import HTTPStatus
from typing import Any, cast

from fastapi import APIRouter, FastAPI, Request, Response
from fastapi.middleware.cors import CORSMiddleware
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp

from nerve import __version__
from nerve.bus import EventBus
from nerve.exceptions import ConfigurationError
from nerve.http import admin, apidocs, events, ui, waiting, webhooks
from nerve.http.fastpath import IntakeFastPath
from nerve.http.intake import Intake
from nerve.http.problems import HTTPProblem
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
        waiting.routes(intake),
        ui.routes(intake),
    ):
        top.routes.extend(part.routes)
    return top, intake


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
    app = FastAPI(
        title="nerve",
        version=__version__,
        description="Events and webhooks in, agents at work: every accepted event is "
        "answered 202 once the transport has it, before any handler runs.",
        lifespan=routes.lifespan_context,
        docs_url=None,  # FastAPI's pages load their scripts from a CDN: served offline below
        redoc_url=None,
    )
    app.router.routes.extend(routes.routes)  # flat, as in router()
    docs = apidocs.routes(intake, title=app.title, openapi_url=app.openapi_url or "/openapi.json")
    app.router.routes.extend(docs.routes)

    async def framework_refusal(request: Request, exc: Exception) -> Response:
        # No route for the path (404) or the method (405): a problem body like every other
        # refusal, where FastAPI answers {"detail": "Not Found"}.
        return intake.refuse(_framework_problem(request, cast(HTTPException, exc)))

    app.add_exception_handler(HTTPException, framework_refusal)
    # Innermost: whatever middleware the user adds still sees the intake requests.
    app.add_middleware(IntakeFastPath, intake=intake)
    if intake.origins.cors:  # pages of the allowed origins may send JSON and read answers
        app.add_middleware(
            CORSMiddleware,
            allow_origins=intake.settings.allowed_origins,
            allow_methods=["GET", "POST", "DELETE"],
            allow_headers=["*"],
            max_age=600,
        )
    app.state.intake = intake  # for intake_first()
    return app


def intake_first(app: FastAPI) -> ASGIApp:
    """The ASGI app to serve when nothing must stand in front of ``app``'s intake:
    ``POST /events`` and ``/events/batch`` answered before FastAPI's own entry, every
    other request passed to ``app``. What ``nerve serve`` runs.

    FastAPI's entry costs ~7 us a request before any middleware runs (its telemetry check
    alone ~4.5 us, FastAPI 0.165): 13% of the trivial-handler rate of ``bench.http``
    (11,330 against 13,070 req/s, same sitting). Serve ``app`` itself instead when
    something in front must see the intake requests (a middleware you add to ``app``,
    FastAPI's own OpenTelemetry instrumentation): the fast path is then the innermost of
    its middleware, and only FastAPI's entry is paid.

    Raises:
        ConfigurationError: ``app`` was not made by :func:`create_app`.
    """
    intake = getattr(app.state, "intake", None)
    if not isinstance(intake, Intake):
        raise ConfigurationError("intake_first() takes an app made by nerve.http.create_app")
    return IntakeFastPath(app, intake)


def _framework_problem(request: Request, exc: HTTPException) -> HTTPProblem:
    status = exc.status_code
    path = request.url.path
    headers = dict(exc.headers or {})
    if status == 404:
        return HTTPProblem(404, "not_found", f"nothing is served at {path!r}: see /docs")
    if status == 405:
        allowed = headers.get("Allow", "")
        detail = f"{request.method} is not accepted at {path!r}: use {allowed}"
        return HTTPProblem(405, "method_not_allowed", detail, headers=headers)
    try:
        error = HTTPStatus(status).phrase.lower().replace(" ", "_").replace("-", "_")
    except ValueError:
        error = f"http_{status}"
    return HTTPProblem(status, error, str(exc.detail), headers=headers)


async def drain(bus: EventBus) -> None:
    """Stop ``bus``; an in-process one first handles what it holds, within its grace."""
    if bus.transport.durable or not bus.running:
        await bus.stop()
        return
    await bus.drain()
