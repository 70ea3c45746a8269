"""The routers every endpoint module builds on: an endpoint's HTTPProblem is refused here.

A router's route class wraps each of its endpoints (FastAPI's documented way to act on
every request of a router), so the routers work mounted in any app: exception handlers
belong to apps, not routers. An endpoint raises :class:`~nerve.http.problems.HTTPProblem`
and the route class hands it to :meth:`~nerve.http.intake.Intake.answer`.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.routing import APIRoute

from nerve.http.intake import Intake

Handler = Callable[[Request], Coroutine[Any, Any, Response]]


def router(intake: Intake, *, direct: bool = False, **options: Any) -> APIRouter:
    """An ``APIRouter`` whose endpoints' HTTPProblems ``intake`` refuses.

    Args:
        intake: counts and answers the refusals.
        direct: the endpoints take the request and return the response themselves.
            FastAPI documents such a route from its decorator (summary,
            ``openapi_extra``, responses) as any route, but calls the endpoint directly:
            no dependencies solved, nothing serialised per request. For the hot
            endpoints that read and answer their bodies by hand.
        options: passed to ``APIRouter`` (``tags``, ``include_in_schema``).
    """

    class IntakeRoute(APIRoute):
        def get_route_handler(self) -> Handler:
            handler: Handler = self.endpoint if direct else super().get_route_handler()

            async def answer(request: Request) -> Response:
                return await intake.answer(handler(request))

            return answer

    return APIRouter(route_class=IntakeRoute, **options)
