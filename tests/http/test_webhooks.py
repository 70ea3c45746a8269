"""Signed webhooks: the providers' vectors, every refusal, the event each delivery becomes."""

# The secrets below are test fixtures, published vectors among them.
# ruff: noqa: S105

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest

from nerve import Event, EventBus
from nerve.events import dotted, segment
from nerve.http import HTTPSettings, create_app
from nerve.http.signatures import (
    SignatureError,
    StaleSignature,
    sign_github,
    sign_standard,
    sign_stripe,
    standard_key,
    verify_github,
    verify_standard,
    verify_stripe,
)
from tests.conftest import eventually
from tests.http.conftest import serve

# GitHub's documented example ("Validating webhook deliveries").
GITHUB_DOC_SECRET = b"It's a Secret to Everybody"
GITHUB_DOC_BODY = b"Hello, World!"
GITHUB_DOC_SIGNATURE = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"

# The Standard Webhooks reference libraries' signing vector (test_sign_function).
STANDARD_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
STANDARD_MSG_ID = "msg_p5jXN8AQM9LWM0D4loKWxJek"
STANDARD_TIMESTAMP = 1614265330
STANDARD_BODY = b'{"test": 2432232314}'
STANDARD_SIGNATURE = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
# The libraries' "invalid signature" case: the vector with its last byte changed.
STANDARD_FORGED = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OA="
# Their "multi sig" case: unknown versions and non-matching v1 entries around a good one.
STANDARD_OTHER = "Ceo5qEr07ixe2NLpvHk3FH9bwy/WavXrAFQ/9tdO6mc="

GITHUB_SECRET = "gh-secret-new"
GITHUB_OLD_SECRET = "gh-secret-old"
STRIPE_SECRET = "whsec_stripe_endpoint_secret_new"
STRIPE_OLD_SECRET = "whsec_stripe_endpoint_secret_old"
ACME_SECRET = "whsec_" + base64.b64encode(b"acme-signing-key-24bytes").decode()
ACME_OLD_SECRET = STANDARD_SECRET
TOLERANCE = 300

SETTINGS = HTTPSettings(
    api_keys=["an-event-key"],  # webhooks need none: the signature is the credential
    github_webhook_secret=[GITHUB_OLD_SECRET, GITHUB_SECRET],
    stripe_webhook_secret=[STRIPE_OLD_SECRET, STRIPE_SECRET],
    webhook_secrets={"acme": [ACME_OLD_SECRET, ACME_SECRET]},
    webhook_tolerance=TOLERANCE,
)

Client = tuple[httpx.AsyncClient, EventBus, list[Event[Any]]]


@pytest.fixture
async def app() -> AsyncIterator[Client]:
    bus = EventBus("memory://")
    seen: list[Event[Any]] = []

    @bus.on("#", name="record")
    async def record(event: Event[Any]) -> None:
        seen.append(event)

    async with serve(bus, SETTINGS) as client:
        yield client, bus, seen


def github_request(
    payload: Any,
    *,
    event: str = "push",
    delivery: str = "72d3162e-cc78-11e3-81ab-4c9367dc0958",
    secret: str = GITHUB_SECRET,
) -> tuple[bytes, dict[str, str]]:
    body = json.dumps(payload).encode()
    return body, {
        "Content-Type": "application/json",
        "X-GitHub-Event": event,
        "X-GitHub-Delivery": delivery,
        "X-Hub-Signature-256": sign_github(body, secret.encode()),
    }


def stripe_request(
    payload: Any, *, secret: str = STRIPE_SECRET, at: int | None = None
) -> tuple[bytes, dict[str, str]]:
    body = json.dumps(payload).encode()
    timestamp = int(time.time()) if at is None else at
    return body, {
        "Content-Type": "application/json; charset=utf-8",
        "Stripe-Signature": sign_stripe(body, secret.encode(), timestamp),
    }


def standard_request(
    payload: Any,
    *,
    msg_id: str = "msg_2KWPBgLlAfxdpx2AI54pPJ85f4W",
    secret: str = ACME_SECRET,
    at: int | None = None,
) -> tuple[bytes, dict[str, str]]:
    body = json.dumps(payload).encode()
    timestamp = int(time.time()) if at is None else at
    return body, {
        "Content-Type": "application/json",
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": sign_standard(msg_id, timestamp, body, standard_key(secret)),
    }


def refused(response: httpx.Response, status: int, error: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    answer: dict[str, Any] = response.json()
    assert answer["error"] == error
    return answer


# the providers' published vectors, and the pure verification functions


def test_github_documented_vector() -> None:
    assert sign_github(GITHUB_DOC_BODY, GITHUB_DOC_SECRET) == GITHUB_DOC_SIGNATURE
    verify_github(GITHUB_DOC_BODY, GITHUB_DOC_SIGNATURE, [GITHUB_DOC_SECRET])
    with pytest.raises(SignatureError):
        verify_github(b"Hello, World?", GITHUB_DOC_SIGNATURE, [GITHUB_DOC_SECRET])


def test_standard_webhooks_reference_vector() -> None:
    key = standard_key(STANDARD_SECRET)
    signed = sign_standard(STANDARD_MSG_ID, STANDARD_TIMESTAMP, STANDARD_BODY, key)
    assert signed == STANDARD_SIGNATURE
    assert standard_key(STANDARD_SECRET.removeprefix("whsec_")) == key  # prefix optional

    def verify(signature: str, now: float = STANDARD_TIMESTAMP) -> int:
        return verify_standard(
            STANDARD_BODY,
            STANDARD_MSG_ID,
            str(STANDARD_TIMESTAMP),
            signature,
            [key],
            now=now,
            tolerance=TOLERANCE,
        )

    assert verify(STANDARD_SIGNATURE) == STANDARD_TIMESTAMP
    multi = f"v1,{STANDARD_OTHER} v2,{STANDARD_OTHER} {STANDARD_SIGNATURE} v1,{STANDARD_OTHER}"
    verify(multi)
    with pytest.raises(SignatureError) as forged:
        verify(STANDARD_FORGED)
    assert not isinstance(forged.value, StaleSignature)
    with pytest.raises(StaleSignature):
        verify(STANDARD_SIGNATURE, now=STANDARD_TIMESTAMP + TOLERANCE + 1)


def test_stripe_signature_is_hmac_of_timestamp_dot_body_keyed_by_the_whole_secret() -> None:
    body, secret, t = b'{"id":"evt_1","type":"charge.succeeded"}', b"whsec_abc", 1700000000
    expected = hmac.new(secret, b"1700000000." + body, hashlib.sha256).hexdigest()
    assert sign_stripe(body, secret, t) == f"t={t},v1={expected}"
    header = f"t={t},v1={'0' * 64},v1={expected},v0={'1' * 64}"
    assert verify_stripe(body, header, [secret], now=t, tolerance=TOLERANCE) == t


@pytest.mark.parametrize(
    ("now", "stale"),
    [
        (1700000000 + TOLERANCE, False),
        (1700000000 - TOLERANCE, False),
        (1700000000 + TOLERANCE + 1, True),  # old: a replay
        (1700000000 - TOLERANCE - 1, True),  # from the future
    ],
)
def test_tolerance_bounds(now: int, stale: bool) -> None:
    body, secret = b"{}", b"whsec_abc"
    header = sign_stripe(body, secret, 1700000000)
    if stale:
        with pytest.raises(StaleSignature):
            verify_stripe(body, header, [secret], now=now, tolerance=TOLERANCE)
    else:
        verify_stripe(body, header, [secret], now=now, tolerance=TOLERANCE)


def test_a_forged_old_signature_is_a_signature_error_not_stale() -> None:
    body = b"{}"
    header = sign_stripe(body, b"whsec_not_ours", 1)
    with pytest.raises(SignatureError) as caught:
        verify_stripe(body, header, [b"whsec_abc"], now=1700000000, tolerance=TOLERANCE)
    assert caught.value.reason == "signature"


@pytest.mark.parametrize(
    "header",
    [
        None,
        "",
        "sha256",
        "sha1=" + "0" * 40,
        "sha256=" + "z" * 64,
        "sha256=" + "0" * 63,
        GITHUB_DOC_SIGNATURE.replace("757", "758"),
    ],
)
def test_github_bad_signatures(header: str | None) -> None:
    with pytest.raises(SignatureError):
        verify_github(GITHUB_DOC_BODY, header, [GITHUB_DOC_SECRET])


@pytest.mark.parametrize(
    "header",
    [
        None,
        "",
        "v1=" + "0" * 64,  # no t
        "t=1700000000",  # no v1
        "t=1700000000,v0=" + "0" * 64,  # v0 is never accepted
        "t=+1700000000,v1=" + "0" * 64,
        "t=soon,v1=" + "0" * 64,
        "garbage",
    ],
)
def test_stripe_malformed_headers(header: str | None) -> None:
    with pytest.raises(SignatureError) as caught:
        verify_stripe(b"{}", header, [b"whsec_abc"], now=1700000000, tolerance=TOLERANCE)
    assert caught.value.reason == "signature"


@pytest.mark.parametrize(
    ("msg_id", "timestamp", "signature"),
    [
        (None, str(STANDARD_TIMESTAMP), STANDARD_SIGNATURE),
        (STANDARD_MSG_ID, None, STANDARD_SIGNATURE),
        (STANDARD_MSG_ID, str(STANDARD_TIMESTAMP), None),
        (STANDARD_MSG_ID, "hello", STANDARD_SIGNATURE),
        (STANDARD_MSG_ID, "1614265330.0", STANDARD_SIGNATURE),
        (STANDARD_MSG_ID, str(STANDARD_TIMESTAMP), "v1a,AAAA"),
        (STANDARD_MSG_ID, str(STANDARD_TIMESTAMP), "v1,not base64!"),
        (STANDARD_MSG_ID, str(STANDARD_TIMESTAMP), STANDARD_SIGNATURE.replace("v1,", "v2,")),
        ("msg_other", str(STANDARD_TIMESTAMP), STANDARD_SIGNATURE),  # the id is signed too
    ],
)
def test_standard_webhooks_bad_headers(
    msg_id: str | None, timestamp: str | None, signature: str | None
) -> None:
    with pytest.raises(SignatureError) as caught:
        verify_standard(
            STANDARD_BODY,
            msg_id,
            timestamp,
            signature,
            [standard_key(STANDARD_SECRET)],
            now=STANDARD_TIMESTAMP,
            tolerance=TOLERANCE,
        )
    assert caught.value.reason == "signature"


@pytest.mark.parametrize("secret", ["whsec_", "whsec_not base64!", ""])
def test_standard_key_refuses_bad_secrets(secret: str) -> None:
    with pytest.raises(ValueError, match="Standard Webhooks secret"):
        standard_key(secret)


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("pull_request", "pull_request"),
        ("paymentIntent", "payment_intent"),
        ("HTTPRequest", "http_request"),
        ("Team Add", "team_add"),
        ("a/b:c", "a_b_c"),
        ("--", "--"),
        ("!!", ""),
    ],
)
def test_segment(name: str, expected: str) -> None:
    assert segment(name) == expected


def test_dotted() -> None:
    assert dotted("payment_intent.succeeded") == "payment_intent.succeeded"
    assert dotted("Invoice.Paid") == "invoice.paid"
    assert dotted("v1.billing.meter.error_report_triggered") == (
        "v1.billing.meter.error_report_triggered"
    )
    assert dotted("a..b.") == "a.b"
    assert dotted("...") == ""


# GitHub over HTTP


async def test_github_ping(app: Client) -> None:
    client, _bus, seen = app
    ping = {"zen": "Design for failure.", "hook_id": 42, "hook": {"type": "Repository"}}
    body, headers = github_request(ping, event="ping", delivery="ping-1")
    response = await client.post("/webhooks/github", content=body, headers=headers)
    assert response.status_code == 202, response.text
    assert response.json() == {"event_id": "ping-1", "status": "accepted"}
    await eventually(lambda: len(seen) == 1)
    event = seen[0]
    assert (event.event_type, event.event_id, event.source) == ("github.ping", "ping-1", "github")
    assert event.payload == ping


async def test_github_event_with_action_from_the_repository(app: Client) -> None:
    client, _bus, seen = app
    payload = {
        "action": "opened",
        "number": 7,
        "repository": {"full_name": "acme/api", "html_url": "https://github.com/acme/api"},
    }
    body, headers = github_request(payload, event="pull_request", delivery="d-1")
    response = await client.post("/webhooks/github", content=body, headers=headers)
    assert response.status_code == 202, response.text
    await eventually(lambda: len(seen) == 1)
    event = seen[0]
    assert event.event_type == "github.pull_request.opened"
    assert (event.event_id, event.source, event.payload) == (
        "d-1",
        "https://github.com/acme/api",
        payload,
    )
    # Nothing of the request's credentials travels with the event.
    assert event.metadata == {}
    assert headers["X-Hub-Signature-256"] not in event.model_dump_json()


async def test_github_form_encoded_delivery(app: Client) -> None:
    client, _bus, seen = app
    payload = {"ref": "refs/heads/main", "repository": {"html_url": "https://github.com/a/b"}}
    body = urlencode({"payload": json.dumps(payload)}).encode()
    headers = {
        "Content-Type": "application/x-www-form-urlencoded",
        "X-GitHub-Event": "push",
        "X-GitHub-Delivery": "form-1",
        "X-Hub-Signature-256": sign_github(body, GITHUB_SECRET.encode()),
    }
    response = await client.post("/webhooks/github", content=body, headers=headers)
    assert response.status_code == 202, response.text
    await eventually(lambda: len(seen) == 1)
    assert (seen[0].event_type, seen[0].payload) == ("github.push", payload)


@pytest.mark.parametrize("count", [16, 17, 200])
async def test_a_signed_form_delivery_with_many_fields_is_a_400_problem(
    app: Client, count: int
) -> None:
    # parse_qs(max_num_fields=16) raised ValueError past 16 fields: a 500 in plain text.
    client, _bus, seen = app
    fields = {"payload": json.dumps({"ref": "main"}), **{f"f{n}": "x" for n in range(count)}}
    body = urlencode(fields).encode()
    headers = {
        "Content-Type": "application/x-www-form-urlencoded",
        "X-GitHub-Event": "push",
        "X-GitHub-Delivery": "many-fields",
        "X-Hub-Signature-256": sign_github(body, GITHUB_SECRET.encode()),
    }
    response = await client.post("/webhooks/github", content=body, headers=headers)
    assert response.headers["content-type"] == "application/json"
    answer = refused(response, 400, "bad_request")
    assert "payload" in answer["detail"]
    assert seen == []


async def test_webhook_ids_from_headers_must_be_printable(app: Client) -> None:
    client, _bus, seen = app
    body, headers = github_request({}, delivery="d-1\x7fforged")
    answer = refused(
        await client.post("/webhooks/github", content=body, headers=headers), 422, "invalid"
    )
    assert answer["detail"] == (
        "header.X-GitHub-Delivery: X-GitHub-Delivery must be printable: no control "
        "characters or line breaks"
    )
    body, headers = standard_request({"type": "a"}, msg_id="msg\x85forged")
    raw = {k.encode(): v.encode() for k, v in headers.items()}  # the id as utf-8, as signed
    answer = refused(await client.post("/webhooks/acme", content=body, headers=raw), 422, "invalid")
    assert answer["errors"][0]["loc"] == ["header", "webhook-id"]
    body, headers = stripe_request({**STRIPE_EVENT, "id": "evt_1\nforged"})
    answer = refused(
        await client.post("/webhooks/stripe", content=body, headers=headers), 422, "invalid"
    )
    assert "event_id must be printable" in answer["detail"]
    assert seen == []


async def test_github_rotation_accepts_every_configured_secret(app: Client) -> None:
    client, _bus, seen = app
    for number, secret in enumerate((GITHUB_OLD_SECRET, GITHUB_SECRET)):
        body, headers = github_request({}, delivery=f"rot-{number}", secret=secret)
        response = await client.post("/webhooks/github", content=body, headers=headers)
        assert response.status_code == 202, response.text
    await eventually(lambda: len(seen) == 2)


async def test_github_redelivery_is_handled_once(app: Client) -> None:
    client, bus, seen = app
    body, headers = github_request({"action": "created"}, event="issue_comment", delivery="same")
    for _ in range(2):
        response = await client.post("/webhooks/github", content=body, headers=headers)
        assert response.status_code == 202
        assert response.json()["event_id"] == "same"
    await bus.join(10)
    assert [e.event_id for e in seen] == ["same"]


@pytest.mark.parametrize(
    "signature",
    [
        None,
        "",
        "sha256=" + "0" * 64,
        "sha256=nothex",
        "sha1=0123456789abcdef0123456789abcdef01234567",
        sign_github(b"another body", GITHUB_SECRET.encode()),
        sign_github(b'{"a": 1}', b"a secret we do not have"),
    ],
)
async def test_github_missing_forged_or_malformed_signature_is_401(
    app: Client, signature: str | None
) -> None:
    client, _bus, seen = app
    body, headers = github_request({"a": 1})
    del headers["X-Hub-Signature-256"]
    if signature is not None:
        headers["X-Hub-Signature-256"] = signature
    response = await client.post("/webhooks/github", content=body, headers=headers)
    refused(response, 401, "signature")
    assert "X-Hub-Signature-256" in response.json()["detail"]
    assert seen == []


@pytest.mark.parametrize("missing", ["X-GitHub-Event", "X-GitHub-Delivery"])
async def test_github_without_event_or_delivery_header_is_422(app: Client, missing: str) -> None:
    client, _bus, _seen = app
    body, headers = github_request({})
    del headers[missing]
    answer = refused(
        await client.post("/webhooks/github", content=body, headers=headers), 422, "invalid"
    )
    assert missing in answer["detail"]
    assert answer["errors"] == [
        {"loc": ["header", missing], "msg": "Field required", "type": "missing"}
    ]


async def test_the_signature_is_checked_before_the_body_is_parsed(app: Client) -> None:
    client, _bus, _seen = app
    headers = {
        "X-GitHub-Event": "push",
        "X-GitHub-Delivery": "x",
        "X-Hub-Signature-256": "sha256=0",
    }
    response = await client.post("/webhooks/github", content=b"{not json", headers=headers)
    refused(response, 401, "signature")
    body = b"{not json"
    headers["X-Hub-Signature-256"] = sign_github(body, GITHUB_SECRET.encode())
    response = await client.post("/webhooks/github", content=body, headers=headers)
    refused(response, 400, "invalid_json")


async def test_github_other_content_type_is_415(app: Client) -> None:
    client, _bus, _seen = app
    body, headers = github_request({})
    headers["Content-Type"] = "text/plain"
    response = await client.post("/webhooks/github", content=body, headers=headers)
    refused(response, 415, "unsupported_media_type")


# Stripe over HTTP


STRIPE_EVENT = {
    "id": "evt_1NG8Du2eZvKYlo2CUI79vXWy",
    "object": "event",
    "type": "payment_intent.succeeded",
    "created": 1686089970,
    "data": {"object": {"id": "pi_3MtwBwLkdIwHu7ix28a3tqPa", "amount": 2000}},
}


async def test_stripe_event(app: Client) -> None:
    client, _bus, seen = app
    body, headers = stripe_request(STRIPE_EVENT)
    response = await client.post("/webhooks/stripe", content=body, headers=headers)
    assert response.status_code == 202, response.text
    assert response.json() == {"event_id": STRIPE_EVENT["id"], "status": "accepted"}
    await eventually(lambda: len(seen) == 1)
    event = seen[0]
    assert (event.event_type, event.event_id, event.source) == (
        "stripe.payment_intent.succeeded",
        STRIPE_EVENT["id"],
        "stripe",
    )
    assert event.payload == STRIPE_EVENT
    assert event.metadata == {}


async def test_stripe_rotation_one_v1_per_secret(app: Client) -> None:
    """While a secret rolls, Stripe signs with both and sends two v1 entries."""
    client, _bus, seen = app
    body = json.dumps(STRIPE_EVENT).encode()
    t = int(time.time())
    old = sign_stripe(body, STRIPE_OLD_SECRET.encode(), t)
    new = sign_stripe(body, b"whsec_a_secret_not_configured_here", t)
    header = f"{new},{old.partition(',')[2]}"
    response = await client.post(
        "/webhooks/stripe", content=body, headers={"Stripe-Signature": header}
    )
    assert response.status_code == 202, response.text
    await eventually(lambda: len(seen) == 1)


async def test_stripe_redelivery_is_handled_once(app: Client) -> None:
    client, bus, seen = app
    for delay in (0, 1):  # a retry is signed again, at a later time
        body, headers = stripe_request(STRIPE_EVENT, at=int(time.time()) + delay)
        response = await client.post("/webhooks/stripe", content=body, headers=headers)
        assert response.status_code == 202
    await bus.join(10)
    assert len(seen) == 1


@pytest.mark.parametrize(
    ("offset", "word"), [(-TOLERANCE - 100, "old"), (TOLERANCE + 100, "future")]
)
async def test_stripe_stale_or_future_timestamp_is_refused(
    app: Client, offset: int, word: str
) -> None:
    client, _bus, seen = app
    body, headers = stripe_request(STRIPE_EVENT, at=int(time.time()) + offset)
    answer = refused(
        await client.post("/webhooks/stripe", content=body, headers=headers), 401, "stale"
    )
    assert word in answer["detail"]
    assert seen == []


@pytest.mark.parametrize(
    "header",
    [None, "t=1,v1=abc", f"t={int(time.time())}", f"t={int(time.time())},v1={'ab' * 32}"],
)
async def test_stripe_missing_malformed_or_forged_signature_is_401(
    app: Client, header: str | None
) -> None:
    client, _bus, _seen = app
    headers = {"Stripe-Signature": header} if header is not None else {}
    response = await client.post(
        "/webhooks/stripe", content=json.dumps(STRIPE_EVENT), headers=headers
    )
    refused(response, 401, "signature")


async def test_stripe_body_tampered_after_signing_is_401(app: Client) -> None:
    client, _bus, _seen = app
    body, headers = stripe_request(STRIPE_EVENT)
    tampered = body.replace(b"2000", b"9000")
    response = await client.post("/webhooks/stripe", content=tampered, headers=headers)
    refused(response, 401, "signature")


@pytest.mark.parametrize(
    ("payload", "field"),
    [({"type": "charge.succeeded"}, "id"), ({"id": "evt_1"}, "type"), ([1, 2], "id")],
)
async def test_stripe_event_without_id_or_type_is_422(
    app: Client, payload: Any, field: str
) -> None:
    client, _bus, _seen = app
    body, headers = stripe_request(payload)
    answer = refused(
        await client.post("/webhooks/stripe", content=body, headers=headers), 422, "invalid"
    )
    assert ["body", field] in [error["loc"] for error in answer["errors"]]


# Standard Webhooks over HTTP


async def test_standard_webhook_with_a_type(app: Client) -> None:
    client, _bus, seen = app
    payload = {
        "type": "invoice.paid",
        "timestamp": "2022-11-03T20:26:10.344522Z",
        "data": {"id": "in_1", "amount": 12},
    }
    body, headers = standard_request(payload, msg_id="msg_1")
    response = await client.post("/webhooks/acme", content=body, headers=headers)
    assert response.status_code == 202, response.text
    assert response.json() == {"event_id": "msg_1", "status": "accepted"}
    await eventually(lambda: len(seen) == 1)
    event = seen[0]
    assert (event.event_type, event.event_id, event.source) == (
        "acme.invoice.paid",
        "msg_1",
        "acme",
    )
    assert event.payload == payload  # the whole body, as sent
    assert event.metadata == {}


async def test_standard_webhook_without_a_type(app: Client) -> None:
    client, _bus, seen = app
    body, headers = standard_request([{"any": "json"}], msg_id="msg_2")
    response = await client.post("/webhooks/acme", content=body, headers=headers)
    assert response.status_code == 202, response.text
    await eventually(lambda: len(seen) == 1)
    assert (seen[0].event_type, seen[0].payload) == ("acme.webhook", [{"any": "json"}])


async def test_standard_webhook_reference_vector_over_http() -> None:
    """The reference vector's request, with the clock where it was signed, is accepted."""
    bus = EventBus("memory://")
    settings = HTTPSettings(
        webhook_secrets={"svix": STANDARD_SECRET},
        webhook_tolerance=int(time.time()) - STANDARD_TIMESTAMP + 3600,
    )
    headers = {
        "webhook-id": STANDARD_MSG_ID,
        "webhook-timestamp": str(STANDARD_TIMESTAMP),
        "webhook-signature": STANDARD_SIGNATURE,
    }
    async with serve(bus, settings) as client:
        response = await client.post("/webhooks/svix", content=STANDARD_BODY, headers=headers)
        assert response.status_code == 202, response.text
        assert response.json()["event_id"] == STANDARD_MSG_ID
        headers["webhook-signature"] = STANDARD_FORGED
        forged = await client.post("/webhooks/svix", content=STANDARD_BODY, headers=headers)
        refused(forged, 401, "signature")


async def test_standard_webhook_rotation_and_multiple_signatures(app: Client) -> None:
    client, _bus, seen = app
    body, headers = standard_request({"type": "a"}, msg_id="rot-old", secret=ACME_OLD_SECRET)
    assert (await client.post("/webhooks/acme", content=body, headers=headers)).status_code == 202
    body, headers = standard_request({"type": "b"}, msg_id="rot-multi")
    headers["webhook-signature"] = (
        f"v1a,{STANDARD_OTHER} v1,{STANDARD_OTHER} " + (headers["webhook-signature"])
    )
    assert (await client.post("/webhooks/acme", content=body, headers=headers)).status_code == 202
    await eventually(lambda: len(seen) == 2)


async def test_standard_webhook_redelivery_is_handled_once(app: Client) -> None:
    client, bus, seen = app
    for _ in range(3):
        body, headers = standard_request({"type": "user.created"}, msg_id="msg_once")
        response = await client.post("/webhooks/acme", content=body, headers=headers)
        assert response.status_code == 202
    await bus.join(10)
    assert [e.event_id for e in seen] == ["msg_once"]


@pytest.mark.parametrize(
    ("offset", "word"), [(-TOLERANCE - 100, "old"), (TOLERANCE + 100, "future")]
)
async def test_standard_webhook_stale_or_future_is_refused(
    app: Client, offset: int, word: str
) -> None:
    client, _bus, _seen = app
    body, headers = standard_request({"type": "x"}, at=int(time.time()) + offset)
    answer = refused(
        await client.post("/webhooks/acme", content=body, headers=headers), 401, "stale"
    )
    assert word in answer["detail"]


@pytest.mark.parametrize(
    "change",
    [
        {"webhook-signature": None},
        {"webhook-id": None},
        {"webhook-timestamp": None},
        {"webhook-timestamp": "yesterday"},
        {"webhook-id": "msg_another"},  # the id is part of what is signed
        {"webhook-signature": f"v1,{STANDARD_OTHER}"},
        {"webhook-signature": "v1,!!!"},
    ],
)
async def test_standard_webhook_missing_malformed_or_forged_is_401(
    app: Client, change: dict[str, str | None]
) -> None:
    client, _bus, seen = app
    body, headers = standard_request({"type": "x"})
    for name, value in change.items():
        del headers[name]
        if value is not None:
            headers[name] = value
    refused(await client.post("/webhooks/acme", content=body, headers=headers), 401, "signature")
    assert seen == []


async def test_standard_webhook_signed_for_another_source_is_401() -> None:
    bus = EventBus("memory://")
    settings = HTTPSettings(webhook_secrets={"acme": ACME_SECRET, "other": STANDARD_SECRET})
    async with serve(bus, settings) as client:
        body, headers = standard_request({"type": "x"})  # signed with acme's secret
        response = await client.post("/webhooks/other", content=body, headers=headers)
        refused(response, 401, "signature")


async def test_unknown_source_is_404(app: Client) -> None:
    client, _bus, _seen = app
    body, headers = standard_request({"type": "x"})
    answer = refused(
        await client.post("/webhooks/nobody", content=body, headers=headers), 404, "not_configured"
    )
    assert "NERVE_WEBHOOK_SECRETS" in answer["detail"]


# configuration, limits, metrics, schema


@pytest.mark.parametrize(
    ("path", "variable"),
    [
        ("/webhooks/github", "NERVE_GITHUB_WEBHOOK_SECRET"),
        ("/webhooks/stripe", "NERVE_STRIPE_WEBHOOK_SECRET"),
        ("/webhooks/acme", "NERVE_WEBHOOK_SECRETS"),
    ],
)
async def test_unconfigured_provider_is_404_naming_the_variable(path: str, variable: str) -> None:
    async with serve(EventBus("memory://"), HTTPSettings(api_keys=["k"])) as client:
        answer = refused(await client.post(path, content=b"{}"), 404, "not_configured")
        assert variable in answer["detail"]


async def test_too_large_body_is_413_before_verification() -> None:
    settings = HTTPSettings(github_webhook_secret=[GITHUB_SECRET], max_body_bytes=64)
    async with serve(EventBus("memory://"), settings) as client:
        body, headers = github_request({"big": "x" * 100})
        response = await client.post("/webhooks/github", content=body, headers=headers)
        refused(response, 413, "too_large")


async def test_rejections_are_counted_by_reason(app: Client) -> None:
    client, _bus, _seen = app
    await client.post("/webhooks/github", content=b"{}")
    body, headers = stripe_request(STRIPE_EVENT, at=int(time.time()) - 10 * TOLERANCE)
    await client.post("/webhooks/stripe", content=body, headers=headers)
    metrics = (await client.get("/metrics", headers={"Authorization": "Bearer an-event-key"})).text
    assert 'nerve_http_requests_rejected_total{reason="signature"} 1.0' in metrics
    assert 'nerve_http_requests_rejected_total{reason="stale"} 1.0' in metrics


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"webhook_secrets": {"Acme Corp": ACME_SECRET}}, "not one event-type segment"),
        ({"webhook_secrets": {"github": ACME_SECRET}}, "NERVE_GITHUB_WEBHOOK_SECRET"),
        ({"webhook_secrets": {"acme": "whsec_***"}}, "base64"),
        ({"github_webhook_secret": [" "]}, "may not be empty"),
    ],
)
def test_bad_configuration_fails_at_startup(settings: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        create_app(EventBus("memory://"), HTTPSettings(**settings))


def test_secrets_are_not_in_error_messages() -> None:
    with pytest.raises(ValueError, match="base64") as caught:
        create_app(EventBus("memory://"), HTTPSettings(webhook_secrets={"acme": "whsec_s3cr3t!"}))
    assert "s3cr3t" not in str(caught.value)


def test_openapi_documents_configured_webhooks_only() -> None:
    spec = create_app(EventBus("memory://"), SETTINGS).openapi()
    for path, headers in {
        "/webhooks/github": {"X-Hub-Signature-256", "X-GitHub-Event", "X-GitHub-Delivery"},
        "/webhooks/stripe": {"Stripe-Signature"},
        "/webhooks/{source}": {"webhook-id", "webhook-timestamp", "webhook-signature"},
    }.items():
        operation = spec["paths"][path]["post"]
        assert set(operation["responses"]) == {
            "202",
            "400",
            "401",
            "403",
            "404",
            "408",
            "413",
            "415",
            "422",
            "503",
        }
        assert headers <= {p["name"] for p in operation["parameters"] if p["in"] == "header"}
    source = spec["paths"]["/webhooks/{source}"]["post"]["parameters"][0]
    assert source["schema"]["enum"] == ["acme"]
    bare = create_app(EventBus("memory://"), HTTPSettings(api_keys=["k"])).openapi()
    assert not [path for path in bare["paths"] if path.startswith("/webhooks")]
