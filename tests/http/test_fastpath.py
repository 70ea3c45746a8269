"""The intake fast path ahead of the framework, and where it gives way to the stack.

``intake_first(create_app(...))`` (what ``nerve serve`` runs) answers ``POST /events`` and
``/events/batch`` ahead of FastAPI; served as it is, ``create_app``'s app has the fast path
as its innermost middleware, so a middleware the user adds, and FastAPI's own telemetry,
still see those requests; an unexpected failure is a 500 with a body either way.
"""

from __future__ import annotations

from typing import Any, ClassVar

import httpx
import pytest
from fastapi import FastAPI
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from starlette.types import ASGIApp, Receive, Scope, Send

from nerve import ConfigurationError, Event, EventBus
from nerve.http import HTTPSettings, create_app, intake_first
from tests.http.conftest import AUTH, KEY


class Seen:
    """A user's ASGI middleware that records the paths it was called with."""

    paths: ClassVar[list[str]] = []

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            Seen.paths.append(scope["path"])
        await self.app(scope, receive, send)


def recording_bus() -> tuple[EventBus, list[str]]:
    bus = EventBus("memory://")
    handled: list[str] = []

    @bus.on("#", name="record")
    async def record(event: Event[Any]) -> None:
        handled.append(event.event_id)

    return bus, handled


async def post_both(app: Any) -> httpx.Response:
    """POST one event and a batch of two; return the single event's answer."""
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://n") as c,
    ):
        one = await c.post("/events", json={"event_type": "a.b", "payload": {}}, headers=AUTH)
        batch = await c.post(
            "/events/batch",
            json=[{"event_type": "a.b", "payload": {}}, {"event_type": "a.c", "payload": {}}],
            headers=AUTH,
        )
        assert batch.status_code == 202, batch.text
        return one


async def test_intake_first_never_enters_fastapi_for_the_intake() -> None:
    bus, handled = recording_bus()
    app = create_app(bus, HTTPSettings(api_keys=[KEY]))
    served = intake_first(app)
    entered: list[str] = []
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=served), base_url="http://n") as c,
    ):
        assert (await c.get("/healthz")).status_code == 200
        stack = app.middleware_stack
        assert stack is not None

        async def spy(scope: Scope, receive: Receive, send: Send) -> None:
            entered.append(scope["path"])
            await stack(scope, receive, send)

        app.middleware_stack = spy  # FastAPI's middleware stack, past its own entry
        one = await c.post("/events", json={"event_type": "a.b", "payload": {}}, headers=AUTH)
        batch = await c.post(
            "/events/batch",
            json=[{"event_type": "a.b", "payload": {}}, {"event_type": "a.c", "payload": {}}],
            headers=AUTH,
        )
        assert (await c.get("/healthz")).status_code == 200
    assert one.status_code == 202, one.text
    assert one.json()["status"] == "accepted"
    assert batch.status_code == 202, batch.text
    assert entered == ["/healthz"]  # the intake went ahead of FastAPI; the rest through it
    assert len(handled) == 3  # the lifespan drained the in-process bus


def test_intake_first_takes_only_an_app_made_by_create_app() -> None:
    with pytest.raises(ConfigurationError, match=r"an app made by nerve\.http\.create_app"):
        intake_first(FastAPI())


async def test_a_middleware_added_by_the_user_still_sees_the_intake_requests() -> None:
    bus, handled = recording_bus()
    app = create_app(bus, HTTPSettings(api_keys=[KEY]))
    app.add_middleware(Seen)
    Seen.paths = []
    response = await post_both(app)
    assert response.status_code == 202, response.text
    assert Seen.paths == ["/events", "/events/batch"]
    assert len(handled) == 3


async def test_with_fastapis_own_telemetry_on_the_intake_goes_through_fastapi(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """FastAPI's telemetry is on once an SDK provider is set; create_app's app, served as
    it is, enters through FastAPI, whose telemetry sees the intake requests."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    # As trace.set_tracer_provider(provider) would, without process-wide state in tests.
    monkeypatch.setattr(trace, "get_tracer_provider", lambda: provider)
    bus, handled = recording_bus()
    app = create_app(bus, HTTPSettings(api_keys=[KEY]))
    response = await post_both(app)
    assert response.status_code == 202, response.text
    assert len(handled) == 3
    server = [
        span.attributes.get("url.path")
        for span in exporter.get_finished_spans()
        if span.kind is trace.SpanKind.SERVER and span.attributes is not None
    ]
    assert server == ["/events", "/events/batch"]


@pytest.mark.parametrize("user_middleware", [False, True])
async def test_an_unexpected_failure_is_a_500_with_a_body(
    user_middleware: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    bus, handled = recording_bus()
    app = create_app(bus, HTTPSettings(api_keys=[KEY]))
    if user_middleware:
        app.add_middleware(Seen)

    async def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("a bug, not bad input")

    monkeypatch.setattr(bus, "publish", broken)  # a fault in nerve, injected
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://n") as c,
    ):
        response = await c.post("/events", json={"event_type": "a.b", "payload": {}}, headers=AUTH)
        assert response.status_code == 500
        assert response.json()["error"] == "internal_error"
    assert handled == []
