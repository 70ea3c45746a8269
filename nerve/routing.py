"""Patterns and the routing table that maps an event type to its subscribers.

Patterns follow AMQP topic semantics, the same on every transport: ``*`` matches exactly
one segment, ``#`` zero or more (``deployment.*``, ``github.#``, ``#``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Generic, TypeVar

from nerve import constants
from nerve.exceptions import SubscriptionError

T = TypeVar("T")

_PATTERN_SEGMENT = re.compile(rf"^(?:{constants.SEGMENT_RE}|\*|#)$")
_CACHE_LIMIT = 10_000


def validate_pattern(pattern: str) -> str:
    """Return ``pattern`` if it is a valid subscription pattern.

    Raises:
        SubscriptionError: a segment is neither ``[a-z0-9_-]+``, ``*`` nor ``#``.
    """
    if not pattern or not all(_PATTERN_SEGMENT.match(seg) for seg in pattern.split(".")):
        raise SubscriptionError(
            f"invalid pattern {pattern!r}: use dot-separated segments of [a-z0-9_-], "
            "'*' (exactly one segment) or '#' (zero or more), e.g. 'deployment.*'"
        )
    return pattern


def compile_pattern(pattern: str) -> re.Pattern[str]:
    """Compile a pattern to a regex matched against ``"." + event_type``.

    Giving every segment its leading dot lets ``#`` match zero segments without special
    cases: ``a.#.b`` becomes ``\\.a(?:\\.seg)*\\.b`` and matches ``a.b`` and ``a.x.y.b``.
    """
    parts = []
    for seg in validate_pattern(pattern).split("."):
        if seg == constants.WILDCARD_ANY:
            parts.append(rf"(?:\.{constants.SEGMENT_RE})*")
        elif seg == constants.WILDCARD_ONE:
            parts.append(rf"\.{constants.SEGMENT_RE}")
        else:
            parts.append(r"\." + re.escape(seg))
    return re.compile("".join(parts))


def matches(pattern: str, event_type: str) -> bool:
    """Whether ``event_type`` matches ``pattern`` (uncached; see :class:`Router`)."""
    return compile_pattern(pattern).fullmatch("." + event_type) is not None


class Router(Generic[T]):
    """Maps an event type to the targets whose pattern matches it, cached per type.

    Matching runs once per distinct event type; every later event of that type costs one
    dict lookup. Adding a route clears the cache.
    """

    def __init__(self) -> None:
        self._exact: dict[str, list[T]] = {}
        self._wild: list[tuple[re.Pattern[str], T]] = []
        self._cache: dict[str, tuple[T, ...]] = {}

    def add(self, pattern: str, target: T) -> None:
        if "*" in pattern or "#" in pattern:
            self._wild.append((compile_pattern(pattern), target))
        else:
            self._exact.setdefault(validate_pattern(pattern), []).append(target)
        self._cache.clear()

    def remove(self, target: T) -> None:
        for targets in self._exact.values():
            if target in targets:
                targets.remove(target)
        self._wild = [(rx, t) for rx, t in self._wild if t is not target]
        self._cache.clear()

    def match(self, event_type: str) -> tuple[T, ...]:
        try:
            return self._cache[event_type]
        except KeyError:
            pass
        dotted = "." + event_type
        found = tuple(self._exact.get(event_type, ())) + tuple(
            t for rx, t in self._wild if rx.fullmatch(dotted)
        )
        if len(self._cache) >= _CACHE_LIMIT:
            self._cache.clear()
        self._cache[event_type] = found
        return found

    def targets(self) -> Iterable[T]:
        for targets in self._exact.values():
            yield from targets
        for _, t in self._wild:
            yield t
