"""Webhook signatures: GitHub, Stripe and Standard Webhooks, verified and made.

Pure functions over the raw body bytes and header values: no framework, no clock of
their own (``now`` is a parameter), no logging. Every secret is tried (rotation) and
every comparison is constant-time (:func:`hmac.compare_digest` against each candidate,
whichever matches first).

A timestamp outside the tolerance is checked after the signature, so
:class:`StaleSignature` always means a genuine request replayed or delayed, never a
forgery.

The ``sign_*`` functions make what the providers send, for tests and local senders.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
from collections.abc import Sequence

from nerve.http.keys import matches_any

#: Standard Webhooks' prefix for a symmetric secret (``whsec_`` + base64 key).
STANDARD_SECRET_PREFIX = "whsec_"  # noqa: S105  # a format prefix, not a secret

_HEX_SHA256 = re.compile(r"[0-9a-fA-F]{64}")
# Unix seconds as a plain decimal: int() alone would take "+1", " 1" and "1_0".
_UNIX_SECONDS = re.compile(r"[0-9]{1,12}")


class SignatureError(Exception):
    """A webhook signature is missing, malformed or matches no configured secret."""

    #: The rejection's ``error`` code (and metric reason).
    reason = "signature"


class StaleSignature(SignatureError):
    """A genuine signature whose timestamp is further from now than the tolerance."""

    reason = "stale"


def _hmac(key: bytes, *parts: bytes) -> bytes:
    mac = hmac.new(key, digestmod=hashlib.sha256)
    for part in parts:
        mac.update(part)
    return mac.digest()


def _hex_digest(value: str) -> bytes | None:
    return bytes.fromhex(value) if _HEX_SHA256.fullmatch(value) else None


def _check_age(timestamp: int, now: float, tolerance: float) -> None:
    skew = now - timestamp
    if skew > tolerance:
        raise StaleSignature(
            f"the signature's timestamp is {int(skew)} s old; the tolerance is {tolerance:g} s "
            "(a replayed or long-delayed delivery)"
        )
    if -skew > tolerance:
        raise StaleSignature(
            f"the signature's timestamp is {int(-skew)} s in the future; the tolerance is "
            f"{tolerance:g} s (check the clocks)"
        )


# GitHub


def sign_github(body: bytes, secret: bytes) -> str:
    """The ``X-Hub-Signature-256`` value GitHub sends for ``body``."""
    return "sha256=" + _hmac(secret, body).hex()


def verify_github(body: bytes, header: str | None, secrets: Sequence[bytes]) -> None:
    """Check ``X-Hub-Signature-256`` (``sha256=`` + hex HMAC-SHA256 of the body).

    GitHub signs the body only: no timestamp, so there is no replay window to enforce;
    a redelivery carries the same ``X-GitHub-Delivery`` and the bus handles it once.

    Raises:
        SignatureError: missing, malformed, or made with none of ``secrets``.
    """
    if not header:
        raise SignatureError("send X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the body>")
    scheme, _, value = header.partition("=")
    given = _hex_digest(value.strip())
    if scheme.strip().lower() != "sha256" or given is None:
        raise SignatureError("X-Hub-Signature-256 is not sha256=<64 hex digits>")
    if not matches_any(given, [_hmac(secret, body) for secret in secrets]):
        raise SignatureError("X-Hub-Signature-256 does not match the body with any secret")


# Stripe


def sign_stripe(body: bytes, secret: bytes, timestamp: int) -> str:
    """The ``Stripe-Signature`` value Stripe sends for ``body`` at ``timestamp``."""
    return f"t={timestamp},v1={_hmac(secret, str(timestamp).encode(), b'.', body).hex()}"


def verify_stripe(
    body: bytes, header: str | None, secrets: Sequence[bytes], *, now: float, tolerance: float
) -> int:
    """Check ``Stripe-Signature: t=<unix>,v1=<hex>[,v1=...][,v0=...]``; return ``t``.

    The signed payload is ``"<t>.<body>"``, the key the whole ``whsec_...`` string (as
    Stripe's libraries use it). Any ``v1`` may match any secret: Stripe sends one per
    active secret while one rolls. ``v0`` (test-mode legacy) is never accepted.

    Raises:
        SignatureError: missing, malformed, or no ``v1`` made with any of ``secrets``.
        StaleSignature: genuine, but ``t`` is more than ``tolerance`` seconds from ``now``.
    """
    if not header:
        raise SignatureError("send Stripe-Signature: t=<unix time>,v1=<hex HMAC-SHA256>")
    timestamp: str | None = None
    given: list[bytes] = []
    for item in header.split(","):
        key, _, value = item.partition("=")
        key, value = key.strip(), value.strip()
        if key == "t":
            timestamp = value
        elif key == "v1":
            digest = _hex_digest(value)
            if digest is not None:
                given.append(digest)
    if timestamp is None or not _UNIX_SECONDS.fullmatch(timestamp):
        raise SignatureError("Stripe-Signature has no t=<unix time>")
    if not given:
        raise SignatureError("Stripe-Signature has no v1=<64 hex digits> signature")
    expected = [_hmac(secret, timestamp.encode(), b".", body) for secret in secrets]
    if not any(matches_any(digest, expected) for digest in given):
        raise SignatureError("no v1 signature in Stripe-Signature matches with any secret")
    _check_age(int(timestamp), now, tolerance)
    return int(timestamp)


# Standard Webhooks


def standard_key(secret: str) -> bytes:
    """The HMAC key of a Standard Webhooks secret: ``whsec_<base64>`` (or bare base64).

    Raises:
        ValueError: not base64, or empty.
    """
    encoded = secret.strip().removeprefix(STANDARD_SECRET_PREFIX)
    try:
        key = base64.b64decode(encoded + "=" * (-len(encoded) % 4), validate=True)
    except binascii.Error:
        raise ValueError("a Standard Webhooks secret is whsec_ followed by base64") from None
    if not key:
        raise ValueError("a Standard Webhooks secret may not be empty")
    return key


def sign_standard(msg_id: str, timestamp: int, body: bytes, key: bytes) -> str:
    """A ``webhook-signature`` entry (``v1,<base64>``) for a message, with a decoded key."""
    digest = _hmac(key, msg_id.encode(), b".", str(timestamp).encode(), b".", body)
    return "v1," + base64.b64encode(digest).decode()


def verify_standard(
    body: bytes,
    msg_id: str | None,
    timestamp: str | None,
    signature: str | None,
    keys: Sequence[bytes],
    *,
    now: float,
    tolerance: float,
) -> int:
    """Check the Standard Webhooks headers ``webhook-id``, ``-timestamp``, ``-signature``.

    The signed content is ``"<id>.<timestamp>.<body>"``; the signature header holds
    space-separated ``<version>,<base64>`` entries, of which only ``v1`` (HMAC-SHA256)
    is checked (``v1a``, asymmetric, and unknown versions are skipped).

    Returns:
        The timestamp.

    Raises:
        SignatureError: a header missing or malformed, or no ``v1`` entry made with any
            of ``keys`` (decoded with :func:`standard_key`).
        StaleSignature: genuine, but more than ``tolerance`` seconds from ``now``.
    """
    missing = [
        name
        for name, value in (
            ("webhook-id", msg_id),
            ("webhook-timestamp", timestamp),
            ("webhook-signature", signature),
        )
        if not value
    ]
    if missing or msg_id is None or timestamp is None or signature is None:
        raise SignatureError(f"send the Standard Webhooks header(s) {', '.join(missing)}")
    if not _UNIX_SECONDS.fullmatch(timestamp):
        raise SignatureError("webhook-timestamp is not a Unix time in seconds")
    given: list[bytes] = []
    for entry in signature.split():
        version, _, value = entry.partition(",")
        if version == "v1":
            try:
                given.append(base64.b64decode(value, validate=True))
            except binascii.Error:
                continue
    if not given:
        raise SignatureError("webhook-signature has no v1,<base64> entry")
    # Header values reach us latin-1 decoded: encoding back gives the bytes that were sent.
    content = (msg_id.encode("latin-1"), b".", timestamp.encode(), b".", body)
    expected = [_hmac(key, *content) for key in keys]
    if not any(matches_any(digest, expected) for digest in given):
        raise SignatureError("no v1 entry in webhook-signature matches with any secret")
    _check_age(int(timestamp), now, tolerance)
    return int(timestamp)
