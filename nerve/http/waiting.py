"""Runs that wait, and the approvals people decide: ``GET /waits``, ``GET /approvals``,
``POST /approvals/{approval_id}``.

Every one takes an admin key, as ``/dlq`` does: a wait's match and an approval's payload
are whatever the handler put there. A decision's body is read by hand, as ``/events``
reads its own, so the key is checked before anything of the body is, and a body must say
it is JSON: a page of another site cannot post one without the browser asking first (see
:func:`~nerve.http.media.is_json`).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Path, Query, Request, Response
from pydantic import ValidationError
from pydantic_core import to_jsonable_python

from nerve import constants
from nerve.approvals import ApprovalClosed, decide, pending_approvals
from nerve.exceptions import BusClosed, NerveError
from nerve.http import routers
from nerve.http.intake import Intake
from nerve.http.media import is_json, json_response, media_type_of
from nerve.http.problems import HTTPProblem, validation_problem
from nerve.http.schemas import (
    Approvals,
    Decision,
    DecisionIn,
    EventIdQuery,
    Problem,
    SubscriptionQuery,
    Waits,
    json_body,
    problem_responses,
)
from nerve.records import WaitRecord

ApprovalIdPath = Annotated[
    str,
    Path(
        pattern=constants.PRINTABLE_RE,
        max_length=255,
        description="The approval's id, as GET /approvals lists it.",
    ),
]
LimitQuery = Annotated[int, Query(ge=1, le=1000, description="At most this many, oldest first.")]


def routes(intake: Intake) -> APIRouter:
    """The waiting and approval endpoints, bound to ``intake``."""
    router = routers.router(intake)
    bus = intake.bus
    decision_schema = DecisionIn.model_json_schema()

    @router.get(
        "/waits",
        tags=["waiting"],
        response_model=Waits,
        responses=problem_responses(401, 403, 422),
        summary="Runs suspended in wait_for, oldest first: what for, since and until when",
    )
    async def list_waits(
        request: Request,
        subscription: SubscriptionQuery = None,
        event_id: EventIdQuery = None,
        event_type: Annotated[
            str | None,
            Query(pattern=constants.PRINTABLE_RE, description="Only waits for this event type."),
        ] = None,
        limit: LimitQuery = 100,
    ) -> Response:
        intake.authorize(request.headers, admin=True)
        found = await bus.waits(
            subscription=subscription, event_id=event_id, event_type=event_type, limit=limit
        )
        return json_response({"waits": [wait_view(w) for w in found]})

    @router.get(
        "/approvals",
        tags=["approvals"],
        response_model=Approvals,
        responses=problem_responses(401, 403, 422),
        summary="Pending approvals, oldest first",
    )
    async def list_approvals(request: Request, limit: LimitQuery = 100) -> Response:
        intake.authorize(request.headers, admin=True)
        pending = await pending_approvals(bus, limit=limit)
        return json_response({"approvals": [p.model_dump(mode="json") for p in pending]})

    @router.post(
        "/approvals/{approval_id}",
        tags=["approvals"],
        response_model=Decision,
        responses={
            **problem_responses(400, 401, 403, 408, 413, 415, 422, 503),
            409: {
                "model": Problem,
                "description": "The approval is not pending: decided already, timed out, "
                "cancelled or never asked. The first decision stands.",
            },
        },
        openapi_extra=json_body(decision_schema, "application/json"),
        summary="Approve or reject a pending approval: the waiting run resumes with it",
    )
    async def decide_approval(approval_id: ApprovalIdPath, request: Request) -> Response:
        """Decide once: the run waiting for it resumes with the decision, on any worker.

        The body is ``{"decision": "approve" | "reject", "by": ..., "comment": ...}``.
        """
        intake.authorize(request.headers, admin=True)
        body = await intake.body(request.headers, request.receive)
        media = media_type_of(request.headers)
        if not is_json(media):
            raise HTTPProblem(
                415,
                "unsupported_media_type",
                "send the decision as JSON: Content-Type: application/json",
            )
        try:
            wanted = DecisionIn.model_validate(intake.parse(body))
        except ValidationError as exc:
            raise validation_problem(exc, ("body",)) from None
        try:
            decision = await decide(
                bus,
                approval_id,
                approved=wanted.decision == "approve",
                by=wanted.by,
                comment=wanted.comment,
            )
        except ApprovalClosed as exc:
            raise HTTPProblem(409, "approval_closed", str(exc)) from None
        except BusClosed:
            raise _unavailable(intake, "shutting_down", "the server is shutting down") from None
        except NerveError as exc:
            raise _unavailable(intake, "unavailable", f"the bus failed: {exc}") from None
        return json_response(decision.model_dump(mode="json"))

    return router


def wait_view(wait: WaitRecord) -> dict[str, object]:
    """A waiting run as ``GET /waits`` shows it (:class:`~nerve.http.schemas.WaitOut`)."""
    return {
        "subscription": wait.subscription,
        "event_id": wait.event.event_id,
        "event_type": wait.event.event_type,
        "name": wait.name,
        "awaited": wait.event_type,
        "match": to_jsonable_python(wait.match),
        "since": _iso(wait.since),
        "deadline": None if wait.deadline is None else _iso(wait.deadline),
        "info": to_jsonable_python(wait.info, fallback=str),
    }


def _iso(unix: float) -> str:
    return datetime.fromtimestamp(unix, UTC).isoformat()


def _unavailable(intake: Intake, error: str, detail: str) -> HTTPProblem:
    return HTTPProblem(
        503, error, detail, headers={"Retry-After": str(intake.settings.retry_after)}
    )
