"""What every endpoint does before and after its own work: auth, limits, parsing, publishing.

Errors are :class:`HTTPProblem`: a status, a stable machine-readable ``error`` code, a
sentence for people, and for validation the field and reason of each error. Endpoints
catch it and answer with :meth:`HTTPProblem.response`, so the router works mounted in
any app (exception handlers belong to apps, not routers).
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Callable, Coroutine, Mapping, Sequence
from typing import Any

import orjson
from fastapi import Request, Response
from fastapi.routing import APIRoute
from pydantic import SecretStr, ValidationError

from nerve.bus import EventBus
from nerve.events import Event
from nerve.exceptions import BusClosed, BusFull, NerveError
from nerve.http.settings import HTTPSettings
from nerve.observe.metrics import Metrics

log = logging.getLogger("nerve.http")

JSON = "application/json"


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
        body: dict[str, Any] = {"error": self.error, "detail": self.detail}
        if self.errors is not None:
            body["errors"] = self.errors
        return Response(orjson.dumps(body), self.status, self.headers, media_type=JSON)


class DirectRoute(APIRoute):
    """A route whose endpoint takes the request and returns the response itself.

    FastAPI documents it from its decorator (summary, ``openapi_extra``, responses) as any
    route, but calls the endpoint directly: no dependencies solved, nothing serialised
    per request. For the hot endpoints that read and answer their bodies by hand.
    """

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        endpoint: Callable[[Request], Coroutine[Any, Any, Response]] = self.endpoint
        return endpoint


def validation_problem(exc: ValidationError, prefix: tuple[str | int, ...] = ()) -> HTTPProblem:
    """A 422 naming each invalid field and why."""
    errors = [
        {"loc": [*prefix, *e["loc"]], "msg": e["msg"], "type": e["type"]}
        for e in exc.errors(include_url=False, include_input=False, include_context=False)
    ]
    first = errors[0]
    where = ".".join(str(part) for part in first["loc"]) or "body"
    return HTTPProblem(422, "invalid", f"{where}: {first['msg']}", errors=errors)


def media_type(request: Request) -> str:
    """The request's media type without parameters, lower case ('' when absent)."""
    return media_type_of(request.headers)


def media_type_of(headers: Mapping[str, str]) -> str:
    """:func:`media_type` from the headers."""
    content_type: str = headers.get("content-type", "")
    return content_type.partition(";")[0].strip().lower()


def is_json(media: str) -> bool:
    """JSON, a +json type, or no Content-Type at all (taken as JSON)."""
    return media in ("", "application/json") or media.endswith("+json")


def json_response(body: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(body), status, media_type=JSON)


def too_deep(value: Any, limit: int) -> bool:
    """Whether objects and arrays nest deeper than ``limit`` levels in ``value``."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        children = item.values() if type(item) is dict else item if type(item) is list else ()
        for child in children:
            if type(child) is dict or type(child) is list:
                if depth + 1 > limit:
                    return True
                stack.append((child, depth + 1))
    return False


def _secret_bytes(secrets: Sequence[SecretStr]) -> list[bytes]:
    return [s.get_secret_value().encode() for s in secrets]


def matches_any(given: bytes, candidates: Sequence[bytes]) -> bool:
    """Constant-time membership: compares with every candidate, whatever matches first."""
    found = False
    for candidate in candidates:
        found |= hmac.compare_digest(given, candidate)
    return found


class Intake:
    """The state the endpoints share: the bus, the settings, the metrics.

    Args:
        bus: where accepted events go.
        settings: keys, secrets and limits.
        metrics: counts accepted events and rejected requests.
    """

    def __init__(self, bus: EventBus, settings: HTTPSettings, metrics: Metrics) -> None:
        self.bus = bus
        self.settings = settings
        self.metrics = metrics
        self._event_keys = _secret_bytes(settings.api_keys) + _secret_bytes(settings.admin_api_keys)
        self._admin_keys = _secret_bytes(settings.admin_api_keys or settings.api_keys)
        self._accepted: dict[str, Any] = {}

    # refusing

    def refuse(self, problem: HTTPProblem) -> Response:
        """Count the rejection and answer it."""
        self.metrics.http_rejected.labels(problem.error).inc()
        return problem.response()

    # checks

    def authorize(self, request: Request | Mapping[str, str], *, admin: bool = False) -> None:
        """Let the request through if it carries a key for this endpoint.

        Raises:
            HTTPProblem: 401 without a valid key, 403 with an event key at an admin
                endpoint.
        """
        if not self._event_keys:
            return  # no keys configured: open (development)
        headers = request.headers if isinstance(request, Request) else request
        header = headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise HTTPProblem(
                401,
                "unauthorized",
                "send an API key: Authorization: Bearer <key>",
                headers={"WWW-Authenticate": "Bearer"},
            )
        given = token.strip().encode()
        if admin and matches_any(given, self._admin_keys):
            return
        if not matches_any(given, self._event_keys):
            raise HTTPProblem(
                401,
                "unauthorized",
                "the API key is not valid",
                headers={"WWW-Authenticate": 'Bearer error="invalid_token"'},
            )
        if admin:
            raise HTTPProblem(403, "forbidden", "this endpoint needs an admin API key")

    async def body(self, request: Request) -> bytes:
        """The request body, refused past ``max_body_bytes`` without reading it all.

        Raises:
            HTTPProblem: 413 too large, 400 bad Content-Length.
        """
        declared = request.headers.get("content-length")
        if declared is not None:
            self.check_length(declared)
            return await request.body()  # the server holds the body to its Content-Length
        limit = self.settings.max_body_bytes
        chunks = bytearray()
        async for chunk in request.stream():
            chunks += chunk
            if len(chunks) > limit:
                raise self.too_large(len(chunks))
        return bytes(chunks)

    def check_length(self, declared: str) -> None:
        """Refuse a declared Content-Length over the limit before reading the body.

        Raises:
            HTTPProblem: 413 too large, 400 not a number.
        """
        try:
            size = int(declared)
        except ValueError:
            raise HTTPProblem(400, "bad_request", "Content-Length is not a number") from None
        if size > self.settings.max_body_bytes:
            raise self.too_large(size)

    def too_large(self, size: int) -> HTTPProblem:
        """The 413 for a body of ``size`` bytes (or more)."""
        limit = self.settings.max_body_bytes
        return HTTPProblem(
            413, "too_large", f"the body has {size} bytes or more; the limit is {limit}"
        )

    def parse(self, body: bytes) -> Any:
        """The JSON in ``body``.

        Raises:
            HTTPProblem: 400 not JSON, 422 nested past ``max_json_depth``.
        """
        if not body:
            raise HTTPProblem(400, "invalid_json", "the body is empty; send a JSON document")
        try:
            value = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise HTTPProblem(400, "invalid_json", f"the body is not valid JSON: {exc}") from None
        if too_deep(value, self.settings.max_json_depth):
            raise HTTPProblem(
                422,
                "too_deep",
                f"the JSON nests deeper than {self.settings.max_json_depth} levels",
            )
        return value

    # publishing

    async def publish(self, events: list[Event[Any]], source: str) -> None:
        """Hand the events to the transport; return once it has them all.

        Raises:
            HTTPProblem: 503 with ``Retry-After`` when the bus is saturated, stopping or
                its transport unreachable (nothing was lost: the sender retries).
        """
        timeout = self.settings.publish_timeout
        try:
            if len(events) == 1:
                await self.bus.publish(events[0], timeout=timeout)
            else:
                await self.bus.publish_many(events, timeout=timeout)
        except BusFull:
            raise self._unavailable("saturated", "the bus is saturated; retry later") from None
        except BusClosed:
            raise self._unavailable("shutting_down", "the server is shutting down") from None
        except NerveError as exc:
            log.warning("publishing %d event(s) from %s failed: %s", len(events), source, exc)
            raise self._unavailable("unavailable", f"the transport failed: {exc}") from None
        counter = self._accepted.get(source)
        if counter is None:  # labels() per request costs a lock and a hash: keep the child
            counter = self._accepted[source] = self.metrics.http_accepted.labels(source)
        counter.inc(len(events))

    def _unavailable(self, error: str, detail: str) -> HTTPProblem:
        return HTTPProblem(
            503, error, detail, headers={"Retry-After": str(self.settings.retry_after)}
        )
