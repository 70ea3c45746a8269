"""Waiting runs and approvals over HTTP: ``GET /waits``, ``GET /approvals``,
``POST /approvals/{approval_id}``, on an in-process bus whose handlers really wait."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest

from nerve import Event, EventBus, wait_for
from nerve.approvals import Decision, approval
from tests.conftest import eventually
from tests.http.conftest import ADMIN, AUTH, serve

ADMIN_JSON = {**ADMIN, "Content-Type": "application/json"}


def refunds_bus() -> tuple[EventBus, list[Decision]]:
    """A bus whose ``refunds`` handler asks for an approval of each refund and keeps the
    decision it resumes with."""
    bus = EventBus("memory://")
    decided: list[Decision] = []

    @bus.on("refund.requested", name="refunds")
    async def refund(event: Event[Any]) -> None:
        payload = {"refund_id": event.payload["id"], "amount": event.payload["amount"]}
        decided.append(await approval("refund.approve", payload=payload, timeout=3600))

    return bus, decided


async def listed(client: httpx.AsyncClient, path: str, count: int) -> list[dict[str, Any]]:
    """What ``GET path`` lists (``{"approvals": [...]}``, ``{"waits": [...]}``), once it
    lists ``count`` items (the runs reach their waits after their events are published)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 10
    while True:
        body = (await client.get(path, headers=ADMIN)).json()
        [found] = body.values()
        if len(found) == count:
            return list(found)
        if loop.time() > deadline:
            pytest.fail(f"GET {path} listed {found}, not {count} item(s)")
        await asyncio.sleep(0.02)


async def test_an_approval_is_listed_approved_once_and_the_run_resumes() -> None:
    bus, decided = refunds_bus()
    async with serve(bus) as client:
        run = await bus.publish(
            Event(event_type="refund.requested", payload={"id": "r-1", "amount": 250})
        )
        [item] = await listed(client, "/approvals", 1)
        assert item["name"] == "refund.approve"
        assert item["payload"] == {"refund_id": "r-1", "amount": 250}
        assert item["subscription"] == "refunds"
        assert item["event_id"] == run.event_id
        requested = datetime.fromisoformat(item["requested_at"])
        expires = datetime.fromisoformat(item["expires_at"])
        assert timedelta(minutes=59) < expires - requested <= timedelta(hours=1)
        assert (await client.get(f"/events/{run.event_id}", headers=AUTH)).json()[
            "subscriptions"
        ] == {"refunds": "waiting"}

        aid = item["approval_id"]
        body = {"decision": "approve", "by": "ann", "comment": "within policy"}
        answer = await client.post(f"/approvals/{aid}", json=body, headers=ADMIN)
        assert answer.status_code == 200, answer.text
        got = answer.json()
        assert (got["approval_id"], got["status"], got["by"], got["comment"]) == (
            aid,
            "approved",
            "ann",
            "within policy",
        )
        assert got["decided_at"]
        await eventually(lambda: len(decided) == 1)
        assert decided[0].approved
        assert (decided[0].by, decided[0].comment) == ("ann", "within policy")

        # The first decision stands: a second one is refused, whatever it says.
        again = await client.post(f"/approvals/{aid}", json={"decision": "reject"}, headers=ADMIN)
        assert again.status_code == 409
        assert again.headers["content-type"] == "application/json"
        assert again.json()["error"] == "approval_closed"
        assert aid in again.json()["detail"]
        assert (await client.get("/approvals", headers=ADMIN)).json() == {"approvals": []}
        await bus.join(5)
        status = (await client.get(f"/events/{run.event_id}", headers=AUTH)).json()
        assert status["subscriptions"] == {"refunds": "done"}
        assert [d.status for d in decided] == ["approved"]


async def test_a_rejection_resumes_the_run_rejected() -> None:
    bus, decided = refunds_bus()
    async with serve(bus) as client:
        for n in range(2):
            event = Event(event_type="refund.requested", payload={"id": f"r-{n}", "amount": n})
            await bus.publish(event)
        items = await listed(client, "/approvals", 2)
        one = next(i for i in items if i["payload"]["refund_id"] == "r-1")
        answer = await client.post(
            f"/approvals/{one['approval_id']}", json={"decision": "reject"}, headers=ADMIN_JSON
        )
        assert answer.status_code == 200, answer.text
        assert (answer.json()["status"], answer.json()["by"]) == ("rejected", None)
        await eventually(lambda: len(decided) == 1)
        assert decided[0].status == "rejected"
        [left] = (await client.get("/approvals", headers=ADMIN)).json()["approvals"]
        assert left["payload"]["refund_id"] == "r-0"
        limited = await client.get("/approvals?limit=0", headers=ADMIN)
        assert limited.status_code == 422


async def test_an_unknown_approval_is_closed() -> None:
    async with serve(EventBus("memory://")) as client:
        answer = await client.post(
            "/approvals/no-such-approval", json={"decision": "approve"}, headers=ADMIN
        )
        assert answer.status_code == 409
        assert answer.json()["error"] == "approval_closed"


async def test_deciding_takes_an_admin_key_before_reading_the_body() -> None:
    async with serve(EventBus("memory://")) as client:
        for method, path in (("GET", "/approvals"), ("GET", "/waits"), ("POST", "/approvals/a")):
            body = {"decision": "approve"} if method == "POST" else None
            missing = await client.request(method, path, json=body)
            assert (missing.status_code, missing.json()["error"]) == (401, "unauthorized"), path
            event_key = await client.request(method, path, json=body, headers=AUTH)
            assert (event_key.status_code, event_key.json()["error"]) == (403, "forbidden"), path
        # a bad body without a key is refused for the key, not the body
        bad = await client.post("/approvals/a", content=b"{", headers={"Content-Type": "x/y"})
        assert bad.status_code == 401


async def test_a_bad_decision_body_is_refused_with_what_is_wrong() -> None:
    async with serve(EventBus("memory://")) as client:
        cases: list[tuple[Any, str]] = [
            ({"decision": "maybe"}, "decision"),
            ({}, "decision"),
            ({"decision": "approve", "by": "ann\nINFO forged log line"}, "by"),
            ({"decision": "approve", "by": "x" * 256}, "by"),
            ({"decision": "approve", "extra": 1}, "extra"),
            ({"decision": "approve", "comment": 3}, "comment"),
            (["approve"], ""),
        ]
        for body, field in cases:
            answer = await client.post("/approvals/a", json=body, headers=ADMIN)
            assert answer.status_code == 422, body
            problem = answer.json()
            assert problem["error"] == "invalid"
            assert problem["errors"][0]["loc"][0] == "body"
            if field:
                assert field in problem["errors"][0]["loc"], problem
        no_json = await client.post("/approvals/a", content=b"decision=approve", headers=ADMIN)
        assert no_json.status_code == 415
        form = {**ADMIN, "Content-Type": "application/x-www-form-urlencoded"}
        assert (await client.post("/approvals/a", content=b"d=1", headers=form)).status_code == 415
        broken = await client.post("/approvals/a", content=b"{", headers=ADMIN_JSON)
        assert broken.status_code == 400
        control = await client.post("/approvals/a%01", json={"decision": "approve"}, headers=ADMIN)
        assert control.status_code == 422  # a control character in the id: said in words
        assert control.json()["errors"][0]["loc"] == ["path", "approval_id"]


async def test_waits_lists_waiting_runs_with_what_for_and_until_when() -> None:
    bus = EventBus("memory://")
    resumed: list[Any] = []

    @bus.on("build.started", name="deployer")
    async def deploy(event: Event[Any]) -> None:
        found = await wait_for(
            "build.finished",
            match={"payload.build": event.payload["build"]},
            timeout=600,
            info={"why": "deploy after the build"},
        )
        resumed.append(found and found.payload)

    @bus.on("order.placed", name="shipper")
    async def ship(event: Event[Any]) -> None:
        resumed.append(await wait_for("order.paid", match={"correlation_id": event.correlation_id}))

    async with serve(bus) as client:
        build = await bus.publish(Event(event_type="build.started", payload={"build": 7}))
        order = await bus.publish(Event(event_type="order.placed", payload={}))
        waits = await listed(client, "/waits", 2)
        by_name = {w["subscription"]: w for w in waits}
        deployer = by_name["deployer"]
        assert deployer["event_id"] == build.event_id
        assert deployer["event_type"] == "build.started"
        assert deployer["awaited"] == "build.finished"
        assert deployer["match"] == {"payload.build": 7}
        assert deployer["info"] == {"why": "deploy after the build"}
        since = datetime.fromisoformat(deployer["since"])
        deadline = datetime.fromisoformat(deployer["deadline"])
        assert timedelta(minutes=9) < deadline - since < timedelta(minutes=11)
        shipper = by_name["shipper"]
        assert shipper["match"] == {"correlation_id": order.correlation_id}
        assert shipper["deadline"] is not None  # the default timeout of the settings

        only = await client.get("/waits?subscription=shipper", headers=ADMIN)
        assert [w["event_id"] for w in only.json()["waits"]] == [order.event_id]
        of_type = await client.get("/waits?event_type=build.finished", headers=ADMIN)
        assert [w["subscription"] for w in of_type.json()["waits"]] == ["deployer"]
        of_event = await client.get(f"/waits?event_id={build.event_id}", headers=ADMIN)
        assert [w["subscription"] for w in of_event.json()["waits"]] == ["deployer"]
        assert len((await client.get("/waits?limit=1", headers=ADMIN)).json()["waits"]) == 1

        await bus.publish(Event(event_type="build.finished", payload={"build": 7}))
        await eventually(lambda: resumed == [{"build": 7}])
        left = (await client.get("/waits", headers=ADMIN)).json()["waits"]
        assert [w["subscription"] for w in left] == ["shipper"]


async def test_the_openapi_schema_documents_them() -> None:
    async with serve(EventBus("memory://")) as client:
        spec = (await client.get("/openapi.json")).json()
    paths = spec["paths"]
    assert set(paths["/approvals"]) == {"get"}
    assert set(paths["/waits"]) == {"get"}
    post = paths["/approvals/{approval_id}"]["post"]
    assert {"200", "401", "403", "409", "415", "422"} <= set(post["responses"])
    body = post["requestBody"]["content"]["application/json"]["schema"]
    assert body["properties"]["decision"]["enum"] == ["approve", "reject"]
    assert body["required"] == ["decision"]
    assert "approvals" in paths["/approvals"]["get"]["tags"]
    schemas = spec["components"]["schemas"]
    assert {"Decision", "PendingApproval", "WaitOut"} <= set(schemas)
