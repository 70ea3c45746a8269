"""The two intake endpoints answered below the framework, for throughput.

``POST /events`` and ``POST /events/batch`` are what senders hit thousands of times a
second; everything else is occasional. This ASGI middleware answers those two straight
from the ASGI scope, with the very functions the FastAPI routes call
(:func:`~nerve.http.events.accept_event` and :func:`~nerve.http.events.accept_batch`),
and hands every other request to the app. The routes stay registered, so the OpenAPI
schema describes them and :func:`nerve.http.router` serves them when mounted in another
app; :func:`nerve.http.create_app` puts this in front. It sits inside Starlette's error
middleware, so an unexpected error is still a logged 500, never a dropped connection.
"""

from __future__ import annotations

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Receive, Scope, Send

from nerve.http.events import accept_batch, accept_event
from nerve.http.intake import HttpProblem, Intake


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
        path = scope.get("path")
        if scope["type"] != "http" or scope["method"] != "POST" or path not in _PATHS:
            await self.app(scope, receive, send)
            return
        intake = self.intake
        headers = Headers(scope=scope)
        try:
            intake.authorize(headers)
            body = await self._body(headers, receive)
            if path == "/events":
                response = await accept_event(intake, headers, scope["query_string"], body)
            else:
                response = await accept_batch(intake, headers, body)
        except HttpProblem as problem:
            response = intake.refuse(problem)
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
                raise HttpProblem(400, "bad_request", "the client went away mid-body")
            chunk: bytes = message.get("body", b"")
            if chunk:
                size += len(chunk)
                if size > limit:
                    raise intake.too_large(size)
                chunks.append(chunk)
            if not message.get("more_body", False):
                return chunks[0] if len(chunks) == 1 else b"".join(chunks)


_PATHS = frozenset({"/events", "/events/batch"})
