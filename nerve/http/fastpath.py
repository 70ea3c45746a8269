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
from nerve.http.intake import HTTPProblem, Intake

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
            intake.authorize(headers)
            body = await self._body(headers, receive)
            if scope["path"] == "/events":
                response = await accept_event(intake, headers, scope["query_string"], body)
            else:
                response = await accept_batch(intake, headers, body)
        except HTTPProblem as problem:
            response = intake.refuse(problem)
        except Exception:
            # Outside the framework's error middleware (create_app's direct path): a logged
            # 500, as that middleware would give, rather than a dropped connection.
            log.exception("intake failed on %s %s", scope["method"], scope["path"])
            response = HTTPProblem(500, "internal_error", "the server failed; try again").response()
        await response(scope, receive, send)

    async def _body(self, headers: Headers, receive: Receive) -> bytes:
        """The body, refused past the limit (on Content-Length, or while streaming)."""
        intake = self.intake
        declared = headers.get("content-length")
        if declared is not None:
            intake.check_length(declared)
        chunks: list[bytes] = []
        size = 0
        limit = intake.settings.max_body_bytes
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise HTTPProblem(400, "bad_request", "the client went away mid-body")
            chunk: bytes = message.get("body", b"")
            if chunk:
                size += len(chunk)
                if size > limit:
                    raise intake.too_large(size)
                chunks.append(chunk)
            if not message.get("more_body", False):
                return chunks[0] if len(chunks) == 1 else b"".join(chunks)


_PATHS = frozenset({"/events", "/events/batch"})


def handles(scope: Scope) -> bool:
    """Whether the request is one the fast path answers."""
    return scope["type"] == "http" and scope["method"] == "POST" and scope["path"] in _PATHS
