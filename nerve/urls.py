"""URLs of transports and stores: their scheme, a form safe to print, and nerve's own
options in their query (split from the client library's, parsed and checked)."""

from __future__ import annotations

import re
from collections.abc import Iterable
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from nerve.exceptions import ConfigurationError

__all__ = ["integer_option", "number_option", "redact", "scheme_of", "split_options"]


def scheme_of(url: str) -> str:
    """The scheme of ``url`` (``redis`` for ``redis://host``).

    Raises:
        ConfigurationError: ``url`` has no scheme, or a port that is not one.
    """
    try:
        parts = urlsplit(url)
        if "," not in parts.netloc:  # a list of servers (kafka://a:9092,b:9092) has no one port
            parts.port  # noqa: B018  # read to check it: a bad port raises ValueError
    except ValueError as exc:
        raise ConfigurationError(f"{redact(url)!r} is not a valid URL: {exc}") from None
    if not parts.scheme:
        raise ConfigurationError(f"{redact(url)!r} is not a URL: expected e.g. 'memory://'")
    return parts.scheme


#: ``//user:password@`` anywhere in a URL, also in one nested in its query (``?store=``).
_PASSWORD = re.compile(r"(//[^/:@?&#]*:)[^/@?&#]+@")


def redact(url: str) -> str:
    """``url`` with every password in it replaced by ``***``: safe to print and log."""
    return _PASSWORD.sub(r"\1***@", url)


def split_options(url: str, ours: Iterable[str]) -> tuple[str, dict[str, str]]:
    """Split ``url`` into the URL for the client library and nerve's own options."""
    names = set(ours)
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    options = {k: v for k, v in query if k in names}
    rest = urlencode([(k, v) for k, v in query if k not in names])
    return urlunsplit(parts._replace(query=rest)), options


def number_option(
    scheme: str, options: dict[str, str], name: str, default: float, *, minimum: float | None = None
) -> float:
    """Option ``name`` as a number: ``> 0``, or ``>= minimum`` when given."""
    raw = options.get(name)
    if raw is None:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigurationError(f"{scheme} URL option {name}={raw!r} is not a number") from None
    _check(scheme, name, raw, value, minimum)
    return value


def integer_option(
    scheme: str, options: dict[str, str], name: str, default: int, *, minimum: int | None = None
) -> int:
    """Option ``name`` as an integer: ``> 0``, or ``>= minimum`` when given."""
    raw = options.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigurationError(f"{scheme} URL option {name}={raw!r} is not an integer") from None
    _check(scheme, name, raw, value, minimum)
    return value


def _check(scheme: str, name: str, raw: str, value: float, minimum: float | None) -> None:
    if (value <= 0) if minimum is None else (value < minimum):
        bound = "> 0" if minimum is None else f">= {minimum:g}"
        raise ConfigurationError(f"{scheme} URL option {name} must be {bound}, got {raw!r}")
