"""The routers every endpoint module builds on: whatever an endpoint fails with is answered here.

A router's route class wraps each of its endpoints (FastAPI's documented way to act on
every request of a router), so the routers work mounted in any app: exception handlers
belong to apps, not routers. An endpoint raises :class:`~nerve.http.problems.HTTPProblem`
and the route class hands it to :meth:`~nerve.http.intake.Intake.answer`; a parameter
FastAPI finds invalid becomes the same 422 problem, and an unexpected failure a logged 500
with a problem body, never the framework's plain-text one.

A ``GET`` route answers ``HEAD`` too (the headers of the ``GET`` answer, no body), as
Starlette's own routes do; the OpenAPI schema lists ``GET`` alone.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException
from starlette.routing import Match
from starlette.types import Receive, Scope, Send

from nerve.http.intake import Intake
from nerve.http.problems import errors_problem, internal_error

log = logging.getLogger("nerve.http")

Handler = Callable[[Request], Coroutine[Any, Any, Response]]


def router(intake: Intake, *, direct: bool = False, **options: Any) -> APIRouter:
    """An ``APIRouter`` whose endpoints' failures ``intake`` answers.

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
                try:
                    return await intake.answer(handler(request))
                except RequestValidationError as exc:
                    return intake.refuse(errors_problem(exc.errors()))
                except HTTPException:
                    raise  # the framework's own (404, 405), answered by the app
                except Exception:
                    log.exception("%s %r failed", request.method, request.url.path)
                    return intake.refuse(internal_error())

            return answer

        def matches(self, scope: Scope) -> tuple[Match, Scope]:
            return super().matches(_as_get(scope, self.methods))

        async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
            await super().handle(_as_get(scope, self.methods), receive, send)

    return APIRouter(route_class=IntakeRoute, **options)


def _as_get(scope: Scope, methods: set[str] | None) -> Scope:
    """A ``HEAD`` request to a ``GET`` route as the ``GET`` it asks the headers of.

    A copy: the server keeps the request's own scope, sees ``HEAD`` there and sends no body.
    """
    if scope.get("method") == "HEAD" and methods and "GET" in methods:
        return {**scope, "method": "GET"}
    return scope
