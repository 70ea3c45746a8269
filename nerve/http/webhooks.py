"""``POST /webhooks/github``, ``/webhooks/stripe`` and ``/webhooks/{source}``.

Each request is verified (:mod:`nerve.http.signatures`) before its body is parsed,
then becomes one event whose ``event_id`` is the provider's delivery id, so a
redelivery is accepted again and not handled again once the first is done (within the
bus's idempotency window):

=====================  ==========================================  ==================  =========
endpoint               event_type                                  event_id            source
=====================  ==========================================  ==================  =========
``/webhooks/github``   ``github.<X-GitHub-Event>[.<action>]``      X-GitHub-Delivery   repo URL
``/webhooks/stripe``   ``stripe.<type>``                           the body's ``id``   stripe
``/webhooks/{source}`` ``<source>.<type>`` or ``<source>.webhook``  webhook-id          {source}
=====================  ==========================================  ==================  =========

The payload is the whole JSON body, as the provider sent it. Provider names become
event-type segments with :func:`nerve.events.segment` (``pullRequest`` -> ``pull_request``).
Header values that become the event's id must be printable (no control characters or line
breaks: they reach logs). A body without a Content-Type is taken as JSON here: a signed
request cannot come from another site's page.

A provider with no secret answers 404 and names the variable to set; its route is then
left out of the OpenAPI schema, which describes what this app serves.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Sequence
from typing import Any
from urllib.parse import parse_qs

from fastapi import APIRouter, Path, Request, Response
from pydantic import SecretStr, ValidationError

from nerve import constants
from nerve.events import Event, dotted, segment
from nerve.http import routers
from nerve.http.intake import Intake
from nerve.http.media import is_json, json_response, media_type_of
from nerve.http.problems import HTTPProblem, require_printable, validation_problem
from nerve.http.schemas import Accepted, json_body, problem_responses
from nerve.http.settings import HTTPSettings
from nerve.http.signatures import (
    SignatureError,
    standard_key,
    verify_github,
    verify_standard,
    verify_stripe,
)

FORM = "application/x-www-form-urlencoded"
#: Sources with their own endpoint, so not Standard Webhooks source names.
RESERVED_SOURCES = frozenset({"github", "stripe"})
_RESPONSES = problem_responses(400, 401, 403, 404, 408, 413, 415, 422, 503)
_SEGMENT = re.compile(constants.SEGMENT_RE)
#: Fields a form-encoded GitHub delivery may have (it has one, ``payload``).
FORM_FIELDS = 16


def routes(intake: Intake) -> APIRouter:
    """The webhook endpoints, bound to ``intake``.

    Raises:
        ValueError: a secret is empty or not valid for its provider, or a Standard
            Webhooks source name is not one event-type segment (found at startup,
            not at the first delivery).
    """
    settings = intake.settings
    github_keys = _hmac_keys(settings.github_webhook_secret, "NERVE_GITHUB_WEBHOOK_SECRET")
    stripe_keys = _hmac_keys(settings.stripe_webhook_secret, "NERVE_STRIPE_WEBHOOK_SECRET")
    standard_keys = _standard_sources(settings)
    router = routers.router(intake, tags=["webhooks"])

    @router.post(
        "/webhooks/github",
        status_code=202,
        response_model=Accepted,
        responses=_RESPONSES,
        include_in_schema=bool(github_keys),
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {"schema": {"type": "object"}},
                    FORM: {
                        "schema": {
                            "type": "object",
                            "properties": {"payload": {"type": "string"}},
                            "required": ["payload"],
                        }
                    },
                },
            },
            "parameters": [
                _header("X-Hub-Signature-256", "sha256=<hex HMAC-SHA256 of the body>"),
                _header("X-GitHub-Event", "The event name: push, pull_request, ping, ..."),
                _header("X-GitHub-Delivery", "The delivery id (the same for a redelivery)."),
            ],
        },
        summary="Accept a GitHub webhook (X-Hub-Signature-256)",
    )
    async def github(request: Request) -> Response:
        """Verify a GitHub delivery and publish it as ``github.<event>[.<action>]``.

        Takes either content type GitHub sends: ``application/json`` or
        ``application/x-www-form-urlencoded`` (the JSON in the ``payload`` field).
        """
        intake.origins.check(request.headers)
        if not github_keys:
            raise _not_configured("GitHub", "NERVE_GITHUB_WEBHOOK_SECRET")
        body = await intake.body(request.headers, request.receive)
        headers = request.headers
        _verified(lambda: verify_github(body, headers.get("x-hub-signature-256"), github_keys))
        name = segment(headers.get("x-github-event", ""))
        delivery = headers.get("x-github-delivery", "").strip()
        _require_headers(("X-GitHub-Event", name), ("X-GitHub-Delivery", delivery))
        require_printable(delivery, ["header", "X-GitHub-Delivery"])
        data = _github_data(intake, request, body)
        action = data.get("action") if isinstance(data, dict) else None
        event_type = f"github.{name}"
        if isinstance(action, str) and segment(action):
            event_type += f".{segment(action)}"
        event = _event(event_type, data, delivery, _github_source(data))
        await intake.publish([event], "github")
        return _accepted(event)

    @router.post(
        "/webhooks/stripe",
        status_code=202,
        response_model=Accepted,
        responses=_RESPONSES,
        include_in_schema=bool(stripe_keys),
        openapi_extra={
            **json_body(
                {"type": "object", "required": ["id", "type"]},
                "application/json",
            ),
            "parameters": [
                _header("Stripe-Signature", "t=<unix time>,v1=<hex HMAC-SHA256>[,v1=...]"),
            ],
        },
        summary="Accept a Stripe webhook (Stripe-Signature, timestamp tolerance)",
    )
    async def stripe(request: Request) -> Response:
        """Verify a Stripe event and publish it as ``stripe.<type>`` with its ``evt_`` id."""
        intake.origins.check(request.headers)
        if not stripe_keys:
            raise _not_configured("Stripe", "NERVE_STRIPE_WEBHOOK_SECRET")
        body = await intake.body(request.headers, request.receive)
        header = request.headers.get("stripe-signature")
        _verified(
            lambda: verify_stripe(
                body,
                header,
                stripe_keys,
                now=time.time(),
                tolerance=settings.webhook_tolerance,
            )
        )
        _require_json(request)
        data = intake.parse(body)
        event_id, kind = _stripe_fields(data)
        event = _event(f"stripe.{kind}", data, event_id, "stripe")
        await intake.publish([event], "stripe")
        return _accepted(event)

    @router.post(
        "/webhooks/{source}",
        status_code=202,
        response_model=Accepted,
        responses=_RESPONSES,
        include_in_schema=bool(standard_keys),
        openapi_extra={
            **json_body({}, "application/json"),
            "parameters": [
                _header("webhook-id", "The message id (the same for a redelivery)."),
                _header("webhook-timestamp", "Unix time in seconds of this attempt."),
                _header("webhook-signature", "Space-separated v1,<base64 HMAC-SHA256>."),
            ],
        },
        summary="Accept a Standard Webhooks delivery from a configured source",
    )
    async def standard(
        request: Request,
        source: str = Path(
            description="A source named in NERVE_WEBHOOK_SECRETS.",
            json_schema_extra={"enum": sorted(standard_keys)} if standard_keys else None,
        ),
    ) -> Response:
        """Verify a Standard Webhooks delivery; publish it as ``<source>.<type>``.

        ``<type>`` is the body's ``type`` field (``<source>.webhook`` without one).
        """
        intake.origins.check(request.headers)
        keys = standard_keys.get(source)
        if keys is None:
            raise HTTPProblem(
                404,
                "not_configured",
                f"no webhook source {source!r}: add it to NERVE_WEBHOOK_SECRETS, "
                f'e.g. {{"{segment(source) or "name"}": "whsec_..."}}',
            )
        body = await intake.body(request.headers, request.receive)
        headers = request.headers
        _verified(
            lambda: verify_standard(
                body,
                headers.get("webhook-id"),
                headers.get("webhook-timestamp"),
                headers.get("webhook-signature"),
                keys,
                now=time.time(),
                tolerance=settings.webhook_tolerance,
            )
        )
        _require_json(request)
        msg_id = headers["webhook-id"]
        require_printable(msg_id, ["header", "webhook-id"])
        data = intake.parse(body)
        kind = data.get("type") if isinstance(data, dict) else None
        suffix = dotted(kind) if isinstance(kind, str) else ""
        event = _event(f"{source}.{suffix or 'webhook'}", data, msg_id, source)
        await intake.publish([event], "webhook")
        return _accepted(event)

    return router


# configuration


def _hmac_keys(secrets: Sequence[SecretStr], variable: str) -> list[bytes]:
    keys = [secret.get_secret_value().encode() for secret in secrets]
    if any(not key.strip() for key in keys):
        raise ValueError(f"{variable}: a webhook secret may not be empty")
    return keys


def _standard_sources(settings: HTTPSettings) -> dict[str, list[bytes]]:
    sources: dict[str, list[bytes]] = {}
    for name, secrets in settings.webhook_secrets.items():
        if not _SEGMENT.fullmatch(name):
            raise ValueError(
                f"NERVE_WEBHOOK_SECRETS: the source name {name!r} is not one event-type "
                f"segment ({constants.SEGMENT_RE}), e.g. {segment(name) or 'acme'!r}"
            )
        if name in RESERVED_SOURCES:
            raise ValueError(
                f"NERVE_WEBHOOK_SECRETS: {name!r} has its own endpoint; set "
                f"NERVE_{name.upper()}_WEBHOOK_SECRET instead"
            )
        try:
            keys = [standard_key(secret.get_secret_value()) for secret in secrets]
        except ValueError as exc:
            raise ValueError(f"NERVE_WEBHOOK_SECRETS[{name!r}]: {exc}") from None
        if keys:
            sources[name] = keys
    return sources


# request steps


def _verified(check: Callable[[], object]) -> None:
    try:
        check()
    except SignatureError as exc:
        raise HTTPProblem(401, exc.reason, str(exc)) from None


def _not_configured(provider: str, variable: str) -> HTTPProblem:
    return HTTPProblem(
        404,
        "not_configured",
        f"{provider} webhooks are not configured here: set {variable} to the webhook's "
        "secret (several, comma-separated, while rotating)",
    )


def _require_headers(*headers: tuple[str, str]) -> None:
    missing = [name for name, value in headers if not value]
    if missing:
        raise HTTPProblem(
            422,
            "invalid",
            f"the request lacks the header(s) {', '.join(missing)} (or it is empty)",
            errors=[
                {"loc": ["header", name], "msg": "Field required", "type": "missing"}
                for name in missing
            ],
        )


def _require_json(request: Request) -> None:
    media = media_type_of(request.headers)
    if media and not is_json(media):  # none: JSON (signed, so no page of another site)
        raise HTTPProblem(
            415,
            "unsupported_media_type",
            f"Content-Type {media!r} is not accepted: send application/json",
        )


def _github_data(intake: Intake, request: Request, body: bytes) -> Any:
    media = media_type_of(request.headers)
    if media == FORM:
        try:
            fields = parse_qs(body.decode("latin-1"), max_num_fields=FORM_FIELDS)
        except ValueError:  # more fields than that
            raise HTTPProblem(
                400,
                "bad_request",
                f"a form-encoded delivery has one field, payload; this one has more than "
                f"{FORM_FIELDS}",
            ) from None
        payload = fields.get("payload")
        if not payload:
            raise HTTPProblem(400, "invalid_json", "a form-encoded delivery has a payload field")
        return intake.parse(payload[0].encode())
    if media and not is_json(media):  # none: JSON (signed, so no page of another site)
        raise HTTPProblem(
            415,
            "unsupported_media_type",
            f"Content-Type {media!r} is not accepted: send application/json or {FORM}",
        )
    return intake.parse(body)


def _stripe_fields(data: Any) -> tuple[str, str]:
    """The event's ``id`` and its ``type`` as event-type segments."""
    fields = data if isinstance(data, dict) else {}
    event_id, kind = fields.get("id"), fields.get("type")
    if isinstance(event_id, str) and event_id and isinstance(kind, str) and dotted(kind):
        return event_id, dotted(kind)
    errors = [
        {"loc": ["body", name], "msg": "expected a string naming it", "type": "string_type"}
        for name, value in (("id", event_id), ("type", kind))
        if not isinstance(value, str) or not (dotted(value) if name == "type" else value)
    ]
    raise HTTPProblem(
        422,
        "invalid",
        "a Stripe event is a JSON object with an id (evt_...) and a type",
        errors=errors,
    )


def _github_source(data: Any) -> str:
    """The repository's URL when the event has one (most do), else ``github``."""
    repository = data.get("repository") if isinstance(data, dict) else None
    url = repository.get("html_url") if isinstance(repository, dict) else None
    return url if isinstance(url, str) and url else "github"


def _event(event_type: str, payload: Any, event_id: str, source: str) -> Event[Any]:
    try:
        return Event(event_type=event_type, payload=payload, event_id=event_id, source=source)
    except ValidationError as exc:
        raise validation_problem(exc, ("event",)) from None


def _accepted(event: Event[Any]) -> Response:
    return json_response({"event_id": event.event_id, "status": "accepted"}, 202)


def _header(name: str, description: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": "header",
        "required": True,
        "description": description,
        "schema": {"type": "string"},
    }
