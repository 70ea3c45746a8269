"""``POST /events``, ``POST /events/batch`` and ``GET /events/{event_id}``.

``POST /events`` takes an event in any of these forms, told apart by the request:

- nerve's JSON (``application/json``): ``{"event_type", "payload", ...}``;
- the seed's form: ``?event_type=...`` with the payload as the JSON body;
- CloudEvents 1.0 structured mode (``application/cloudevents+json``), binary mode
  (``ce-*`` headers, the data as the body) and batch mode
  (``application/cloudevents-batch+json``, also taken by ``/events/batch``).

Each answers 202 once the transport has the event, before any handler runs. A body must
declare a JSON media type (:func:`~nerve.http.media.is_json`), and every string the
request supplies besides the payload must be printable: no control characters or line
breaks, which would otherwise reach logs.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import unquote

from fastapi import APIRouter, Request, Response
from pydantic import ValidationError
from starlette.datastructures import QueryParams
from starlette.types import Receive

from nerve import constants
from nerve.events import CE_TYPE_KEY, PARSED_JSON, Event
from nerve.http import routers
from nerve.http.intake import Intake
from nerve.http.media import is_json, json_response, media_type_of
from nerve.http.problems import HTTPProblem, require_printable, validation_problem
from nerve.http.schemas import (
    Accepted,
    BatchAccepted,
    EventIdPath,
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
#: The CloudEvents names of the event's fields, for the errors of a CloudEvent.
_CE_NAMES = {
    "event_id": "id",
    "event_type": "type",
    "timestamp": "time",
    "payload": "data",
    "correlation_id": constants.CE_CORRELATION,
    "causation_id": constants.CE_CAUSATION,
}
#: Optional attributes the spec types as strings, kept in metadata as they are.
_CE_STRINGS = ("subject", "dataschema", "datacontenttype")
#: Printable, with a letter or digit to route on (the schema's form of the rule).
_PRINTABLE_CLASS = constants.PRINTABLE_RE[1:-2]  # "[^...]"
_CE_TYPE_RE = f"^{_PRINTABLE_CLASS}*[A-Za-z0-9]{_PRINTABLE_CLASS}*$"
_CE_TYPE_RULE = (
    "type must name the kind of event: 1 to 255 printable characters with at least one "
    "ASCII letter or digit. nerve routes on it as lower-case dot-separated segments "
    "(Microsoft.Storage.BlobCreated -> microsoft.storage.blob_created) and keeps it whole "
    f"in metadata[{CE_TYPE_KEY!r}]"
)
_HAS_ALNUM = re.compile(r"[A-Za-z0-9]")


#: Bodies come from orjson: their payloads are JSON without checking again.
_FROM_JSON = {PARSED_JSON: True}
_BY_ID = {"parameters": {"event_id": "$response.body#/event_id"}}


def _printable(
    max_length: int | None = None, min_length: int = 0, *, nullable: bool = False, **more: Any
) -> dict[str, Any]:
    kind = ["string", "null"] if nullable else "string"
    schema: dict[str, Any] = {"type": kind, "pattern": constants.PRINTABLE_RE, **more}
    if min_length:
        schema["minLength"] = min_length
    if max_length is not None:
        schema["maxLength"] = max_length
    return schema


_CE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": list(_CE_REQUIRED),
    "properties": {
        "specversion": {"const": "1.0"},
        "id": _printable(255, 1),
        "source": _printable(2048, 1),
        "type": {
            "type": "string",
            "minLength": 1,
            "maxLength": 255,
            "pattern": _CE_TYPE_RE,
            "description": _CE_TYPE_RULE,
        },
        # null: absent (the event's default), as in nerve's JSON.
        "time": _printable(64, description="RFC 3339 (default: now).", nullable=True),
        "subject": _printable(description="Kept in metadata['subject']."),
        "dataschema": _printable(description="Kept in metadata['dataschema']."),
        "datacontenttype": _printable(description="Kept in metadata unless JSON."),
        constants.CE_CORRELATION: _printable(255, description="The chain's id.", nullable=True),
        constants.CE_CAUSATION: _printable(255, description="The causing event.", nullable=True),
        "data": {},
        "data_base64": False,  # 415: payloads are JSON
    },
    # Extensions, kept in metadata (a string as it is, anything else JSON-encoded).
    "propertyNames": {"pattern": constants.PRINTABLE_RE},
    "additionalProperties": {
        "anyOf": [
            {"not": {"type": "string"}},
            {"type": "string", "pattern": constants.PRINTABLE_RE},
        ]
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

    Every attribute is kept: ``subject``, ``dataschema``, a non-JSON ``datacontenttype``
    and the extensions land in ``metadata``; a ``type`` outside nerve's event-type grammar
    is routed on as segments and kept whole (:meth:`Event.from_cloudevent`).

    Raises:
        HTTPProblem: 422 for a missing or invalid attribute, another specversion, a
            string with a control character; 415 for non-JSON data.
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
    for name, value in ce.items():
        # CloudEvents strings may not hold control characters (spec 1.0, "Type System").
        if name != "data":
            require_printable(name, ["body", *loc])
            if type(value) is str:
                require_printable(value, ["body", *loc, name])
    for name in _CE_STRINGS:
        if name in ce and type(ce[name]) is not str:
            where = ["body", *loc, name]
            raise HTTPProblem(
                422,
                "invalid",
                f"{'.'.join(map(str, where))}: {name} must be a string",
                errors=[
                    {"loc": where, "msg": "Input should be a valid string", "type": "string_type"}
                ],
            )
    kind = ce["type"]
    if type(kind) is not str or len(kind) > 255 or not _HAS_ALNUM.search(kind):
        where = ["body", *loc, "type"]
        raise HTTPProblem(
            422,
            "invalid",
            f"{'.'.join(map(str, where))}: {_CE_TYPE_RULE}",
            errors=[{"loc": where, "msg": _CE_TYPE_RULE, "type": "cloudevents_type"}],
        )
    try:
        return Event.from_cloudevent(ce)
    except ValidationError as exc:
        raise validation_problem(exc, ("body", *loc), _CE_NAMES) from None
    except ValueError as exc:  # nervemetadata that is not a JSON object of strings
        where = ["body", *loc, constants.CE_METADATA]
        raise HTTPProblem(
            422,
            "invalid",
            f"{'.'.join(map(str, where))}: {exc}",
            errors=[{"loc": where, "msg": str(exc), "type": "value_error"}],
        ) from None


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
            **problem_responses(400, 401, 403, 408, 413, 415, 422, 503),
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
        responses=problem_responses(400, 401, 403, 408, 413, 415, 422, 503),
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
        responses=problem_responses(401, 403, 404, 422),
        summary="Where an event stands with each subscription",
    )
    async def get_event(event_id: EventIdPath, request: Request) -> Response:
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
                "reasons": status.reasons,
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
    what = f"Content-Type {media!r} is not accepted" if media else "the request has no Content-Type"
    return HTTPProblem(
        415,
        "unsupported_media_type",
        f"{what}: send Content-Type: application/json (or {CE_JSON}, {CE_BATCH})",
    )


def _queried_event(query: QueryParams, body: Any) -> Event[Any]:
    """An event with fields in the query: the seed's form when it names the type.

    With ``?event_type=`` the body is the payload; without, the body is an event in
    nerve's form and the query sets its ``event_id``, ``source`` or ``correlation_id``.
    """
    unknown = sorted(set(query) - set(_SEED_QUERY))
    if unknown:
        names = ", ".join(map(repr, unknown))
        raise HTTPProblem(
            422,
            "invalid",
            f"unknown query parameter(s) {names}: known are {', '.join(_SEED_QUERY)}",
        )
    fields = {name: query[name] for name in _SEED_QUERY if name in query}
    for name, value in fields.items():
        require_printable(value, ["query", name])
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
