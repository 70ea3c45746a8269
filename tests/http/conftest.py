"""Driving the real HTTP app in process: its lifespan runs, requests go through httpx."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx

from nerve import EventBus
from nerve.http import HTTPSettings, create_app

KEY = "test-key-1"
ADMIN_KEY = "test-admin-key"
AUTH = {"Authorization": f"Bearer {KEY}"}
#: A raw body's headers: a body must say it is JSON (httpx's json= says so itself).
JSON_AUTH = {**AUTH, "Content-Type": "application/json"}
ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}


@asynccontextmanager
async def serve(
    bus: EventBus, settings: HTTPSettings | None = None
) -> AsyncIterator[httpx.AsyncClient]:
    """The app for ``bus`` with its lifespan running, and a client talking to it."""
    app = create_app(bus, settings or HTTPSettings(api_keys=[KEY], admin_api_keys=[ADMIN_KEY]))
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://nerve") as c,
    ):
        yield c
