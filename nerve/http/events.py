"""``POST /events``, ``POST /events/batch`` and ``GET /events/{event_id}``.

``POST /events`` takes an event in any of these forms, told apart by the request:

- nerve's JSON (``application/json``): ``{"event_type", "payload", ...}``;
- the seed's form: ``?event_type=...`` with the payload as the JSON body;
- CloudEvents 1.0 structured mode (``application/cloudevents+json``), binary mode
  (``ce-*`` headers, the data as the body) and batch mode
  (``application/cloudevents-batch+json``, also taken by ``/events/batch``).

Each answers 202 once the transport has the event, before any handler runs.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import unquote

from fastapi import APIRouter, Request, Response
from pydantic import ValidationError
from starlette.datastructures import QueryParams
from starlette.types import Receive

from nerve import constants
from nerve.events import PARSED_JSON, Event
from nerve.http import routers
from nerve.http.intake import Intake
from nerve.http.media import is_json, json_response, media_type_of
from nerve.http.problems import HTTPProblem, validation_problem
from nerve.http.schemas import (
    Accepted,
    BatchAccepted,
    EventIn,
    EventStatusOut,
    problem_responses,
    request_body,
)

CE_JSON = "application/cloudevents+json"
CE_BATCH = "application/cloudevents-batch+json"
#: Event fields that may be sent as null to mean "fill it in".
_DEFAULTED = ("event_id", "correlation_id", "timestamp")
#: CloudEvents attributes every event must carry (spec 1.0, "REQUIRED Attributes").
_CE_REQUIRED = ("specversion", "id", "source", "type")


#: Bodies come from orjson: their payloads are JSON without checking again.
_FROM_JSON = {PARSED_JSON: True}
_BY_ID = {"parameters": {"event_id": "$response.body#/event_id"}}
_CE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": list(_CE_REQUIRED),
    "properties": {
        "specversion": {"const": "1.0"},
        "id": {
            "type": "string",
            "minLength": 1,
            "maxLength": 255,
            "pattern": constants.PRINTABLE_RE,
        },
        "source": {
            "type": "string",
            "minLength": 1,
            "maxLength": 2048,
            "pattern": constants.PRINTABLE_RE,
        },
        "type": {"type": "string", "pattern": constants.EVENT_TYPE_RE, "maxLength": 255},
        "data": {},
    },
}


_CE_BATCH_SCHEMA: dict[str, Any] = {"type": "array", "items": _CE_SCHEMA, "minItems": 1}
#: The seed's form: the event's fields in the query, the payload as the body.
_SEED_QUERY = ("event_type", "event_id", "source", "correlation_id")


def event_from_json(data: Any, loc: tuple[str | int, ...] = ()) -> Event[Any]:
    """An event from nerve's JSON form.

    Raises:
        HTTPProblem: 422 naming the invalid fields.
    """
    if type(data) is not dict:
        raise HTTPProblem(
            422,
            "invalid",
            "an event is a JSON object with event_type and payload",
            errors=[{"loc": [*loc], "msg": "expected an object", "type": "dict_type"}],
        )
    for key in _DEFAULTED:
        if key in data and data[key] is None:
            del data[key]
    try:
        return Event.model_validate(data, context=_FROM_JSON)
    except ValidationError as exc:
        raise validation_problem(exc, ("body", *loc)) from None


def event_from_cloudevent(ce: Any, loc: tuple[str | int, ...] = ()) -> Event[Any]:
    """An event from a CloudEvents 1.0 structured-mode object with JSON data.

    Raises:
        HTTPProblem: 422 for a missing attribute, another specversion, non-JSON data.
    """
    if type(ce) is not dict:
        raise HTTPProblem(422, "invalid", "a CloudEvent is a JSON object")
    missing = [attr for attr in _CE_REQUIRED if not ce.get(attr)]
    if missing:
        raise HTTPProblem(
            422,
            "invalid",
            f"the CloudEvent lacks its required attribute(s) {', '.join(missing)}",
            errors=[
                {"loc": ["body", *loc, attr], "msg": "Field required", "type": "missing"}
                for attr in missing
            ],
        )
    if ce["specversion"] != constants.CE_SPECVERSION:
        raise HTTPProblem(422, "invalid", "only CloudEvents specversion 1.0 is supported")
    if "data_base64" in ce:
        raise HTTPProblem(415, "unsupported_media_type", "send the CloudEvent's data as JSON")
    try:
        return Event.from_cloudevent(ce)
    except (ValidationError, ValueError) as exc:
        if isinstance(exc, ValidationError):
            raise validation_problem(exc, ("body", *loc)) from None
        raise HTTPProblem(422, "invalid", f"the CloudEvent is not valid: {exc}") from None


def routes(intake: Intake) -> APIRouter:
    """The event endpoints, bound to ``intake``."""
    router = routers.router(intake, tags=["events"])
    hot = routers.router(intake, direct=True, tags=["events"])  # the two intake endpoints
    event_schema = EventIn.model_json_schema()  # here, not at import

    @hot.post(
        "/events",
        status_code=202,
        response_model=Accepted | BatchAccepted,  # a CloudEvents batch gets per-item results
        responses={
            202: {"links": {"status": {"operationId": "event_status", **_BY_ID}}},
            **problem_responses(400, 401, 413, 415, 422, 503),
        },
        # The seed's form (?event_type=, the body as payload) is left out of the schema:
        # OpenAPI cannot say that the query changes what the body is.
        openapi_extra=request_body(
            {"application/json": event_schema, CE_JSON: _CE_SCHEMA, CE_BATCH: _CE_BATCH_SCHEMA}
        ),
        summary="Accept one event (nerve JSON, the seed's form, or a CloudEvent)",
    )
    async def post_event(request: Request) -> Response:
        """Publish one event and answer 202 before any handler runs.

        With ``?event_type=``, the body is the payload (the seed's form). A CloudEvent
        in binary mode carries its attributes in ``ce-*`` headers.
        """
        return await accept_event(
            intake, request.headers, request.scope["query_string"], request.receive
        )

    @hot.post(
        "/events/batch",
        status_code=202,
        response_model=BatchAccepted,
        responses=problem_responses(400, 401, 413, 415, 422, 503),
        openapi_extra=request_body(
            {
                "application/json": {"type": "array", "items": event_schema, "minItems": 1},
                CE_BATCH: _CE_BATCH_SCHEMA,
            }
        ),
        summary="Accept many events: all valid, or none accepted",
    )
    async def post_batch(request: Request) -> Response:
        """Publish many events at once; if any is invalid, none is published (422)."""
        return await accept_batch(intake, request.headers, request.receive)

    @router.get(
        "/events/{event_id}",
        operation_id="event_status",
        response_model=EventStatusOut,
        responses=problem_responses(401, 404),
        summary="Where an event stands with each subscription",
    )
    async def get_event(event_id: str, request: Request) -> Response:
        intake.authorize(request.headers)
        status = await intake.bus.status(event_id)
        if status.event_type is None:
            raise HTTPProblem(
                404,
                "not_found",
                f"no event {event_id!r} was published here within the idempotency window",
            )
        return json_response(
            {
                "event_id": status.event_id,
                "event_type": status.event_type,
                "settled": status.settled,
                "subscriptions": {k: v.value for k, v in status.subscriptions.items()},
            }
        )

    # First: /events/batch must not be taken for /events/{event_id} (a 405 would then
    # advertise GET alone).
    router.routes[0:0] = hot.routes
    return router


async def accept_event(
    intake: Intake, headers: Mapping[str, str], query_string: bytes, receive: Receive
) -> Response:
    """``POST /events``: authorize the sender, read the body, publish, answer 202.

    The route and the fast path (:mod:`nerve.http.fastpath`) both answer with this.

    Raises:
        HTTPProblem: the event is refused (4xx) or the bus cannot take it (503).
    """
    intake.authorize(headers)
    body = await intake.body(headers, receive)
    parse = intake.parse
    media = media_type_of(headers)
    if media == CE_BATCH:
        return await _cloudevents_batch(intake, parse(body))
    if "ce-specversion" in headers:
        if not is_json(media):
            raise _unsupported(media)
        event = event_from_cloudevent(_binary_attributes(headers, parse(body)))
    elif media == CE_JSON:
        event = event_from_cloudevent(parse(body))
    elif not is_json(media):
        raise _unsupported(media)
    elif query_string:
        event = _queried_event(QueryParams(query_string), parse(body))
    else:
        event = event_from_json(parse(body))
    await intake.publish([event], "events")
    return json_response({"event_id": event.event_id, "status": "accepted"}, 202)


async def accept_batch(intake: Intake, headers: Mapping[str, str], receive: Receive) -> Response:
    """``POST /events/batch``: authorize the sender, read the body, publish, answer 202.

    The route and the fast path (:mod:`nerve.http.fastpath`) both answer with this.

    Raises:
        HTTPProblem: a refused batch (nothing of it published) or a saturated bus.
    """
    intake.authorize(headers)
    body = await intake.body(headers, receive)
    media = media_type_of(headers)
    if media == CE_BATCH:
        return await _cloudevents_batch(intake, intake.parse(body))
    if not is_json(media):
        raise _unsupported(media)
    items = intake.parse(body)
    if isinstance(items, dict) and isinstance(items.get("events"), list):
        items = items["events"]
    return await _publish_batch(intake, items, event_from_json, "batch")


def _unsupported(media: str) -> HTTPProblem:
    return HTTPProblem(
        415,
        "unsupported_media_type",
        f"Content-Type {media!r} is not accepted: send application/json (or {CE_JSON}, {CE_BATCH})",
    )


def _queried_event(query: QueryParams, body: Any) -> Event[Any]:
    """An event with fields in the query: the seed's form when it names the type.

    With ``?event_type=`` the body is the payload; without, the body is an event in
    nerve's form and the query sets its ``event_id``, ``source`` or ``correlation_id``.
    """
    unknown = sorted(set(query) - set(_SEED_QUERY))
    if unknown:
        raise HTTPProblem(422, "invalid", f"unknown query parameter(s): {', '.join(unknown)}")
    fields = {name: query[name] for name in _SEED_QUERY if name in query}
    if "event_type" not in fields:
        if type(body) is dict:
            body.update(fields)
        return event_from_json(body)
    try:
        return Event.model_validate({"payload": body, **fields}, context=_FROM_JSON)
    except ValidationError as exc:
        raise validation_problem(exc, ("query",)) from None


def _binary_attributes(headers: Mapping[str, str], data: Any) -> dict[str, Any]:
    """CloudEvents binary mode: ``ce-*`` headers (percent-decoded) plus the body as data."""
    ce: dict[str, Any] = {"data": data}
    for name, value in headers.items():
        if name.startswith("ce-") and len(name) > 3:
            ce[name[3:]] = unquote(value)
    return ce


async def _cloudevents_batch(intake: Intake, items: Any) -> Response:
    return await _publish_batch(intake, items, event_from_cloudevent, "cloudevents")


async def _publish_batch(intake: Intake, items: Any, build: Any, source: str) -> Response:
    if not isinstance(items, list):
        raise HTTPProblem(422, "invalid", "a batch is a JSON array of events")
    if not items:
        raise HTTPProblem(422, "invalid", "the batch is empty")
    if len(items) > intake.settings.max_batch:
        raise HTTPProblem(
            413,
            "too_large",
            f"the batch has {len(items)} events; the limit is {intake.settings.max_batch}",
        )
    events = [build(item, (index,)) for index, item in enumerate(items)]
    await intake.publish(events, source)
    return json_response(
        {
            "accepted": len(events),
            "results": [{"event_id": e.event_id, "status": "accepted"} for e in events],
        },
        202,
    )
