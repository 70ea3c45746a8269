"""The two intake endpoints answered below the framework, for throughput.

``POST /events`` and ``POST /events/batch`` are what senders hit thousands of times a
second; everything else is occasional. :class:`IntakeFastPath` is a plain ASGI
middleware that answers those two straight from the ASGI scope, with the very functions
the FastAPI routes call (:func:`~nerve.http.events.accept_event` and
:func:`~nerve.http.events.accept_batch`), and hands every other request to the app it
wraps. The routes stay registered, so the OpenAPI schema describes them and
:func:`nerve.http.router` serves them when mounted in another app.
:func:`nerve.http.create_app` composes its FastAPI app with it (see ``nerve.http.app``).
An unexpected error is a logged 500 with a problem body, never a dropped connection.
"""

from __future__ import annotations

import logging

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Receive, Scope, Send

from nerve.http.events import accept_batch, accept_event
from nerve.http.intake import Intake
from nerve.http.problems import internal_error

log = logging.getLogger("nerve.http")

#: The paths the fast path answers (``POST`` only).
PATHS = frozenset({"/events", "/events/batch"})


class IntakeFastPath:
    """ASGI middleware answering ``POST /events`` and ``POST /events/batch`` itself.

    Args:
        app: the rest of the application, for every other request.
        intake: the state the endpoints share.
    """

    def __init__(self, app: ASGIApp, intake: Intake) -> None:
        self.app = app
        self.intake = intake

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST" or scope["path"] not in PATHS:
            await self.app(scope, receive, send)
            return
        intake = self.intake
        headers = Headers(scope=scope)
        try:
            if scope["path"] == "/events":
                work = accept_event(intake, headers, scope["query_string"], receive)
            else:
                work = accept_batch(intake, headers, receive)
            response = await intake.answer(work)
        except Exception:
            # Answered here, with the problem body every other answer has: the framework's
            # error middleware would answer in plain text, or not at all when this runs
            # ahead of it.
            log.exception("intake failed on %s %r", scope["method"], scope["path"])
            response = internal_error().response()
        if intake.origins.cors:  # a page of an allowed origin reads the answer
            response.headers.update(intake.origins.cors_headers(headers))
        await response(scope, receive, send)
