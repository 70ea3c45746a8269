"""Dead letters over HTTP, health, readiness, metrics, the router, and the settings."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from nerve import Event, EventBus, Reject
from nerve.http import HTTPSettings, create_app, router
from tests.conftest import FAST, drop_redis_keys, eventually
from tests.http.conftest import ADMIN, AUTH, JSON_AUTH, KEY, serve


def flaky_bus() -> tuple[EventBus, dict[str, Any]]:
    """A bus whose 'charge' handler rejects events until told to accept them."""
    bus = EventBus("memory://")
    state: dict[str, Any] = {"accept": False, "handled": []}

    @bus.on("payment.#", name="charge", retries=1, backoff=FAST)
    async def charge(event: Event[Any]) -> None:
        if event.payload.get("poison") or not state["accept"]:
            raise Reject(f"card declined for {event.payload.get('id')}")
        state["handled"].append(event.event_id)

    @bus.on("payment.#", name="audit")
    async def audit(event: Event[Any]) -> None:
        pass

    return bus, state


async def test_dead_letters_list_replay_and_delete() -> None:
    bus, state = flaky_bus()
    async with serve(bus) as client:
        for n in range(3):
            body = {"event_type": "payment.received", "event_id": f"pay-{n}", "payload": {"id": n}}
            assert (await client.post("/events", json=body, headers=AUTH)).status_code == 202
        await bus.join(5)

        listed = await client.get("/dlq", headers=ADMIN)
        assert listed.status_code == 200
        entries = listed.json()["dead_letters"]
        assert sorted(e["event"]["event_id"] for e in entries) == ["pay-0", "pay-1", "pay-2"]
        entry = entries[0]
        assert entry["subscription"] == "charge"
        assert entry["errors"][-1]["type"] == "nerve.exceptions.Reject"
        assert entry["errors"][-1]["message"].startswith("card declined for")
        one = await client.get("/dlq?event_id=pay-1&subscription=charge", headers=ADMIN)
        assert [e["event"]["event_id"] for e in one.json()["dead_letters"]] == ["pay-1"]
        limited = await client.get("/dlq?limit=2", headers=ADMIN)
        assert len(limited.json()["dead_letters"]) == 2

        state["accept"] = True
        replayed = await client.post("/dlq/pay-1/replay", headers=ADMIN)
        assert replayed.status_code == 200
        assert [e["event"]["event_id"] for e in replayed.json()["dead_letters"]] == ["pay-1"]
        await eventually(lambda: state["handled"] == ["pay-1"])
        await bus.join(5)  # the done mark is written just after the handler returns
        status = (await client.get("/events/pay-1", headers=AUTH)).json()
        assert status["subscriptions"] == {"charge": "done", "audit": "done"}

        deleted = await client.delete("/dlq/pay-2", headers=ADMIN)
        assert deleted.json() == {"purged": 1}
        remaining = (await client.get("/dlq", headers=ADMIN)).json()["dead_letters"]
        assert [e["event"]["event_id"] for e in remaining] == ["pay-0"]

        for method, path in (("POST", "/dlq/pay-2/replay"), ("DELETE", "/dlq/pay-2")):
            missing = await client.request(method, path, headers=ADMIN)
            assert (missing.status_code, missing.json()["error"]) == (404, "not_found")
        assert (await client.post("/dlq/pay-0/replay", headers=AUTH)).status_code == 403
        assert (await client.delete("/dlq/pay-0")).status_code == 401
        assert (await client.get("/dlq?limit=0", headers=ADMIN)).status_code == 422


async def test_health_and_readiness() -> None:
    bus, _ = flaky_bus()
    app = create_app(bus, HTTPSettings(api_keys=[KEY]))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://nerve") as client:
        assert (await client.get("/healthz")).json() == {"status": "ok"}
        not_yet = await client.get("/readyz")  # the lifespan has not started the bus
        assert (not_yet.status_code, not_yet.json()["error"]) == (503, "not_running")
        async with app.router.lifespan_context(app):
            ready = await client.get("/readyz")
            assert (ready.status_code, ready.json()) == (200, {"status": "ready"})
        after = await client.get("/readyz")
        assert after.status_code == 503


@pytest.mark.parametrize("transport", ["sqlite", "redis"])
async def test_readiness_asks_a_durable_transport(transport: str, tmp_path: Path) -> None:
    url = (
        f"sqlite:///{tmp_path}/bus.db"
        if transport == "sqlite"
        else f"redis://127.0.0.1:6379/0?prefix=t-ready-{tmp_path.name}"
    )
    bus = EventBus(url)
    try:
        async with serve(bus) as client:
            ready = await client.get("/readyz")
            assert (ready.status_code, ready.json()) == (200, {"status": "ready"})
            response = await client.post("/events", json={"event_type": "a.b"}, headers=AUTH)
            assert response.status_code == 202
    finally:
        if transport == "redis":
            drop_redis_keys(url)


async def test_readiness_fails_when_the_broker_is_unreachable() -> None:
    # A port nothing listens on: the bus cannot even start, so the check runs unstarted.
    bus = EventBus("redis://127.0.0.1:1/0?prefix=t-unreachable")
    app = create_app(bus, HTTPSettings())
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://nerve") as client:
        response = await client.get("/readyz")
        assert response.status_code == 503


def metric(text: str, name: str, **labels: str) -> float:
    """One sample's value from Prometheus text output (0 when absent)."""
    for line in text.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        found = dict(re.findall(r'(\w+)="([^"]*)"', line.split("}")[0]))
        if all(found.get(k) == v for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


async def test_metrics_count_a_known_workload() -> None:
    bus, state = flaky_bus()
    state["accept"] = True
    async with serve(bus) as client:
        for n in range(5):
            body = {"event_type": "payment.received", "payload": {"id": n, "poison": n == 4}}
            assert (await client.post("/events", json=body, headers=AUTH)).status_code == 202
        batch = [{"event_type": "payment.refunded", "payload": {"id": 10 + n}} for n in range(3)]
        assert (await client.post("/events/batch", json=batch, headers=AUTH)).status_code == 202
        assert (await client.post("/events", json={"event_type": "a.b"})).status_code == 401
        assert (await client.post("/events", content=b"{", headers=JSON_AUTH)).status_code == 400
        assert (await client.post("/events", content=b"{", headers=JSON_AUTH)).status_code == 400
        await bus.join(5)
        response = await client.get("/metrics")
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/plain")
        text = response.text

    def m(name: str, **labels: str) -> float:
        return metric(text, name, **labels)

    assert m("nerve_http_events_accepted_total", source="events") == 5
    assert m("nerve_http_events_accepted_total", source="batch") == 3
    assert m("nerve_http_requests_rejected_total", reason="unauthorized") == 1
    assert m("nerve_http_requests_rejected_total", reason="invalid_json") == 2
    assert m("nerve_events_published_total", event_type="payment.received") == 5
    assert m("nerve_events_published_total", event_type="payment.refunded") == 3
    received = {"event_type": "payment.received"}
    assert m("nerve_events_handled_total", **received, subscription="charge") == 4
    assert m("nerve_events_handled_total", **received, subscription="audit") == 5
    # The poison event: Reject dead-letters on the first attempt, no retry.
    assert m("nerve_events_failed_total", **received, subscription="charge") == 1
    assert m("nerve_events_dead_lettered_total", **received, subscription="charge") == 1
    assert m("nerve_events_retried_total", **received, subscription="charge") == 0
    assert m("nerve_handler_duration_seconds_count", subscription="charge") == 8
    assert m("nerve_handler_duration_seconds_count", subscription="audit") == 8


async def test_metrics_count_retries() -> None:
    bus = EventBus("memory://")
    attempts: list[int] = []

    @bus.on("job.run", name="flaky", retries=3, backoff=FAST)
    async def flaky(event: Event[Any]) -> None:
        attempts.append(1)
        if len(attempts) < 3:
            raise RuntimeError("not yet")

    async with serve(bus) as client:
        await client.post("/events", json={"event_type": "job.run"}, headers=AUTH)
        await bus.join(5)
        text = (await client.get("/metrics")).text
    labels = {"event_type": "job.run", "subscription": "flaky"}
    assert metric(text, "nerve_events_failed_total", **labels) == 2
    assert metric(text, "nerve_events_retried_total", **labels) == 2
    assert metric(text, "nerve_events_handled_total", **labels) == 1


async def test_router_mounts_in_an_existing_app_and_starts_the_bus() -> None:
    bus, state = flaky_bus()
    state["accept"] = True
    app = FastAPI()

    @app.get("/hello")
    async def hello() -> dict[str, str]:
        return {"hello": "world"}

    app.include_router(router(bus, HTTPSettings(api_keys=[KEY])), prefix="/nerve")
    transport = httpx.ASGITransport(app=app)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://app") as client,
    ):
        assert bus.running
        assert (await client.get("/hello")).json() == {"hello": "world"}
        body = {"event_type": "payment.received", "payload": {"id": 1}}
        assert (await client.post("/nerve/events", json=body, headers=AUTH)).status_code == 202
        await eventually(lambda: len(state["handled"]) == 1)
    assert not bus.running


def test_settings_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NERVE_API_KEYS", "k1, k2,")
    monkeypatch.setenv("NERVE_GITHUB_WEBHOOK_SECRET", "old,new")
    monkeypatch.setenv("NERVE_WEBHOOK_SECRETS", '{"acme": "whsec_a", "globex": ["whsec_b", "c"]}')
    monkeypatch.setenv("NERVE_MAX_BODY_BYTES", "2048")
    settings = HTTPSettings()
    assert [k.get_secret_value() for k in settings.api_keys] == ["k1", "k2"]
    assert [k.get_secret_value() for k in settings.github_webhook_secret] == ["old", "new"]
    assert {
        name: [s.get_secret_value() for s in secrets]
        for name, secrets in settings.webhook_secrets.items()
    } == {"acme": ["whsec_a"], "globex": ["whsec_b", "c"]}
    assert settings.max_body_bytes == 2048
    assert "k1" not in repr(settings)
    assert "whsec_a" not in repr(settings)
