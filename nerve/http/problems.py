"""``HTTPProblem``: a request refused, and the one place it becomes a JSON error response.

A problem is a status, a stable machine-readable ``error`` code, a sentence for people,
and for validation the field and reason of each error. Endpoints raise it; the route
class (:mod:`nerve.http.routers`) and the fast path (:mod:`nerve.http.fastpath`) hand it
to :meth:`~nerve.http.intake.Intake.refuse`, which counts it and answers with
:meth:`HTTPProblem.response`, so the routers work mounted in any app (exception handlers
belong to apps, not routers).

Validation errors say what a pattern means in words, never the regex itself.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from types import MappingProxyType
from typing import Any

from fastapi import Response
from pydantic import ValidationError

from nerve import constants
from nerve.events import real_errors
from nerve.http.media import json_response

#: The rule behind each pattern the app validates with, in words.
PATTERN_WORDS = {
    constants.PRINTABLE_RE: "must be printable: no control characters or line breaks",
    constants.EVENT_TYPE_RE: "must be dot-separated segments of lower-case letters, digits, "
    "_ and - (e.g. support.ticket.created)",
}
#: The words for a string that is not printable, whichever field it is.
NOT_PRINTABLE = PATTERN_WORDS[constants.PRINTABLE_RE]
_PRINTABLE = re.compile(constants.PRINTABLE_RE)
_SAME_NAMES: Mapping[str, str] = MappingProxyType({})


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


def validation_problem(
    exc: ValidationError, prefix: tuple[str | int, ...] = (), names: Mapping[str, str] = _SAME_NAMES
) -> HTTPProblem:
    """A 422 naming each invalid field and why.

    Args:
        exc: what pydantic found.
        prefix: where the validated value sits in the request (``("body", 3)``).
        names: the request's names for model fields (a CloudEvent's ``id`` is the
            event's ``event_id``), so the errors name what the sender sent.
    """
    return errors_problem(exc.errors(include_url=False, include_input=False), prefix, names)


def errors_problem(
    found: Iterable[Mapping[str, Any]],
    prefix: tuple[str | int, ...] = (),
    names: Mapping[str, str] = _SAME_NAMES,
) -> HTTPProblem:
    """A 422 from pydantic-style errors (``loc``, ``msg``, ``type``, ``ctx``)."""
    errors = []
    for error in real_errors(found):
        loc = [
            *prefix,
            *(names.get(part, part) if type(part) is str else part for part in error["loc"]),
        ]
        msg = error["msg"]
        words = PATTERN_WORDS.get((error.get("ctx") or {}).get("pattern", ""))
        if error["type"] == "string_pattern_mismatch" and words:
            msg = f"{field_name(loc)} {words}"
        errors.append({"loc": loc, "msg": msg, "type": error["type"]})
    if not errors:  # cannot happen with pydantic's errors; never an empty 422 all the same
        return HTTPProblem(422, "invalid", "the request is not valid")
    first = errors[0]
    where = ".".join(str(part) for part in first["loc"]) or "body"
    return HTTPProblem(422, "invalid", f"{where}: {first['msg']}", errors=errors)


def field_name(loc: Iterable[str | int]) -> str:
    """The innermost name in ``loc`` (``["body", 3, "event_id"]`` -> ``event_id``)."""
    named = [part for part in loc if type(part) is str]
    return named[-1] if named else "the value"


def require_printable(value: str, loc: list[str | int]) -> None:
    """Refuse a request-supplied string that would reach an event or a log with a control
    character or a line break in it (a newline would let a sender write a fake log line).

    Raises:
        HTTPProblem: 422 naming the field, in words.
    """
    if not _PRINTABLE.match(value):
        raise not_printable(loc)


def not_printable(loc: list[str | int]) -> HTTPProblem:
    """The 422 for a request-supplied string with a control character or a line break."""
    msg = f"{field_name(loc)} {NOT_PRINTABLE}"
    where = ".".join(str(part) for part in loc)
    return HTTPProblem(
        422,
        "invalid",
        f"{where}: {msg}",
        errors=[{"loc": loc, "msg": msg, "type": "string_pattern_mismatch"}],
    )


def internal_error() -> HTTPProblem:
    """The 500 for a failure of nerve's own (a bug, not bad input)."""
    return HTTPProblem(500, "internal_error", "the server failed; try again")
