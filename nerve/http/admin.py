"""Operating endpoints: dead letters, health, readiness and metrics."""

from __future__ import annotations

import asyncio
from typing import Annotated

from fastapi import APIRouter, Query, Request, Response

from nerve.exceptions import NerveError
from nerve.http import routers
from nerve.http.intake import Intake
from nerve.http.media import json_response
from nerve.http.problems import HTTPProblem
from nerve.http.schemas import (
    DeadLetters,
    EventIdPath,
    EventIdQuery,
    Problem,
    Purged,
    SubscriptionQuery,
    problem_responses,
)
from nerve.observe.metrics import CONTENT_TYPE

#: Seconds /readyz waits for the transport and the store to answer.
READY_TIMEOUT = 2.0


def routes(intake: Intake) -> APIRouter:
    """The operating endpoints, bound to ``intake``."""
    router = routers.router(intake)
    dlq = intake.bus.dlq

    @router.get(
        "/dlq",
        tags=["dead letters"],
        response_model=DeadLetters,
        responses=problem_responses(401, 403, 422),
        summary="Dead letters, newest first, each with every attempt's error",
    )
    async def list_dead_letters(
        request: Request,
        subscription: SubscriptionQuery = None,
        event_id: EventIdQuery = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    ) -> Response:
        intake.authorize(request.headers, admin=True)
        entries = await dlq.list(subscription=subscription, event_id=event_id, limit=limit)
        return json_response({"dead_letters": [e.model_dump(mode="json") for e in entries]})

    @router.post(
        "/dlq/{event_id}/replay",
        tags=["dead letters"],
        response_model=DeadLetters,
        responses=problem_responses(401, 403, 404, 422),
        summary="Deliver a dead event again (to the subscription that gave up on it)",
    )
    async def replay_dead_letter(
        event_id: EventIdPath, request: Request, subscription: SubscriptionQuery = None
    ) -> Response:
        intake.authorize(request.headers, admin=True)
        replayed = await dlq.replay(event_id, subscription=subscription)
        if not replayed:
            raise _no_dead_letter(event_id, subscription)
        return json_response({"dead_letters": [e.model_dump(mode="json") for e in replayed]})

    @router.delete(
        "/dlq/{event_id}",
        tags=["dead letters"],
        response_model=Purged,
        responses=problem_responses(401, 403, 404, 422),
        summary="Delete a dead letter",
    )
    async def delete_dead_letter(
        event_id: EventIdPath, request: Request, subscription: SubscriptionQuery = None
    ) -> Response:
        intake.authorize(request.headers, admin=True)
        purged = await dlq.purge(event_id, subscription=subscription)
        if not purged:
            raise _no_dead_letter(event_id, subscription)
        return json_response({"purged": purged})

    @router.get("/healthz", tags=["operations"], summary="The process answers")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @router.get(
        "/readyz",
        tags=["operations"],
        responses={503: {"model": Problem}},
        summary="The bus runs and its transport and store answer",
    )
    async def readyz() -> Response:
        bus = intake.bus
        if not bus.running:
            return HTTPProblem(503, "not_running", "the bus is not running").response()
        try:
            async with asyncio.timeout(READY_TIMEOUT):
                await bus.transport.ping()
                await dlq.list(limit=1)
        except TimeoutError:
            return HTTPProblem(
                503, "unavailable", f"no answer from the transport or store in {READY_TIMEOUT}s"
            ).response()
        except NerveError as exc:
            return HTTPProblem(503, "unavailable", str(exc)).response()
        return json_response({"status": "ready"})

    @router.get(
        "/metrics",
        tags=["operations"],
        response_class=Response,
        responses={200: {"content": {CONTENT_TYPE: {"schema": {"type": "string"}}}}},
        summary="Prometheus metrics (names start with nerve_)",
    )
    async def metrics() -> Response:
        await intake.metrics.refresh(intake.bus)  # the lag gauge is read at scrape time
        return Response(intake.metrics.render(), media_type=CONTENT_TYPE)

    return router


def _no_dead_letter(event_id: str, subscription: str | None) -> HTTPProblem:
    where = f" in {subscription!r}" if subscription else ""
    return HTTPProblem(404, "not_found", f"no dead letter for event {event_id!r}{where}")
