"""The intake fast path ahead of the framework, and where it gives way to the stack.

``create_app`` answers ``POST /events`` and ``/events/batch`` ahead of FastAPI's middleware
stack when nothing else stands in front; a middleware the user adds must still see those
requests, and an unexpected failure must still be a 500 with a body.
"""

from __future__ import annotations

from typing import Any, ClassVar

import httpx
import pytest
from starlette.types import ASGIApp, Receive, Scope, Send

from nerve import Event, EventBus
from nerve.http import HTTPSettings, create_app
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


async def test_with_nothing_in_front_the_intake_goes_direct_and_is_handled() -> None:
    bus, handled = recording_bus()
    app = create_app(bus, HTTPSettings(api_keys=[KEY]))
    response = await post_both(app)
    assert response.status_code == 202, response.text
    assert response.json()["status"] == "accepted"
    assert app._direct is True  # type: ignore[attr-defined]
    assert len(handled) == 3  # the lifespan drained the in-process bus
    with pytest.raises(RuntimeError, match="after an application has started"):
        app.add_middleware(Seen)  # it would not see the intake: refused, as Starlette does


async def test_a_middleware_added_by_the_user_still_sees_the_intake_requests() -> None:
    bus, handled = recording_bus()
    app = create_app(bus, HTTPSettings(api_keys=[KEY]))
    app.add_middleware(Seen)
    Seen.paths = []
    response = await post_both(app)
    assert response.status_code == 202, response.text
    assert Seen.paths == ["/events", "/events/batch"]
    assert app._direct is False  # type: ignore[attr-defined]
    assert len(handled) == 3


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
