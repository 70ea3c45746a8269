"""Pages of other sites cannot publish here: a JSON media type is required, a foreign
``Origin`` is refused unless allowed, and with no key only loopback pages are served."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest

from nerve import Event, EventBus
from nerve.http import HTTPSettings, create_app, intake_first
from nerve.http.origins import authority, is_loopback
from tests.http.conftest import ADMIN, ADMIN_KEY, AUTH, KEY

EVENT = {"event_type": "a.b", "payload": {}}


@asynccontextmanager
async def served(
    settings: HTTPSettings, base_url: str = "http://nerve.example:8000"
) -> AsyncIterator[tuple[httpx.AsyncClient, list[Event[Any]]]]:
    bus = EventBus("memory://")
    seen: list[Event[Any]] = []

    @bus.on("#", name="record")
    async def record(event: Event[Any]) -> None:
        seen.append(event)

    app = create_app(bus, settings)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=base_url) as client,
    ):
        yield client, seen
        await bus.join(5)


KEYED = HTTPSettings(api_keys=[KEY], admin_api_keys=[ADMIN_KEY])


@pytest.mark.parametrize("origin", ["https://evil.example", "null", "http://nerve.example:9999"])
async def test_a_page_of_another_origin_cannot_publish(origin: str) -> None:
    async with served(KEYED) as (client, seen):
        response = await client.post("/events", json=EVENT, headers={**AUTH, "Origin": origin})
        assert response.status_code == 403, response.text
        assert response.json()["error"] == "cross_origin"
        assert "NERVE_ALLOWED_ORIGINS" in response.json()["detail"]
        batch = await client.post("/events/batch", json=[EVENT], headers={**AUTH, "Origin": origin})
        assert batch.status_code == 403
        replay = await client.post("/dlq/x/replay", headers={**ADMIN, "Origin": origin})
        assert replay.status_code == 403
        hook = await client.post("/webhooks/github", json={}, headers={"Origin": origin})
        assert hook.status_code == 403
    assert seen == []


async def test_the_apps_own_pages_and_other_clients_are_served() -> None:
    async with served(KEYED) as (client, seen):
        own = {**AUTH, "Origin": "http://nerve.example:8000"}
        assert (await client.post("/events", json=EVENT, headers=own)).status_code == 202
        assert (await client.post("/events", json=EVENT, headers=AUTH)).status_code == 202
    assert len(seen) == 2


@pytest.mark.parametrize("allowed", [["https://app.example.com"], ["*"]])
async def test_an_allowed_origin_is_served(allowed: list[str]) -> None:
    settings = HTTPSettings(api_keys=[KEY], allowed_origins=allowed)
    async with served(settings) as (client, seen):
        headers = {**AUTH, "Origin": "https://app.example.com"}
        assert (await client.post("/events", json=EVENT, headers=headers)).status_code == 202
    assert len(seen) == 1


async def test_allowed_origins_come_comma_separated_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("NERVE_ALLOWED_ORIGINS", "https://a.example, http://b.example:8080")
    assert HTTPSettings().allowed_origins == ["https://a.example", "http://b.example:8080"]


async def test_without_a_key_a_post_with_no_content_type_from_anywhere_is_refused() -> None:
    # What any web page can send to a nerve on the visitor's machine, without a preflight.
    async with served(HTTPSettings(), "http://127.0.0.1:8000") as (client, seen):
        body = b'{"event_type": "a.b"}'
        response = await client.post("/events", content=body)
        assert response.status_code == 415, response.text
        assert "Content-Type: application/json" in response.json()["detail"]
        evil = {"Origin": "https://evil.example"}
        assert (await client.post("/events", content=body, headers=evil)).status_code == 403
        foreign = await client.post(
            "/events", json=EVENT, headers={"Origin": "https://evil.example"}
        )
        assert foreign.status_code == 403
    assert seen == []


async def test_without_a_key_only_loopback_pages_count_as_the_apps_own() -> None:
    # DNS rebinding: evil.example pointed at 127.0.0.1 is the page's own origin to the
    # browser; with no key to ask, only a loopback host is taken as nerve's own.
    async with served(HTTPSettings(), "http://evil.example:8000") as (client, seen):
        rebound = {"Origin": "http://evil.example:8000"}
        response = await client.post("/events", json=EVENT, headers=rebound)
        assert response.status_code == 403
        assert "NERVE_API_KEYS" in response.json()["detail"]
    async with served(HTTPSettings(), "http://127.0.0.1:8000") as (client, seen):
        local = {"Origin": "http://127.0.0.1:8000"}
        assert (await client.post("/events", json=EVENT, headers=local)).status_code == 202
        assert (await client.post("/events", json=EVENT)).status_code == 202  # curl, an SDK
    assert len(seen) == 2


@pytest.mark.parametrize(
    ("origin", "expected"),
    [
        ("http://Nerve.Example:8000", "nerve.example:8000"),
        ("https://nerve.example:443", "nerve.example"),
        ("http://nerve.example:80", "nerve.example"),
        ("null", None),
        ("http://a/b", None),
        ("", None),
    ],
)
def test_authority(origin: str, expected: str | None) -> None:
    assert authority(origin) == expected


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("localhost", True),
        ("localhost:8000", True),
        ("127.0.0.1", True),
        ("127.9.9.9:80", True),
        ("::1", True),
        ("[::1]:8000", True),
        ("app.localhost", True),
        ("0.0.0.0", False),  # noqa: S104  # a host name checked, not bound
        ("192.168.1.2:8000", False),
        ("evil.example", False),
        ("[::]", False),
    ],
)
def test_is_loopback(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


@pytest.mark.parametrize("first", [False, True])
async def test_pages_of_an_allowed_origin_get_cors_answers(first: bool) -> None:
    # What lets their browser send JSON (a preflight) and read the answer.
    bus = EventBus("memory://")
    settings = HTTPSettings(api_keys=[KEY], allowed_origins=["https://app.example.com"])
    app = create_app(bus, settings)
    served = intake_first(app) if first else app
    page = {"Origin": "https://app.example.com"}
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=served), base_url="http://n") as c,
    ):
        preflight = await c.options(
            "/events",
            headers={
                **page,
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "authorization, content-type",
            },
        )
        assert preflight.status_code == 200
        assert preflight.headers["access-control-allow-origin"] == "https://app.example.com"
        for path, body in (("/events", EVENT), ("/events/batch", [EVENT])):
            response = await c.post(path, json=body, headers={**AUTH, **page})
            assert response.status_code == 202, response.text
            assert response.headers["access-control-allow-origin"] == "https://app.example.com"
        status = await c.get("/healthz", headers=page)
        assert status.headers["access-control-allow-origin"] == "https://app.example.com"
        other = await c.post("/events", json=EVENT, headers={**AUTH, "Origin": "https://x.example"})
        assert other.status_code == 403
        assert "access-control-allow-origin" not in other.headers
