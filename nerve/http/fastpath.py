"""The two intake endpoints answered below the framework, for throughput.

``POST /events`` and ``POST /events/batch`` are what senders hit thousands of times a
second; everything else is occasional. This ASGI middleware answers those two straight
from the ASGI scope, with the very functions the FastAPI routes call
(:func:`~nerve.http.events.accept_event` and :func:`~nerve.http.events.accept_batch`),
and hands every other request to the app. The routes stay registered, so the OpenAPI
schema describes them and :func:`nerve.http.router` serves them when mounted in another
app; :func:`nerve.http.create_app` puts this in front: ahead of the whole middleware
stack when nothing else stands there, as middleware otherwise (see ``nerve.http.app``).
Either way an unexpected error is a logged 500 with a problem body, never a dropped
connection.
"""

from __future__ import annotations

import logging

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Receive, Scope, Send

from nerve.http.events import accept_batch, accept_event
from nerve.http.intake import Intake
from nerve.http.problems import internal_error

log = logging.getLogger("nerve.http")


class IntakeFastPath:
    """ASGI middleware answering ``POST /events`` and ``POST /events/batch`` itself.

    Args:
        app: the rest of the application.
        intake: the state the endpoints share.
    """

    def __init__(self, app: ASGIApp, intake: Intake) -> None:
        self.app = app
        self.intake = intake

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if handles(scope):
            await self.answer(scope, receive, send)
        else:
            await self.app(scope, receive, send)

    async def answer(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Answer one intake request (one that :func:`handles`)."""
        intake = self.intake
        headers = Headers(scope=scope)
        try:
            if scope["path"] == "/events":
                work = accept_event(intake, headers, scope["query_string"], receive)
            else:
                work = accept_batch(intake, headers, receive)
            response = await intake.answer(work)
        except Exception:
            # Outside the framework's error middleware (create_app's direct path): a logged
            # 500, as that middleware would give, rather than a dropped connection.
            log.exception("intake failed on %s %s", scope["method"], scope["path"])
            response = internal_error().response()
        await response(scope, receive, send)


_PATHS = frozenset({"/events", "/events/batch"})


def handles(scope: Scope) -> bool:
    """Whether the request is one the fast path answers."""
    return scope["type"] == "http" and scope["method"] == "POST" and scope["path"] in _PATHS
