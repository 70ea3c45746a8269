"""Matching events to waits by paths: ``{"payload.refund_id": 7, "correlation_id": c}``.

A wait names the paths of the awaited event and the values they must have. Stores index
waits by ``(event_type, match key)``, where the key is the canonical JSON of the sorted
``(path, value)`` pairs, and keep, per event type, the *shapes* (sorted path tuples) of
the waits on it; a published event is then matched with one lookup per shape in use:
:func:`event_key` computes the event's key for a shape. Plain functions of JSON data,
shared by every store.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from nerve.events import Event

__all__ = ["event_key", "match_key", "matches", "value_at"]

_MISSING: Any = object()
#: The top-level fields of an event a path may start with.
_ROOTS = frozenset(
    {"payload", "metadata", "event_id", "event_type", "source", "correlation_id", "causation_id"}
)


def check_paths(match: Mapping[str, Any]) -> None:
    """Raise ValueError unless every key of ``match`` is a path into an event."""
    for path in match:
        if path.split(".", 1)[0] not in _ROOTS:
            raise ValueError(
                f"match path {path!r} must start with one of {sorted(_ROOTS)} "
                "(payload.refund_id, correlation_id, ...)"
            )


def value_at(event: Event[Any], path: str) -> Any:
    """The value at ``path`` (``payload.a.b``) in ``event``, or a sentinel if absent."""
    head, _, rest = path.partition(".")
    if head not in _ROOTS:
        return _MISSING
    value: Any = getattr(event, head)
    if head == "payload" and not isinstance(value, Mapping):
        value = _plain(value)
    for part in rest.split(".") if rest else ():
        if isinstance(value, Mapping) and part in value:
            value = value[part]
        elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        else:
            return _MISSING
    return value


def _plain(value: Any) -> Any:
    dump = getattr(value, "model_dump", None)
    return dump(mode="json") if callable(dump) else value


def match_key(match: Mapping[str, Any]) -> str:
    """The canonical key of a match: JSON of its sorted ``[path, value]`` pairs."""
    return json.dumps(sorted(match.items()), separators=(",", ":"), default=str)


def event_key(event: Event[Any], shape: Sequence[str]) -> str | None:
    """The key ``event`` has for a wait of this shape (sorted paths); None if a path is
    absent from it."""
    pairs = []
    for path in shape:
        value = value_at(event, path)
        if value is _MISSING:
            return None
        pairs.append((path, _plain(value)))
    return json.dumps(pairs, separators=(",", ":"), default=str)


def matches(event: Event[Any], match: Mapping[str, Any]) -> bool:
    """Whether ``event`` has every value ``match`` asks for."""
    return event_key(event, sorted(match)) == match_key(match)
