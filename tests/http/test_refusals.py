"""Every answer but a success is a problem body: the framework's own refusals, a parameter
FastAPI finds invalid, a failure of nerve's own; ``HEAD`` works wherever ``GET`` does."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from nerve import EventBus
from nerve.http import HTTPSettings
from tests.http.conftest import ADMIN, AUTH, serve

PROBLEM = "application/json"


def problem_of(response: httpx.Response, status: int, error: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(PROBLEM)
    body: dict[str, Any] = response.json()
    assert body["error"] == error
    assert body["detail"]
    return body


async def test_an_unknown_path_and_a_wrong_method_are_problems() -> None:
    async with serve(EventBus("memory://")) as client:
        problem_of(await client.get("/nowhere"), 404, "not_found")
        wrong = await client.put("/events", headers=AUTH)
        problem_of(wrong, 405, "method_not_allowed")
        assert wrong.headers["allow"] == "POST"


async def test_an_invalid_parameter_is_a_422_problem_naming_it() -> None:
    async with serve(EventBus("memory://")) as client:
        problem = problem_of(await client.get("/dlq?limit=0", headers=ADMIN), 422, "invalid")
        assert [e["loc"] for e in problem["errors"]] == [["query", "limit"]]
        assert problem["detail"].startswith("query.limit: ")


async def test_an_unexpected_failure_in_a_route_is_a_500_problem(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    bus = EventBus("memory://")

    async def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("a bug, not bad input")

    async with serve(bus) as client:
        monkeypatch.setattr(bus, "status", broken)  # a fault in nerve, injected
        problem_of(await client.get("/events/x", headers=AUTH), 500, "internal_error")


@pytest.mark.parametrize(
    "path", ["/healthz", "/readyz", "/metrics", "/openapi.json", "/docs", "/dlq", "/events/nope"]
)
async def test_head_answers_wherever_get_does(path: str) -> None:
    async with serve(EventBus("memory://")) as client:
        get = await client.get(path, headers=ADMIN)
        head = await client.head(path, headers=ADMIN)
        assert head.status_code == get.status_code
        assert head.headers["content-type"] == get.headers["content-type"]


def test_the_settings_say_what_the_admin_keys_open() -> None:
    described = HTTPSettings.model_fields["admin_api_keys"].description or ""
    assert "dead letters" in described
    assert not described.startswith("Bearer keys for status")  # an event key reads status
    assert "event key still reads an event's status" in described
