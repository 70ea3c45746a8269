"""``Intake``: what every endpoint shares, and the two ends of a request through it.

The bus, the settings, the API keys, the allowed origins and the metrics; at one end the
one refusal path (an :class:`~nerve.http.problems.HTTPProblem` counted and answered), at
the other the publish of what was accepted.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Mapping
from typing import Any

from fastapi import Response
from starlette.types import Receive

from nerve.bus import EventBus
from nerve.events import Event
from nerve.exceptions import BusClosed, BusFull, NerveError
from nerve.http.bodies import BodyDeadlines, parse_json, read_body
from nerve.http.keys import APIKeys
from nerve.http.origins import Origins
from nerve.http.problems import HTTPProblem
from nerve.http.settings import HTTPSettings
from nerve.observe.metrics import Metrics

log = logging.getLogger("nerve.http")


class Intake:
    """The state the endpoints share: the bus, the settings, the keys, the metrics.

    Args:
        bus: where accepted events go.
        settings: keys, secrets and limits.
        metrics: counts accepted events and rejected requests.
    """

    def __init__(self, bus: EventBus, settings: HTTPSettings, metrics: Metrics) -> None:
        self.bus = bus
        self.settings = settings
        self.metrics = metrics
        self.keys = APIKeys(settings)
        self.origins = Origins(settings.allowed_origins, keyless=self.keys.open)
        self.deadlines = BodyDeadlines(settings.body_timeout)
        self._accepted: dict[str, Any] = {}

    # refusing

    def refuse(self, problem: HTTPProblem) -> Response:
        """Count the rejection and answer it."""
        self.metrics.http_rejected.labels(problem.error).inc()
        return problem.response()

    async def answer(self, work: Awaitable[Response]) -> Response:
        """The response ``work`` ends with, or its refusal if it raised an HTTPProblem.

        The one path from a refused request to its answer: the route class of every
        router and the fast path both end here.
        """
        try:
            return await work
        except HTTPProblem as problem:
            return self.refuse(problem)

    # checks

    def authorize(self, headers: Mapping[str, str], *, admin: bool = False) -> None:
        """Let the request through if no foreign page sent it and it carries a key for
        this endpoint.

        Raises:
            HTTPProblem: 403 from a page of a foreign origin, 401 without a valid key,
                403 with an event key at an admin endpoint.
        """
        self.origins.check(headers)
        self.keys.authorize(headers, admin=admin)

    async def body(self, headers: Mapping[str, str], receive: Receive) -> bytes:
        """The request body, refused past ``max_body_bytes`` without reading it all, or
        when it takes longer than ``body_timeout``.

        Raises:
            HTTPProblem: 413 too large, 408 too slow, 400 bad Content-Length.
        """
        return await read_body(headers, receive, self.settings.max_body_bytes, self.deadlines)

    def parse(self, body: bytes) -> Any:
        """The JSON in ``body``.

        Raises:
            HTTPProblem: 400 not JSON, 422 nested past ``max_json_depth``.
        """
        return parse_json(body, self.settings.max_json_depth)

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
