"""``HTTPProblem``: a request refused, and the one place it becomes a JSON error response.

A problem is a status, a stable machine-readable ``error`` code, a sentence for people,
and for validation the field and reason of each error. Endpoints raise it; the route
class (:mod:`nerve.http.routes`) and the fast path (:mod:`nerve.http.fastpath`) hand it
to :meth:`~nerve.http.intake.Intake.refuse`, which counts it and answers with
:meth:`HTTPProblem.response`, so the routers work mounted in any app (exception handlers
belong to apps, not routers).
"""

from __future__ import annotations

from typing import Any

from fastapi import Response
from pydantic import ValidationError

from nerve.http.media import json_response


class HTTPProblem(Exception):
    """A request refused: becomes a JSON error response (never a 500 for bad input).

    Args:
        status: the HTTP status.
        error: a stable code, also the ``reason`` label of the rejection metric.
        detail: what went wrong and how to fix it.
        errors: per-field errors (``loc``, ``msg``, ``type``) for validation failures.
        headers: extra response headers (``Retry-After``, ``WWW-Authenticate``).
    """

    def __init__(
        self,
        status: int,
        error: str,
        detail: str,
        *,
        errors: list[dict[str, Any]] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.error = error
        self.detail = detail
        self.errors = errors
        self.headers = headers

    def response(self) -> Response:
        """The JSON error response: ``{"error", "detail"[, "errors"]}`` with the headers."""
        body: dict[str, Any] = {"error": self.error, "detail": self.detail}
        if self.errors is not None:
            body["errors"] = self.errors
        return json_response(body, self.status, self.headers)


def validation_problem(exc: ValidationError, prefix: tuple[str | int, ...] = ()) -> HTTPProblem:
    """A 422 naming each invalid field and why."""
    errors = [
        {"loc": [*prefix, *e["loc"]], "msg": e["msg"], "type": e["type"]}
        for e in exc.errors(include_url=False, include_input=False, include_context=False)
    ]
    first = errors[0]
    where = ".".join(str(part) for part in first["loc"]) or "body"
    return HTTPProblem(422, "invalid", f"{where}: {first['msg']}", errors=errors)


def internal_error() -> HTTPProblem:
    """The 500 for a failure of nerve's own (a bug, not bad input)."""
    return HTTPProblem(500, "internal_error", "the server failed; try again")
