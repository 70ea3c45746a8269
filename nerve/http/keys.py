"""API keys: who may call which endpoint, compared in constant time.

Event keys (``api_keys``) open the event endpoints; admin keys (``admin_api_keys``) open
everything, and when none is set the event keys are admin keys too. With no key at all
every endpoint is open (development).
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping, Sequence

from pydantic import SecretStr

from nerve.http.problems import HTTPProblem
from nerve.http.settings import HTTPSettings


def matches_any(given: bytes, candidates: Sequence[bytes]) -> bool:
    """Constant-time membership: compares with every candidate, whatever matches first."""
    found = False
    for candidate in candidates:
        found |= hmac.compare_digest(given, candidate)
    return found


def _secret_bytes(secrets: Sequence[SecretStr]) -> list[bytes]:
    return [s.get_secret_value().encode() for s in secrets]


class APIKeys:
    """The configured keys, checked against a request's ``Authorization: Bearer``.

    Args:
        settings: where ``api_keys`` and ``admin_api_keys`` come from.
    """

    def __init__(self, settings: HTTPSettings) -> None:
        self._event_keys = _secret_bytes(settings.api_keys) + _secret_bytes(settings.admin_api_keys)
        self._admin_keys = _secret_bytes(settings.admin_api_keys or settings.api_keys)

    @property
    def open(self) -> bool:
        """No key configured: every endpoint is open."""
        return not self._event_keys

    def authorize(self, headers: Mapping[str, str], *, admin: bool = False) -> None:
        """Let the request through if it carries a key for this endpoint.

        Raises:
            HTTPProblem: 401 without a valid key, 403 with an event key at an admin
                endpoint.
        """
        if not self._event_keys:
            return  # no keys configured: open (development)
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
