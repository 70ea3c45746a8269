"""The dashboard's endpoints through the real app: the page, its key, its JSON and its SSE feed."""

from __future__ import annotations

import asyncio
import signal
import time
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from nerve import Event, EventBus, Settings
from nerve.exceptions import TransportError
from nerve.http.feed import Feed
from nerve.http.ui import _lag
from tests.cli.test_commands import environment
from tests.http.conftest import ADMIN, AUTH, serve
from tests.http.test_serve import start

API = ["/ui/api/feed?seconds=0.1", "/ui/api/subscriptions", "/ui/api/trace/x", "/ui/api/events/x"]


def shop() -> tuple[EventBus, dict[str, Any]]:
    """Orders billed (and then shipped); ``{"fail": true}`` orders are dead-lettered."""
    bus = EventBus("memory://", settings=Settings(history=True))
    state: dict[str, Any] = {"gate": None}

    @bus.on("order.placed", name="billing", retries=0)
    async def bill(event: Event[Any]) -> None:
        if state["gate"] is not None:
            await state["gate"].wait()
        if event.payload.get("fail"):
            raise RuntimeError(f"card declined for {event.payload['n']}")
        await bus.publish(Event(event_type="order.billed", payload=event.payload))

    @bus.on("order.billed", name="shipping", retries=0)
    async def ship(event: Event[Any]) -> None:
        await bus.publish(Event(event_type="order.shipped", payload=event.payload))

    @bus.on("order.#", name="audit", retries=0)
    async def audit(event: Event[Any]) -> None:
        pass

    return bus, state


def messages(body: str) -> list[dict[str, Any]]:
    """The messages of a text/event-stream body: kind, id and data."""
    found = []
    for block in body.split("\n\n"):
        fields: dict[str, Any] = {}
        for line in block.splitlines():
            name, _, value = line.partition(": ")
            if name in ("id", "event", "data"):
                fields[name] = value
        if "data" in fields:
            found.append({**fields, "data": orjson.loads(fields["data"])})
    return found


async def place(client: Any, n: int, *, fail: bool = False) -> str:
    body = {"event_type": "order.placed", "payload": {"n": n, "fail": fail}}
    response = await client.post("/events", json=body, headers=AUTH)
    assert response.status_code == 202
    return str(response.json()["event_id"])


async def test_the_page_and_its_files_need_no_key_and_run_only_their_own_script() -> None:
    bus, _ = shop()
    async with serve(bus) as client:
        page = await client.get("/ui")
        assert page.status_code == 200
        assert page.headers["content-type"] == "text/html; charset=utf-8"
        assert '<script src="ui/app.js" defer></script>' in page.text
        policy = page.headers["content-security-policy"]
        assert "script-src 'self'" in policy
        assert "default-src 'none'" in policy
        assert "frame-ancestors 'none'" in policy
        assert page.headers["x-content-type-options"] == "nosniff"
        assert page.headers["referrer-policy"] == "no-referrer"
        script = await client.get("/ui/app.js")
        assert script.headers["content-type"] == "text/javascript; charset=utf-8"
        assert "Authorization" in script.text
        style = await client.get("/ui/app.css")
        assert style.headers["content-type"] == "text/css; charset=utf-8"
        assert (await client.get("/ui/index.html")).status_code == 404
        assert (await client.get("/ui/../pyproject.toml")).status_code == 404
        schema = (await client.get("/openapi.json")).json()
        assert not [path for path in schema["paths"] if path.startswith("/ui")]


@pytest.mark.parametrize("path", API)
async def test_the_dashboard_api_takes_an_admin_key_only(path: str) -> None:
    bus, _ = shop()
    async with serve(bus) as client:
        assert (await client.get(path)).status_code == 401
        assert (await client.get(path, headers=AUTH)).status_code == 403
        assert (await client.get(path, headers=ADMIN)).status_code in (200, 404)


async def test_subscriptions_show_counts_rates_and_lag() -> None:
    bus, _ = shop()
    async with serve(bus) as client:
        for n in range(3):
            await place(client, n)
        await place(client, 3, fail=True)
        await bus.join(5)
        first = (await client.get("/ui/api/subscriptions", headers=ADMIN)).json()
        rows = {row["name"]: row for row in first["subscriptions"]}
        assert list(rows) == ["audit", "billing", "shipping"]
        assert rows["billing"]["pattern"] == "order.placed"
        assert (rows["billing"]["handled"], rows["billing"]["failed"]) == (3, 1)
        assert rows["billing"]["dead_lettered"] == 1
        assert rows["shipping"]["handled"] == 3
        assert rows["audit"]["handled"] == 10  # 4 placed, 3 billed, 3 shipped
        assert rows["billing"]["handled_per_second"] is None  # one reading: no rate yet
        assert rows["billing"]["lag"] in (0, None)

        for n in range(4, 6):
            await place(client, n)
        await bus.join(5)
        second = (await client.get("/ui/api/subscriptions", headers=ADMIN)).json()
        rows = {row["name"]: row for row in second["subscriptions"]}
        assert rows["billing"]["handled"] == 5
        assert rows["billing"]["handled_per_second"] > 0
        assert rows["billing"]["failed_per_second"] == 0


async def test_lag_is_none_when_the_transport_cannot_tell() -> None:
    class Silent:
        pass

    class Broken:
        async def lag(self, subscription: str) -> int | None:
            raise TransportError("the broker is down")

    class Counting:
        async def lag(self, subscription: str) -> int | None:
            return 7

    assert await _lag(Silent(), "billing") is None
    assert await _lag(Broken(), "billing") is None
    assert await _lag(Counting(), "billing") == 7


async def test_the_feed_streams_the_log_as_server_sent_events() -> None:
    bus, _ = shop()
    async with serve(bus) as client:
        ok = await place(client, 1)
        failed = await place(client, 2, fail=True)
        await bus.join(5)
        response = await client.get("/ui/api/feed?seconds=0.2", headers=ADMIN)
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        assert response.headers["cache-control"] == "no-store"
        sent = messages(response.text)
        assert {m["event"] for m in sent} == {"event"}
        types = [m["data"]["event_type"] for m in sent]
        assert types[:2] == ["order.placed", "order.placed"]
        assert sorted(types) == sorted(["order.placed"] * 2 + ["order.billed", "order.shipped"])
        by_id = {m["data"]["event_id"]: m["data"] for m in sent}
        assert by_id[ok]["states"] == {"billing": "done", "audit": "done"}
        assert by_id[failed]["states"] == {"billing": "dead_lettered", "audit": "done"}
        error = next(o for o in by_id[failed]["outcomes"] if o["subscription"] == "billing")
        assert error["error_type"] == "RuntimeError"
        assert error["error_message"] == "card declined for 2"
        assert "payload" not in by_id[ok]
        shipped = next(m["data"] for m in sent if m["data"]["event_type"] == "order.shipped")
        assert shipped["correlation_id"] == ok

        # Resuming after the last id (query or Last-Event-ID) sends only what came since.
        last = sent[-1]["id"]
        assert all(m["id"] for m in sent)
        again = await client.get(f"/ui/api/feed?seconds=0.1&after={last}", headers=ADMIN)
        assert messages(again.text) == []
        later = await place(client, 3)
        await bus.join(5)
        resumed = await client.get(
            "/ui/api/feed?seconds=0.1", headers={**ADMIN, "Last-Event-ID": last}
        )
        since = messages(resumed.text)
        assert len(since) == 3
        assert since[0]["data"]["event_id"] == later

        only = await client.get("/ui/api/feed?seconds=0.1&pattern=order.shipped", headers=ADMIN)
        assert {m["data"]["event_type"] for m in messages(only.text)} == {"order.shipped"}
        # Events an earlier stream sent and the page still shows as pending: sent again first.
        watched = await client.get(
            f"/ui/api/feed?seconds=0.1&after={since[-1]['id']}&watch={ok},{failed}", headers=ADMIN
        )
        updates = messages(watched.text)
        assert [(m["event"], m["data"]["event_id"]) for m in updates] == [
            ("update", ok),
            ("update", failed),
        ]
        too_many = ",".join(f"e{n}" for n in range(201))
        refused = await client.get(f"/ui/api/feed?watch={too_many}", headers=ADMIN)
        assert refused.status_code == 422
        bad = await client.get("/ui/api/feed?pattern=order..x", headers=ADMIN)
        assert bad.status_code == 422
        assert bad.json()["error"] == "invalid"
        assert (await client.get("/ui/api/feed?seconds=0", headers=ADMIN)).status_code == 422


async def test_the_feed_sends_outcomes_as_they_arrive() -> None:
    bus, state = shop()
    state["gate"] = gate = asyncio.Event()
    async with serve(bus) as client:
        order = await place(client, 1)
        stream = Feed(bus.history, after=None, pattern="order.placed", seconds=30).stream()
        try:
            assert (await anext(stream)).startswith(b"retry: 1000")
            first = messages((await anext(stream)).decode())
            assert [m["data"]["event_id"] for m in first] == [order]
            assert first[0]["data"]["states"]["billing"] == "pending"
            gate.set()
            update = messages((await asyncio.wait_for(anext(stream), 10)).decode())
            while update[0]["data"]["states"] != {"billing": "done", "audit": "done"}:
                update = messages((await asyncio.wait_for(anext(stream), 10)).decode())
            assert update[0]["event"] == "update"
            assert "id" not in update[0]  # an update does not move the cursor
        finally:
            await stream.aclose()


async def test_an_event_and_the_trace_of_its_chain() -> None:
    bus, _ = shop()
    async with serve(bus) as client:
        order = await place(client, 7)
        await bus.join(5)
        one = await client.get(f"/ui/api/events/{order}", headers=ADMIN)
        assert one.status_code == 200
        assert one.json()["states"] == {"billing": "done", "audit": "done"}
        missing = await client.get("/ui/api/events/nope", headers=ADMIN)
        assert missing.status_code == 404
        assert missing.json()["error"] == "not_found"

        trace = (await client.get(f"/ui/api/trace/{order}", headers=ADMIN)).json()
        assert trace["correlation_id"] == order
        [root] = trace["roots"]
        assert root["record"]["event"]["event_type"] == "order.placed"
        assert root["record"]["event"]["payload"] == {"n": 7, "fail": False}
        [billed] = root["children"]
        [shipped] = billed["children"]
        assert billed["record"]["event"]["event_type"] == "order.billed"
        assert shipped["record"]["event"]["event_type"] == "order.shipped"
        assert shipped["states"] == {"audit": "done"}
        assert shipped["children"] == []
        nothing = (await client.get("/ui/api/trace/nope", headers=ADMIN)).json()
        assert nothing == {"correlation_id": "nope", "roots": []}


@pytest.mark.timeout(90)
def test_an_open_feed_does_not_hold_up_a_stopping_server(tmp_path: Path) -> None:
    """uvicorn waits for open responses at SIGTERM: a feed ends within its ``seconds``
    (``FEED_SECONDS`` for the page), then the server stops."""
    env = environment(f"sqlite:///{tmp_path}/bus.db", NERVE_API_KEYS="k", SLOW_SECONDS="0")
    output = tmp_path / "serve.out"
    process, base = start(env, "tests.apps.slow", output=output)
    try:
        headers = {"Authorization": "Bearer k"}
        with httpx.stream(
            "GET", f"{base}/ui/api/feed?seconds=3", headers=headers, timeout=30
        ) as feed:
            assert feed.status_code == 200
            chunks = feed.iter_bytes()  # held: dropping it would close the response
            assert next(chunks).startswith(b"retry: 1000")
            began = time.monotonic()
            process.send_signal(signal.SIGTERM)
            assert process.wait(timeout=30) in (0, -signal.SIGTERM)
        assert time.monotonic() - began < 3 + 5
        server_log = output.read_text()
        assert "Waiting for connections to close." in server_log  # the feed was open
        assert "Application shutdown complete." in server_log
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
