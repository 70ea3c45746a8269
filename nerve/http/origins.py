"""Browser origins: a page of another site may not call this app unless it is allowed.

A browser sends ``Origin`` with every cross-origin request, and with same-origin ones
other than GET and HEAD; other clients (curl, SDKs, webhook senders) send none. A request
whose ``Origin`` is neither this app's own (its host and port are the request's ``Host``)
nor listed in ``NERVE_ALLOWED_ORIGINS`` is refused (403 ``cross_origin``), so a web page
a user visits cannot publish to the nerve on their machine.

With no API key configured, a page's own origin counts only on a loopback host
(``localhost``, ``127.x.x.x``, ``[::1]``): a site whose name an attacker points at
127.0.0.1 (DNS rebinding) is the page's own origin to the browser, and would otherwise
reach a nerve that asks no key.

The pages of an allowed origin get CORS answers too (the app's ``CORSMiddleware``, and
:meth:`Origins.cors_headers` on the fast path), so that their browser sends them JSON
and lets them read the answer.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping, Sequence

from nerve.http.problems import HTTPProblem

_DEFAULT_PORTS = {"http": ":80", "https": ":443"}


def authority(origin: str) -> str | None:
    """``host[:port]`` of an ``Origin`` value, lower case, without the scheme's default
    port; None when it is not ``scheme://authority`` (``null``, a path)."""
    scheme, separator, rest = origin.strip().lower().partition("://")
    if not separator or not rest or "/" in rest:
        return None
    default = _DEFAULT_PORTS.get(scheme)
    return rest.removesuffix(default) if default else rest


def is_loopback(host: str) -> bool:
    """Whether ``host`` (a name or an address, with a port or not) names this machine only."""
    if host.startswith("["):  # [::1]:8000
        host = host[1 : host.find("]")]
    elif host.count(":") == 1:  # 127.0.0.1:8000, localhost:8000 (not ::1)
        host = host.partition(":")[0]
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class Origins:
    """Which browser origins may call the app.

    Args:
        allowed: origins allowed besides the app's own (``*``: any).
        keyless: no API key is configured (the app's own origin then counts only on a
            loopback host).
    """

    def __init__(self, allowed: Sequence[str], *, keyless: bool) -> None:
        self._any = "*" in allowed
        self._allowed = frozenset(a for a in map(authority, allowed) if a)
        self._keyless = keyless
        #: Some origin is allowed: their pages get CORS answers.
        self.cors = bool(allowed)

    def allows(self, origin: str) -> bool:
        """Whether pages of ``origin`` are allowed (``NERVE_ALLOWED_ORIGINS``)."""
        return self._any or authority(origin) in self._allowed

    def cors_headers(self, headers: Mapping[str, str]) -> dict[str, str]:
        """The CORS headers of an answer to a page of an allowed origin (else none)."""
        origin = headers.get("origin") if self.cors else None
        if origin is None or not self.allows(origin):
            return {}
        return {"Access-Control-Allow-Origin": "*" if self._any else origin, "Vary": "Origin"}

    def check(self, headers: Mapping[str, str]) -> None:
        """Let the request through unless a page of a foreign origin sent it.

        Raises:
            HTTPProblem: 403 ``cross_origin``.
        """
        if "origin" not in headers:  # not a browser's cross-site request (the usual case)
            return
        origin = headers["origin"]
        if self.allows(origin):
            return
        site = authority(origin)
        host = headers.get("host", "").strip().lower()
        for port in _DEFAULT_PORTS.values():
            host = host.removesuffix(port)
        if site is not None and site == host and (not self._keyless or is_loopback(host)):
            return
        if site is not None and site == host:
            detail = (
                f"this server asks no API key, so pages may call it only from a loopback "
                f"host (localhost, 127.0.0.1), not from {origin!r}: set NERVE_API_KEYS, or "
                "add the origin to NERVE_ALLOWED_ORIGINS"
            )
        else:
            detail = (
                f"requests from pages of {origin!r} are not accepted here: add the origin "
                "to NERVE_ALLOWED_ORIGINS to allow it"
            )
        raise HTTPProblem(403, "cross_origin", detail)
