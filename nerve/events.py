"""The event envelope and its lossless CloudEvents 1.0 mapping."""

from __future__ import annotations

import itertools
import json
import os
import re
import time
from collections.abc import Iterable, Mapping
from typing import Any, Generic, Self, cast

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    JsonValue,
    TypeAdapter,
    ValidationInfo,
    field_validator,
)
from typing_extensions import TypeVar

from nerve import constants

# The default is Any for the type checker (``event.payload["id"]`` needs no narrowing);
# at run time an unparametrised Event still validates its payload as a JSON value.
#: A pydantic error, as ``ValidationError.errors()`` or FastAPI give them.
E = TypeVar("E", bound=Mapping[str, object])
PayloadT = TypeVar("PayloadT", default=Any)
_JSON: TypeAdapter[JsonValue] = TypeAdapter(JsonValue)

_EXTENSION_NAME = re.compile(constants.CE_EXTENSION_RE)
_EVENT_TYPE = re.compile(constants.EVENT_TYPE_RE)
#: Metadata keeping a CloudEvent's ``type`` when it is not an event type itself
#: (``Microsoft.Storage.BlobCreated``): the event is routed on its :func:`dotted` form.
CE_TYPE_KEY = "ce-type"
#: Optional CloudEvents attributes kept in metadata under their own names (a
#: ``datacontenttype`` only when it is not JSON, what every event's data is).
_CE_KEPT = frozenset({"subject", "dataschema", "datacontenttype"})
_CE_JSON = "application/json"
# Word boundaries inside camelCase and acronyms: "paymentIntent", "HTTPRequest".
_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])")
_OUTSIDE_SEGMENT = re.compile(r"[^a-z0-9_-]+")

#: Validation context key: the payload was just parsed from JSON, so it is JSON already
#: (``Event.model_validate(data, context={PARSED_JSON: True})``).
PARSED_JSON = "nerve_parsed_json"


_SCALARS = frozenset({str, int, float, bool, type(None)})

# UUIDv7 (RFC 9562): 48 bits of Unix milliseconds, then per-process random bits and a
# counter (the RFC's "monotonic random" method), so ids sort by time and never repeat in
# a process. A forked child draws new random bits.
_MASK_62 = (1 << 62) - 1
_id_high = 0
_id_base = 0
_id_counter = itertools.count()


def _reseed_ids() -> None:
    global _id_high, _id_base, _id_counter
    bits = int.from_bytes(os.urandom(10), "big")
    _id_high = (0x7 << 76) | ((bits >> 68) << 64) | (0b10 << 62)  # version 7, variant 10
    _id_base = bits & _MASK_62
    _id_counter = itertools.count()


_reseed_ids()
os.register_at_fork(after_in_child=_reseed_ids)


def segment(name: str) -> str:
    """A foreign name as one event-type segment: snake_case in ``[a-z0-9_-]``.

    ``"pull_request"`` stays, ``"paymentIntent"`` becomes ``"payment_intent"``, runs of
    other characters become one ``_``; ``""`` when nothing is left.
    """
    snake = _CAMEL.sub("_", name.strip()).lower()
    return _OUTSIDE_SEGMENT.sub("_", snake).strip("_")


def dotted(name: str) -> str:
    """A foreign dotted name (``"invoice.paid"``) as event-type segments; ``""`` if none.

    How webhook types and CloudEvents types that are not event types become event types:
    ``Microsoft.Storage.BlobCreated`` -> ``microsoft.storage.blob_created``.
    """
    routed = ".".join(part for part in map(segment, name.split(".")) if part)
    if len(routed) > 255:  # an event type's limit; the name itself is kept by the caller
        routed = routed[:255].rstrip(".")
    return routed


def new_event_id() -> str:
    """A new time-ordered UUIDv7 string."""
    low = (_id_base + next(_id_counter)) & _MASK_62
    h = f"{(time.time_ns() // 1_000_000) << 80 | _id_high | low:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


_second: tuple[int, str] = (-1, "")


def utc_now() -> str:
    """Now as ISO 8601 UTC with microseconds, e.g. ``2026-11-25T10:54:20.375311+00:00``."""
    global _second
    sec, ns = divmod(time.time_ns(), 1_000_000_000)
    cached, prefix = _second
    if sec != cached:  # formatting the date costs more than the rest: once a second
        prefix = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(sec))
        _second = (sec, prefix)
    return f"{prefix}.{ns // 1000:06d}+00:00"


class Event(BaseModel, Generic[PayloadT]):
    """Something that happened, addressed to every subscription whose pattern matches.

    Immutable. ``Event[Model]`` in a handler's signature asks nerve to validate the payload
    into ``Model`` before the handler runs (an invalid payload is dead-lettered unretried).

    Example:
        ```python
        Event(event_type="support.ticket.created", payload={"id": 7, "body": "..."})
        ```
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    event_type: str = Field(
        pattern=constants.EVENT_TYPE_RE,
        max_length=255,
        description="Dot-separated segments of [a-z0-9_-], e.g. support.ticket.created.",
    )
    payload: PayloadT = Field(default_factory=dict, description="Any JSON value.")  # type: ignore[assignment]  # a dict is a valid payload; mypy cannot see through the TypeVar
    event_id: str = Field(
        default_factory=new_event_id,
        min_length=1,
        max_length=255,
        pattern=constants.PRINTABLE_RE,
        description="Printable: no control characters or line breaks.",
    )
    timestamp: str = Field(
        default_factory=utc_now,
        max_length=64,
        pattern=constants.PRINTABLE_RE,
        description="ISO 8601, UTC.",
    )
    source: str = Field(
        default="",
        max_length=2048,
        pattern=constants.PRINTABLE_RE,
        description="Who emitted it (a URI-reference). Printable.",
    )
    correlation_id: str = Field(
        default_factory=lambda data: data["event_id"],
        max_length=255,
        pattern=constants.PRINTABLE_RE,
        description="Shared by a whole chain: the event_id of its root event. Printable.",
    )
    causation_id: str | None = Field(
        default=None,
        max_length=255,
        pattern=constants.PRINTABLE_RE,
        description="The event whose handler published this one. Printable.",
    )
    metadata: dict[str, str] = Field(default_factory=dict)

    @field_validator("payload")
    @classmethod
    def _payload_is_json(cls, value: Any, info: ValidationInfo) -> Any:
        if cls.__pydantic_generic_metadata__["args"]:
            return value  # Event[Model]: the model validated it
        if info.context is not None and info.context.get(PARSED_JSON):
            return value  # it comes straight from a JSON parser
        if type(value) is dict:
            scalars = _SCALARS
            for key, item in value.items():
                if type(item) not in scalars or type(key) is not str:
                    break
            else:
                return value  # a flat JSON object, the common case: no deeper walk needed
        _JSON.validate_python(value)
        return value

    @property
    def chain_depth(self) -> int:
        """How many handlers stand between this event and the root of its chain."""
        return int(self.metadata.get(constants.CHAIN_DEPTH_KEY, "0"))

    def to_cloudevent(self) -> dict[str, Any]:
        """This event as a CloudEvents 1.0 structured-mode dict (JSON data).

        ``correlation_id`` and ``causation_id`` become extensions; metadata whose keys are
        valid extension names become extensions too, ``subject``, ``dataschema`` and a
        ``datacontenttype`` their attributes, ``ce-type`` (a foreign ``type`` this event
        was routed from) the ``type``; the rest travels JSON-encoded in the
        ``nervemetadata`` extension, so :meth:`from_cloudevent` gives back an equal event.
        """
        ce: dict[str, Any] = {
            "specversion": constants.CE_SPECVERSION,
            "type": self.event_type,
            "source": self.source or constants.CE_UNSET_SOURCE,
            "id": self.event_id,
            "time": self.timestamp,
            "datacontenttype": _CE_JSON,
            "data": self.payload,
            constants.CE_CORRELATION: self.correlation_id,
        }
        if self.causation_id is not None:
            ce[constants.CE_CAUSATION] = self.causation_id
        packed: dict[str, str] = {}
        for key, value in self.metadata.items():
            if key == CE_TYPE_KEY and _routed(value) == self.event_type:
                ce["type"] = value
            elif _own_attribute(key, value):
                ce[key] = value
            else:
                packed[key] = value
        if packed:
            ce[constants.CE_METADATA] = json.dumps(packed, sort_keys=True)
        return ce

    @classmethod
    def from_cloudevent(cls, ce: dict[str, Any]) -> Self:
        """Build an event from a CloudEvents 1.0 dict (structured mode, JSON data).

        Every attribute is kept. Unknown extension attributes, ``subject``, ``dataschema``
        and a ``datacontenttype`` other than JSON land in ``metadata`` (as strings). A
        ``type`` that is not an event type (``Microsoft.Storage.BlobCreated``) is routed
        on its :func:`dotted` form (``microsoft.storage.blob_created``) and kept whole in
        ``metadata["ce-type"]``.

        Raises:
            pydantic.ValidationError: the attributes do not make a valid event.
            ValueError: ``nervemetadata`` is not a JSON object of strings.
        """
        source = ce.get("source", "")
        metadata: dict[str, str] = {}
        for key, value in ce.items():
            if key not in constants.CE_RESERVED or (key in _CE_KEPT and value != _CE_JSON):
                metadata[key] = value if isinstance(value, str) else json.dumps(value)
        packed = ce.get(constants.CE_METADATA)
        if packed is not None and packed != "":
            metadata.update(_unpacked(packed))
        kind = ce.get("type")
        routed = _routed(kind) if isinstance(kind, str) else None
        if routed:
            metadata[CE_TYPE_KEY] = cast(str, kind)
            kind = routed
        fields: dict[str, Any] = {
            "event_type": kind,
            "payload": ce.get("data", {}),
            "source": "" if source == constants.CE_UNSET_SOURCE else source,
            "metadata": metadata,
        }
        for attr, field in (
            ("id", "event_id"),
            ("time", "timestamp"),
            (constants.CE_CORRELATION, "correlation_id"),
            (constants.CE_CAUSATION, "causation_id"),
        ):
            if ce.get(attr) is not None:
                fields[field] = ce[attr]
        return cls.model_validate(fields)


def _own_attribute(key: str, value: str) -> bool:
    """Whether metadata travels as a CloudEvents attribute of its own (else packed)."""
    if key in _CE_KEPT:
        return bool(value) and value != _CE_JSON  # non-empty; JSON is the default
    return bool(_EXTENSION_NAME.match(key)) and key not in constants.CE_RESERVED


def _routed(kind: str) -> str | None:
    """The event type a CloudEvents ``type`` outside the grammar is routed on (None for
    an event type itself, or a type with nothing to route on)."""
    if _EVENT_TYPE.match(kind):
        return None
    return dotted(kind) or None


def _unpacked(packed: Any) -> dict[str, str]:
    """The metadata :meth:`Event.to_cloudevent` packed into ``nervemetadata``.

    Raises:
        ValueError: not a JSON object of strings.
    """
    try:
        value = json.loads(packed) if isinstance(packed, str) else None
    except ValueError:
        value = None
    if type(value) is not dict or not all(type(item) is str for item in value.values()):
        raise ValueError(
            f"{constants.CE_METADATA} must be a JSON object of strings, as nerve writes it"
        )
    return cast(dict[str, str], value)


def real_errors(errors: Iterable[E]) -> list[E]:
    """``errors`` (pydantic's) without the one pydantic adds for ``correlation_id`` when
    any field before it failed (``default_factory_not_called``): its default reads the
    validated ``event_id``, so it is skipped, not wrong. What the HTTP edge and the CLI
    show. (A model validator dropping it would cost every event a Python call.)"""
    return [e for e in errors if e["type"] != "default_factory_not_called"]
