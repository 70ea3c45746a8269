"""POST /events in every form, /events/batch, GET /events/{id}, and every refusal."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import quote

import httpx
import pytest

from nerve import Event, EventBus, Reject, Settings
from nerve.flow import Throttle
from nerve.http import HTTPSettings
from tests.conftest import eventually
from tests.http.conftest import ADMIN, AUTH, KEY, serve


def recording_bus(**settings: Any) -> tuple[EventBus, list[Event[Any]]]:
    bus = EventBus("memory://", settings=Settings(**settings))
    seen: list[Event[Any]] = []

    @bus.on("#", name="record")
    async def record(event: Event[Any]) -> None:
        seen.append(event)

    return bus, seen


@pytest.fixture
async def app() -> AsyncIterator[tuple[httpx.AsyncClient, EventBus, list[Event[Any]]]]:
    bus, seen = recording_bus()
    async with serve(bus) as client:
        yield client, bus, seen


Client = tuple[httpx.AsyncClient, EventBus, list[Event[Any]]]


async def test_json_event_is_accepted_then_handled(app: Client) -> None:
    client, _bus, seen = app
    body = {
        "event_type": "support.ticket.created",
        "payload": {"id": 7, "body": "refund please"},
        "source": "crm",
        "correlation_id": "chain-1",
    }
    response = await client.post("/events", json=body, headers=AUTH)
    assert response.status_code == 202
    answer = response.json()
    assert answer["status"] == "accepted"
    await eventually(lambda: len(seen) == 1)
    event = seen[0]
    assert event.event_id == answer["event_id"]
    assert (event.event_type, event.payload, event.source) == (
        "support.ticket.created",
        {"id": 7, "body": "refund please"},
        "crm",
    )
    assert event.correlation_id == "chain-1"


async def test_seed_form_takes_the_type_in_the_query_and_the_payload_as_body(app: Client) -> None:
    client, _bus, seen = app
    response = await client.post(
        "/events?event_type=deployment.completed&event_id=dep-1",
        json={"status": "failed", "service": "api"},
        headers=AUTH,
    )
    assert response.status_code == 202
    assert response.json() == {"event_id": "dep-1", "status": "accepted"}
    await eventually(lambda: len(seen) == 1)
    assert seen[0].event_type == "deployment.completed"
    assert seen[0].payload == {"status": "failed", "service": "api"}


async def test_reposting_an_event_id_is_accepted_and_handled_once(app: Client) -> None:
    client, bus, seen = app
    body = {"event_type": "a.b", "event_id": "same-id", "payload": {"n": 1}}
    for _ in range(3):
        response = await client.post("/events", json=body, headers=AUTH)
        assert response.status_code == 202
        assert response.json()["event_id"] == "same-id"
    await bus.join(5)
    assert [e.event_id for e in seen] == ["same-id"]


async def test_batch_publishes_every_event_with_per_item_results(app: Client) -> None:
    client, _bus, seen = app
    items = [{"event_type": "a.b", "payload": {"n": n}} for n in range(50)]
    items[3]["event_id"] = "mine-3"
    response = await client.post("/events/batch", json=items, headers=AUTH)
    assert response.status_code == 202
    answer = response.json()
    assert answer["accepted"] == 50
    assert answer["results"][3] == {"event_id": "mine-3", "status": "accepted"}
    ids = [r["event_id"] for r in answer["results"]]
    await eventually(lambda: len(seen) == 50)
    assert sorted(e.event_id for e in seen) == sorted(ids)
    assert sorted(e.payload["n"] for e in seen) == list(range(50))


async def test_batch_validation_is_all_or_nothing(app: Client) -> None:
    client, bus, seen = app
    items: list[Any] = [{"event_type": "a.b"}, {"event_type": "Not Valid"}, {"event_type": "c.d"}]
    response = await client.post("/events/batch", json=items, headers=AUTH)
    assert response.status_code == 422
    problem = response.json()
    assert problem["error"] == "invalid"
    assert problem["errors"][0]["loc"] == ["body", 1, "event_type"]
    assert "body.1.event_type" in problem["detail"]
    await bus.join(5)
    assert seen == []  # the valid items were not published either


@pytest.mark.parametrize(
    ("body", "status", "error"),
    [
        ([], 422, "invalid"),
        ({"event_type": "a.b"}, 422, "invalid"),
        ([{"event_type": "a.b"}] * 11, 413, "too_large"),
        ([42], 422, "invalid"),
    ],
)
async def test_bad_batches_are_refused(body: Any, status: int, error: str) -> None:
    bus, seen = recording_bus()
    settings = HTTPSettings(api_keys=[KEY], max_batch=10)
    async with serve(bus, settings) as client:
        response = await client.post("/events/batch", json=body, headers=AUTH)
        assert (response.status_code, response.json()["error"]) == (status, error)
        assert seen == []


async def test_batch_accepts_an_events_object_too(app: Client) -> None:
    client, _bus, seen = app
    body = {"events": [{"event_type": "a.b"}, {"event_type": "a.c"}]}
    response = await client.post("/events/batch", json=body, headers=AUTH)
    assert response.status_code == 202
    await eventually(lambda: len(seen) == 2)


# CloudEvents 1.0 HTTP binding


async def test_cloudevent_structured_mode(app: Client) -> None:
    client, _bus, seen = app
    ce = {
        "specversion": "1.0",
        "id": "ce-1",
        "source": "https://ci.example.com",
        "type": "deployment.completed",
        "time": "2026-11-30T10:00:00+00:00",
        "data": {"status": "ok"},
        "region": "eu",
    }
    response = await client.post(
        "/events",
        content=json.dumps(ce),
        headers={**AUTH, "content-type": "application/cloudevents+json; charset=utf-8"},
    )
    assert response.status_code == 202
    assert response.json()["event_id"] == "ce-1"
    await eventually(lambda: len(seen) == 1)
    event = seen[0]
    assert (event.event_type, event.source, event.payload) == (
        "deployment.completed",
        "https://ci.example.com",
        {"status": "ok"},
    )
    assert event.timestamp == "2026-11-30T10:00:00+00:00"
    assert event.metadata["region"] == "eu"


async def test_cloudevent_binary_mode(app: Client) -> None:
    client, _bus, seen = app
    headers = {
        **AUTH,
        "content-type": "application/json",
        "ce-specversion": "1.0",
        "ce-id": "ce-2",
        "ce-source": "/sensors/7",
        "ce-type": "sensor.reading",
        "ce-unit": "deg%20C",
    }
    response = await client.post("/events", json={"value": 91.5}, headers=headers)
    assert response.status_code == 202
    await eventually(lambda: len(seen) == 1)
    event = seen[0]
    assert (event.event_id, event.event_type, event.source) == (
        "ce-2",
        "sensor.reading",
        "/sensors/7",
    )
    assert event.payload == {"value": 91.5}
    assert event.metadata["unit"] == "deg C"  # header values are percent-decoded


@pytest.mark.parametrize("path", ["/events", "/events/batch"])
async def test_cloudevents_batch_mode(app: Client, path: str) -> None:
    client, _bus, seen = app
    batch = [
        {"specversion": "1.0", "id": f"b-{n}", "source": "s", "type": "a.b", "data": {"n": n}}
        for n in range(3)
    ]
    response = await client.post(
        path,
        content=json.dumps(batch),
        headers={**AUTH, "content-type": "application/cloudevents-batch+json"},
    )
    assert response.status_code == 202
    assert [r["event_id"] for r in response.json()["results"]] == ["b-0", "b-1", "b-2"]
    await eventually(lambda: len(seen) == 3)


@pytest.mark.parametrize(
    ("ce", "status", "needle"),
    [
        ({"specversion": "1.0", "id": "x", "type": "a.b"}, 422, "source"),
        ({"specversion": "0.3", "id": "x", "source": "s", "type": "a.b"}, 422, "specversion"),
        (
            {"specversion": "1.0", "id": "x", "source": "s", "type": "a.b", "data_base64": "AA=="},
            415,
            "JSON",
        ),
        # A CloudEvents type is any string (BAD TYPE is one), but one with nothing to route on.
        ({"specversion": "1.0", "id": "x", "source": "s", "type": "..."}, 422, "type"),
    ],
)
async def test_bad_cloudevents_are_refused(
    app: Client, ce: dict[str, Any], status: int, needle: str
) -> None:
    client, bus, seen = app
    response = await client.post(
        "/events",
        content=json.dumps(ce),
        headers={**AUTH, "content-type": "application/cloudevents+json"},
    )
    assert response.status_code == status
    assert needle in response.json()["detail"] or needle in json.dumps(response.json())
    await bus.join(5)
    assert seen == []


# refusals: never a 500 for bad input


async def test_missing_and_wrong_keys_are_401_and_admin_endpoints_403(app: Client) -> None:
    client, _, seen = app
    body = {"event_type": "a.b"}
    missing = await client.post("/events", json=body)
    assert missing.status_code == 401
    assert missing.headers["www-authenticate"].startswith("Bearer")
    assert "Authorization: Bearer" in missing.json()["detail"]
    wrong = await client.post("/events", json=body, headers={"Authorization": "Bearer nope"})
    assert (wrong.status_code, wrong.json()["error"]) == (401, "unauthorized")
    basic = await client.post("/events", json=body, headers={"Authorization": f"Basic {KEY}"})
    assert basic.status_code == 401
    assert (await client.get("/dlq", headers=AUTH)).status_code == 403
    assert (await client.get("/dlq", headers=ADMIN)).status_code == 200
    assert (await client.post("/events", json=body, headers=ADMIN)).status_code == 202
    await eventually(lambda: len(seen) == 1)


async def test_open_when_no_keys_are_configured() -> None:
    bus, seen = recording_bus()
    async with serve(bus, HTTPSettings()) as client:
        assert (await client.post("/events", json={"event_type": "a.b"})).status_code == 202
        assert (await client.get("/dlq")).status_code == 200
        await eventually(lambda: len(seen) == 1)


async def test_body_size_limit_is_413_with_or_without_content_length() -> None:
    bus, seen = recording_bus()
    async with serve(bus, HTTPSettings(api_keys=[KEY], max_body_bytes=1000)) as client:
        big = {"event_type": "a.b", "payload": {"text": "x" * 2000}}
        response = await client.post("/events", json=big, headers=AUTH)
        assert response.status_code == 413
        assert "limit is 1000" in response.json()["detail"]

        async def chunks() -> AsyncIterator[bytes]:
            yield b'{"event_type": "a.b", "payload": "'
            for _ in range(10):
                yield b"y" * 200
            yield b'"}'

        streamed = await client.post(
            "/events", content=chunks(), headers={**AUTH, "content-type": "application/json"}
        )
        assert "content-length" not in streamed.request.headers
        assert streamed.status_code == 413
        await bus.join(5)
        assert seen == []


@pytest.mark.parametrize(
    ("content", "content_type", "status", "error"),
    [
        (b"{", "application/json", 400, "invalid_json"),
        (b"", "application/json", 400, "invalid_json"),
        (b"event_type=a.b", "application/x-www-form-urlencoded", 415, "unsupported_media_type"),
        (b"<event/>", "text/xml", 415, "unsupported_media_type"),
        (b'{"event_type": "a.b", "colour": "red"}', "application/json", 422, "invalid"),
        (b'{"payload": {}}', "application/json", 422, "invalid"),
        (b'{"event_type": 5}', "application/json", 422, "invalid"),
        (b"[1, 2]", "application/json", 422, "invalid"),
        (b'"just a string"', "application/json", 422, "invalid"),
        (
            b'{"event_type": "a.b", "payload": ' + b"[" * 40 + b"]" * 40 + b"}",
            "application/json",
            422,
            "too_deep",
        ),
        # Past orjson's own limit (1024 levels), as the docs say: 422 too_deep, not 400.
        (b"[" * 5000 + b"]" * 5000, "application/json", 422, "too_deep"),
        (b"[" * 5000, "application/json", 422, "too_deep"),
        # No Content-Type: a page of any site may send that without asking (no preflight).
        (b'{"event_type": "a.b"}', "", 415, "unsupported_media_type"),
        (b'{"event_type": "a.b"}', "text/plain", 415, "unsupported_media_type"),
        (b'{"event_type": "a.b", "payload": {"x": NaN}}', "application/json", 400, "invalid_json"),
        (b'{"event_type": "a.b", "event_id": ""}', "application/json", 422, "invalid"),
    ],
)
async def test_bad_input_is_a_clear_4xx(
    app: Client, content: bytes, content_type: str, status: int, error: str
) -> None:
    client, bus, seen = app
    headers = {**AUTH, "content-type": content_type} if content_type else AUTH
    response = await client.post("/events", content=content, headers=headers)
    assert response.status_code == status, response.text
    problem = response.json()
    assert problem["error"] == error
    assert problem["detail"]
    await bus.join(5)
    assert seen == []


async def test_validation_errors_name_the_field_and_reason(app: Client) -> None:
    client, _, _ = app
    response = await client.post("/events", json={"event_type": "a.b", "colour": 1}, headers=AUTH)
    problem = response.json()
    assert problem["errors"] == [
        {
            "loc": ["body", "colour"],
            "msg": "Extra inputs are not permitted",
            "type": "extra_forbidden",
        }
    ]
    assert problem["detail"] == "body.colour: Extra inputs are not permitted"


async def test_a_saturated_bus_answers_503_with_retry_after_and_loses_nothing() -> None:
    bus = EventBus("memory://", settings=Settings(max_pending=2, concurrency=1))
    release = asyncio.Event()
    handled: list[str] = []

    @bus.on("slow.job")
    async def slow(event: Event[Any]) -> None:
        await release.wait()
        handled.append(event.event_id)

    settings = HTTPSettings(api_keys=[KEY], publish_timeout=0.05, retry_after=7)
    async with serve(bus, settings) as client:
        accepted: list[str] = []
        refused = None
        for _ in range(50):
            response = await client.post("/events", json={"event_type": "slow.job"}, headers=AUTH)
            if response.status_code == 503:
                refused = response
                break
            assert response.status_code == 202
            accepted.append(response.json()["event_id"])
        assert refused is not None, "the bus never said it was full"
        assert refused.headers["retry-after"] == "7"
        assert refused.json()["error"] == "saturated"
        release.set()
        await eventually(lambda: sorted(handled) == sorted(accepted))


async def test_status_of_an_event(app: Client) -> None:
    client, bus, _seen = app
    response = await client.post(
        "/events", json={"event_type": "a.b", "event_id": "st-1"}, headers=AUTH
    )
    assert response.status_code == 202
    await bus.join(5)
    status = await client.get("/events/st-1", headers=AUTH)
    assert status.status_code == 200
    assert status.json() == {
        "event_id": "st-1",
        "event_type": "a.b",
        "settled": True,
        "subscriptions": {"record": "done"},
        "reasons": {},
    }
    unknown = await client.get("/events/never-sent", headers=AUTH)
    assert (unknown.status_code, unknown.json()["error"]) == (404, "not_found")
    assert (await client.get("/events/st-1")).status_code == 401


async def test_status_shows_pending_then_dead_lettered() -> None:
    bus = EventBus("memory://")
    gate = asyncio.Event()

    @bus.on("a.b", name="picky")
    async def picky(event: Event[Any]) -> None:
        await gate.wait()
        raise Reject("not today")

    async with serve(bus) as client:
        await client.post("/events", json={"event_type": "a.b", "event_id": "p-1"}, headers=AUTH)
        pending = (await client.get("/events/p-1", headers=AUTH)).json()
        assert pending["subscriptions"] == {"picky": "pending"}
        assert pending["settled"] is False
        gate.set()
        await bus.join(5)
        dead = (await client.get("/events/p-1", headers=AUTH)).json()
        assert dead["subscriptions"] == {"picky": "dead_lettered"}
        assert dead["settled"] is True


async def test_status_shows_a_deferred_run_and_why() -> None:
    bus = EventBus("memory://")
    ran: list[str] = []

    @bus.on("a.b", name="paced", throttle=Throttle(1, per=3600))
    async def paced(event: Event[Any]) -> None:
        ran.append(event.event_id)

    async with serve(bus) as client:
        for event_id in ("t-1", "t-2"):
            await client.post(
                "/events", json={"event_type": "a.b", "event_id": event_id}, headers=AUTH
            )
        await eventually(lambda: ran == ["t-1"])
        found: dict[str, Any] = {}

        async def deferred() -> bool:
            found.update((await client.get("/events/t-2", headers=AUTH)).json())
            return bool(found["subscriptions"] == {"paced": "deferred"})

        deadline = asyncio.get_running_loop().time() + 10
        while not await deferred():
            assert asyncio.get_running_loop().time() < deadline, found
            await asyncio.sleep(0.01)
        assert found["settled"] is False
        assert found["reasons"]["paced"].startswith("throttled"), found
        first = (await client.get("/events/t-1", headers=AUTH)).json()
        assert first["subscriptions"]["paced"] != "deferred"
        assert first["reasons"] == {}


# malformed CloudEvents: a 4xx with a problem body, never a 500

CE_JSON = {**AUTH, "content-type": "application/cloudevents+json"}
CE_BATCH = {**AUTH, "content-type": "application/cloudevents-batch+json"}
PRINTABLE = "must be printable: no control characters or line breaks"


def cloudevent(**attributes: Any) -> dict[str, Any]:
    return {"specversion": "1.0", "id": "ce-1", "source": "s", "type": "a.b", "data": {}} | (
        attributes
    )


@pytest.mark.parametrize(
    "packed", [5, "5", "null", "[1,2]", "true", '"text"', '{"a": 1}', "{", {"a": "b"}, [1]]
)
@pytest.mark.parametrize("mode", ["structured", "batch", "binary"])
async def test_a_malformed_nervemetadata_is_a_422(app: Client, packed: Any, mode: str) -> None:
    client, bus, seen = app
    if mode == "structured":
        ce = cloudevent(nervemetadata=packed)
        response = await client.post("/events", content=json.dumps(ce), headers=CE_JSON)
        where: list[str | int] = ["body", "nervemetadata"]
    elif mode == "batch":
        batch = [cloudevent(id="fine"), cloudevent(id="bad", nervemetadata=packed)]
        response = await client.post("/events/batch", content=json.dumps(batch), headers=CE_BATCH)
        where = ["body", 1, "nervemetadata"]
    else:
        if isinstance(packed, dict):
            return  # a JSON object of strings as a header is what nerve writes: valid
        value = packed if isinstance(packed, str) else json.dumps(packed)
        headers = {
            **AUTH,
            "content-type": "application/json",
            "ce-specversion": "1.0",
            "ce-id": "ce-1",
            "ce-source": "s",
            "ce-type": "a.b",
            "ce-nervemetadata": quote(value),
        }
        response = await client.post("/events", json={}, headers=headers)
        where = ["body", "nervemetadata"]
    assert response.status_code == 422, response.text
    problem = response.json()
    assert problem["error"] == "invalid"
    assert "nervemetadata must be a JSON object of strings" in problem["detail"]
    assert [e["loc"] for e in problem["errors"]] == [where]
    await bus.join(5)
    assert seen == []


# request-supplied strings: printable, said in words


def _no_line_break(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code == 422, response.text
    problem: dict[str, Any] = response.json()
    assert problem["error"] == "invalid"
    assert "\n" not in problem["detail"]
    assert "\r" not in problem["detail"]
    assert "[^" not in response.text  # words, not a regex
    assert "should match" not in response.text
    return problem


async def test_an_event_id_with_a_line_break_is_a_422_in_words(app: Client) -> None:
    client, bus, seen = app
    body = {"event_type": "a.b", "event_id": "forged\nINFO all good"}
    problem = _no_line_break(await client.post("/events", json=body, headers=AUTH))
    assert "event_id must be printable: no control characters or line breaks" in problem["detail"]
    assert problem["errors"] == [
        {
            "loc": ["body", "event_id"],
            "msg": f"event_id {PRINTABLE}",
            "type": "string_pattern_mismatch",
        }
    ]
    batch = [{"event_type": "a.b"}, {"event_type": "a.b", "causation_id": "x\x1b[31m"}]
    problem = _no_line_break(await client.post("/events/batch", json=batch, headers=AUTH))
    assert problem["errors"][0]["loc"] == ["body", 1, "causation_id"]
    assert problem["errors"][0]["msg"] == f"causation_id {PRINTABLE}"
    await bus.join(5)
    assert seen == []


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("event_type=a.b&event_id=a%0Ab", "event_id"),
        ("event_type=a.b&source=s%0D%0Ax", "source"),
        ("event_type=a.b&correlation_id=%E2%80%A8", "correlation_id"),
        ("event_id=a%0Ab", "event_id"),  # nerve's JSON with the id in the query
    ],
)
async def test_query_strings_with_a_line_break_are_a_422_in_words(
    app: Client, query: str, field: str
) -> None:
    client, bus, seen = app
    body = {"event_type": "a.b"} if query.startswith("event_id") else {"n": 1}
    problem = _no_line_break(await client.post(f"/events?{query}", json=body, headers=AUTH))
    assert problem["errors"] == [
        {"loc": ["query", field], "msg": f"{field} {PRINTABLE}", "type": "string_pattern_mismatch"}
    ]
    await bus.join(5)
    assert seen == []


async def test_an_unknown_query_parameter_is_named_without_its_line_break(app: Client) -> None:
    client, _bus, seen = app
    response = await client.post("/events?event_type=a.b&x%0Ay=1", json={}, headers=AUTH)
    problem = _no_line_break(response)
    assert "'x\\ny'" in problem["detail"]
    assert seen == []


@pytest.mark.parametrize(
    ("attributes", "field"),
    [
        ({"id": "a\nb"}, "id"),
        ({"source": "s\r\nforged"}, "source"),
        ({"time": "2026\n"}, "time"),
        ({"region": "eu\u2028"}, "region"),
        ({"subject": "\x00"}, "subject"),
        ({"correlationid": "a\nb"}, "correlationid"),
    ],
)
async def test_cloudevent_attributes_with_a_line_break_are_a_422_in_words(
    app: Client, attributes: dict[str, Any], field: str
) -> None:
    client, bus, seen = app
    ce = cloudevent(**attributes)
    problem = _no_line_break(await client.post("/events", content=json.dumps(ce), headers=CE_JSON))
    assert problem["errors"][0]["loc"] == ["body", field]
    assert problem["errors"][0]["msg"] == f"{field} {PRINTABLE}"
    await bus.join(5)
    assert seen == []


@pytest.mark.parametrize(("header", "field"), [("ce-id", "id"), ("ce-unit", "unit")])
async def test_binary_cloudevent_headers_are_percent_decoded_then_checked(
    app: Client, header: str, field: str
) -> None:
    client, bus, seen = app
    headers = {
        **AUTH,
        "content-type": "application/json",
        "ce-specversion": "1.0",
        "ce-id": "ce-1",
        "ce-source": "s",
        "ce-type": "a.b",
        header: "forged%0AINFO%20ok",
    }
    problem = _no_line_break(await client.post("/events", json={}, headers=headers))
    assert problem["errors"][0]["msg"] == f"{field} {PRINTABLE}"
    await bus.join(5)
    assert seen == []


async def test_ids_in_paths_and_queries_with_a_line_break_are_a_422_in_words(app: Client) -> None:
    client, _bus, _seen = app
    problem = _no_line_break(await client.get("/events/a%0Ab", headers=AUTH))
    assert problem["errors"][0]["loc"] == ["path", "event_id"]
    assert problem["detail"] == f"path.event_id: event_id {PRINTABLE}"
    for request in (
        client.get("/dlq?event_id=a%0Ab", headers=ADMIN),
        client.get("/dlq?subscription=a%0Ab", headers=ADMIN),
        client.post("/dlq/a%0Ab/replay", headers=ADMIN),
        client.delete("/dlq/a%0Ab", headers=ADMIN),
    ):
        _no_line_break(await request)


async def test_a_422_names_only_the_fields_really_invalid(app: Client) -> None:
    client, _bus, _seen = app
    response = await client.post("/events", json={"event_type": "Not Valid"}, headers=AUTH)
    rule = (
        "event_type must be dot-separated segments of lower-case letters, digits, _ and - "
        "(e.g. support.ticket.created)"
    )
    assert response.json()["errors"] == [
        {"loc": ["body", "event_type"], "msg": rule, "type": "string_pattern_mismatch"}
    ]
    assert response.json()["detail"] == f"body.event_type: {rule}"
    seed = await client.post("/events?event_type=Not+Valid", json={}, headers=AUTH)
    assert [e["loc"] for e in seed.json()["errors"]] == [["query", "event_type"]]


# CloudEvents fidelity: every attribute reaches the handler, any type is taken


@pytest.mark.parametrize(
    ("kind", "event_type"),
    [
        ("Microsoft.Storage.BlobCreated", "microsoft.storage.blob_created"),
        (
            "google.cloud.pubsub.topic.v1.messagePublished",
            "google.cloud.pubsub.topic.v1.message_published",
        ),
        ("com.example.object.deleted.v2", "com.example.object.deleted.v2"),
        ("BAD TYPE", "bad_type"),
    ],
)
async def test_a_cloudevent_keeps_every_attribute_and_any_type(
    app: Client, kind: str, event_type: str
) -> None:
    client, _bus, seen = app
    ce = cloudevent(
        type=kind,
        subject="mycontainer/blob.txt",
        dataschema="https://example.com/schemas/blob.json",
        datacontenttype="application/json; charset=utf-8",
        region="eu",
    )
    response = await client.post("/events", content=json.dumps(ce), headers=CE_JSON)
    assert response.status_code == 202, response.text
    await eventually(lambda: len(seen) == 1)
    event = seen[0]
    assert event.event_type == event_type
    expected = {
        "subject": "mycontainer/blob.txt",
        "dataschema": "https://example.com/schemas/blob.json",
        "datacontenttype": "application/json; charset=utf-8",
        "region": "eu",
    }
    if kind != event_type:
        expected["ce-type"] = kind
    assert event.metadata == expected
    back = event.to_cloudevent()
    assert (back["type"], back["subject"], back["dataschema"]) == (
        kind,
        "mycontainer/blob.txt",
        "https://example.com/schemas/blob.json",
    )


async def test_a_binary_cloudevent_keeps_its_subject_and_type(app: Client) -> None:
    client, _bus, seen = app
    headers = {
        **AUTH,
        "content-type": "application/json",
        "ce-specversion": "1.0",
        "ce-id": "b-1",
        "ce-source": "/storage",
        "ce-type": "Microsoft.Storage.BlobCreated",
        "ce-subject": "blobs/a%20b.txt",
    }
    response = await client.post("/events", json={"size": 3}, headers=headers)
    assert response.status_code == 202, response.text
    await eventually(lambda: len(seen) == 1)
    assert seen[0].event_type == "microsoft.storage.blob_created"
    assert seen[0].metadata == {
        "subject": "blobs/a b.txt",
        "ce-type": "Microsoft.Storage.BlobCreated",
    }


async def test_a_cloudevent_type_error_states_the_rule_in_words(app: Client) -> None:
    client, _bus, _seen = app
    response = await client.post(
        "/events", content=json.dumps(cloudevent(type="...")), headers=CE_JSON
    )
    assert response.status_code == 422
    problem = response.json()
    assert "type must name the kind of event" in problem["detail"]
    assert "Microsoft.Storage.BlobCreated -> microsoft.storage.blob_created" in problem["detail"]
    assert "should match" not in response.text
    assert "[A-Za-z" not in response.text
    assert problem["errors"][0]["loc"] == ["body", "type"]
