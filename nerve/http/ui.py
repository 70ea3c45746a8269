"""The dashboard: ``GET /ui``, its script and stylesheet, and the JSON and SSE it reads.

The page and its files are public (they hold no data); everything under ``/ui/api`` takes
an admin key (``Authorization: Bearer``), as ``/dlq`` does: the feed shows every event.
The page also uses ``GET /dlq``, ``POST /dlq/{event_id}/replay``, ``GET /waits``,
``GET /approvals`` and ``POST /approvals/{approval_id}``. None of its own routes
is in the OpenAPI schema: they serve the page and may change with it.

Routes:
    ``GET /ui``: the page. ``GET /ui/app.js``, ``/ui/app.css``: its files.
    ``GET /ui/api/feed?after=&pattern=&seconds=&watch=``: the live feed, ``text/event-stream``
    (:mod:`nerve.http.feed`). ``GET /ui/api/subscriptions``: each subscription with its
    counts, rates and lag. ``GET /ui/api/events/{event_id}``: one event as the feed shows
    it. ``GET /ui/api/trace/{correlation_id}``: the chain as trees, payloads included.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from importlib import resources
from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, Request, Response
from fastapi.responses import StreamingResponse
from prometheus_client import Counter

from nerve.exceptions import NerveError
from nerve.http import routers
from nerve.http.feed import Feed, tree, view
from nerve.http.intake import Intake
from nerve.http.media import json_response
from nerve.http.problems import HTTPProblem
from nerve.observe.metrics import Metrics
from nerve.routing import validate_pattern

#: The page's files, by the name it asks for: nothing else under static/ is served.
FILES = {
    "index.html": "text/html; charset=utf-8",
    "app.js": "text/javascript; charset=utf-8",
    "app.css": "text/css; charset=utf-8",
}
#: The page runs only its own script and style and talks only to this server.
PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; "
    "img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'; "
    "frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}
#: Rates are counter deltas over at most this many seconds.
RATE_WINDOW = 60.0
#: Seconds ``/ui/api/subscriptions`` waits for each subscription's lag.
LAG_TIMEOUT = 1.0
#: How long one feed response lasts by default, and at most. The page then reconnects from
#: its cursor at once: short responses keep an open dashboard from holding up a server that
#: stops (uvicorn waits for open responses before its lifespan shutdown).
FEED_SECONDS = 10.0
FEED_SECONDS_MAX = 300.0
#: Most event ids a feed request may ask to keep following (``watch``).
WATCH_IDS = 200


def _read(name: str) -> bytes:
    return resources.files("nerve.http").joinpath("static", name).read_bytes()


def _total_by_subscription(counter: Counter) -> dict[str, float]:
    totals: dict[str, float] = {}
    for metric in counter.collect():
        for sample in metric.samples:
            if sample.name.endswith("_total"):
                name = sample.labels["subscription"]
                totals[name] = totals.get(name, 0.0) + sample.value
    return totals


class Rates:
    """Per-subscription rates from this process's counters, over a sliding window.

    Each call of :meth:`sample` reads the counters; a rate is the change since the oldest
    reading in the window, per second (None until there are two readings).
    """

    def __init__(self, metrics: Metrics, window: float = RATE_WINDOW) -> None:
        self._metrics = metrics
        self._window = window
        self._readings: deque[tuple[float, dict[str, tuple[float, float, float]]]] = deque()

    def sample(self) -> dict[str, dict[str, Any]]:
        """Name -> handled, failed, dead_lettered totals and handled/failed per second."""
        m = self._metrics
        handled = _total_by_subscription(m.events_handled)
        failed = _total_by_subscription(m.events_failed)
        dead = _total_by_subscription(m.events_dead_lettered)
        now = time.monotonic()
        totals = {
            name: (handled.get(name, 0.0), failed.get(name, 0.0), dead.get(name, 0.0))
            for name in handled.keys() | failed.keys() | dead.keys()
        }
        readings = self._readings
        readings.append((now, totals))
        while len(readings) > 2 and readings[1][0] <= now - self._window:
            readings.popleft()
        then, before = readings[0]
        elapsed = now - then
        result: dict[str, dict[str, Any]] = {}
        for name, (h, f, d) in totals.items():
            h0, f0, _ = before.get(name, (0.0, 0.0, 0.0))
            result[name] = {
                "handled": int(h),
                "failed": int(f),
                "dead_lettered": int(d),
                "handled_per_second": (h - h0) / elapsed if elapsed > 0 else None,
                "failed_per_second": (f - f0) / elapsed if elapsed > 0 else None,
            }
        return result


def routes(intake: Intake) -> APIRouter:
    """The dashboard's routes, bound to ``intake``."""
    router = routers.router(intake, include_in_schema=False)
    bus = intake.bus
    rates = Rates(intake.metrics)
    files: dict[str, bytes] = {}

    def serve(name: str) -> Response:
        if name not in files:
            files[name] = _read(name)
        return Response(files[name], media_type=FILES[name], headers=PAGE_HEADERS)

    @router.get("/ui")
    async def page() -> Response:
        return serve("index.html")

    @router.get("/ui/app.js")
    async def script() -> Response:
        return serve("app.js")

    @router.get("/ui/app.css")
    async def stylesheet() -> Response:
        return serve("app.css")

    @router.get("/ui/api/feed")
    async def feed(
        request: Request,
        after: str | None = None,
        pattern: str | None = None,
        seconds: Annotated[float, Query(gt=0, le=FEED_SECONDS_MAX)] = FEED_SECONDS,
        watch: str = "",
        last_event_id: Annotated[str | None, Header()] = None,
    ) -> Response:
        intake.authorize(request.headers, admin=True)
        pattern = _pattern(pattern)
        watched = _ids(watch)
        stream = Feed(
            bus.history,
            after=after or last_event_id,
            pattern=pattern,
            seconds=seconds,
            watch=watched,
        )
        return StreamingResponse(
            stream.stream(),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
        )

    @router.get("/ui/api/subscriptions")
    async def subscriptions(request: Request) -> Response:
        intake.authorize(request.headers, admin=True)
        try:
            declared = await bus.history.subscriptions()
        except NerveError as exc:
            return HTTPProblem(503, "unavailable", str(exc)).response()
        declared.update({name: sub.pattern for name, sub in bus.subscriptions.items()})
        counts = rates.sample()
        names = sorted(declared)
        lags = await asyncio.gather(*(_lag(bus.transport, name) for name in names))
        zero = {"handled": 0, "failed": 0, "dead_lettered": 0}
        rows = [
            {
                "name": name,
                "pattern": declared[name],
                "handled_per_second": None,
                "failed_per_second": None,
                **zero,
                **counts.get(name, {}),
                "lag": lag,
            }
            for name, lag in zip(names, lags, strict=True)
        ]
        return json_response({"subscriptions": rows, "rate_window_seconds": RATE_WINDOW})

    @router.get("/ui/api/events/{event_id}")
    async def event(event_id: str, request: Request) -> Response:
        intake.authorize(request.headers, admin=True)
        try:
            record = await bus.history.event(event_id)
            if record is None:
                raise HTTPProblem(404, "not_found", f"no event {event_id!r} in the event log")
            declared = await bus.history.subscriptions()
        except NerveError as exc:
            return HTTPProblem(503, "unavailable", str(exc)).response()
        return json_response(view(record, declared))

    @router.get("/ui/api/trace/{correlation_id}")
    async def trace(correlation_id: str, request: Request) -> Response:
        intake.authorize(request.headers, admin=True)
        try:
            roots = await bus.history.trace(correlation_id)
            declared = await bus.history.subscriptions()
        except NerveError as exc:
            return HTTPProblem(503, "unavailable", str(exc)).response()
        return json_response(
            {"correlation_id": correlation_id, "roots": [tree(r, declared) for r in roots]}
        )

    return router


def _pattern(pattern: str | None) -> str | None:
    if not pattern:
        return None
    try:
        return validate_pattern(pattern)
    except NerveError as exc:
        raise HTTPProblem(422, "invalid", f"pattern: {exc}") from None


def _ids(watch: str) -> list[str]:
    ids = [i for i in watch.split(",") if i]
    if len(ids) > WATCH_IDS or any(len(i) > 255 for i in ids):
        raise HTTPProblem(422, "invalid", f"watch: at most {WATCH_IDS} comma-separated event ids")
    return ids


async def _lag(transport: Any, subscription: str) -> int | None:
    """The subscription's backlog, if the transport can tell (None otherwise or on error)."""
    lag = getattr(transport, "lag", None)
    if lag is None:
        return None
    try:
        async with asyncio.timeout(LAG_TIMEOUT):
            found = await lag(subscription)
    except (NerveError, TimeoutError, NotImplementedError):
        return None
    return found if isinstance(found, int) else None
