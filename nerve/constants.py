"""Wire names and fixed limits, in one place (as arq keeps its Redis prefixes)."""

from __future__ import annotations

from typing import Final

#: One segment of an event type or pattern.
SEGMENT_RE: Final = r"[a-z0-9_-]+"
#: A whole event type: dot-separated segments.
EVENT_TYPE_RE: Final = rf"^{SEGMENT_RE}(?:\.{SEGMENT_RE})*$"
#: Ids, sources and timestamps: any characters but control characters and line breaks
#: (a newline in an id would let a sender write a fake line into a text log).
PRINTABLE_RE: Final = r"^[^\x00-\x1f\x7f-\x9f\u2028\u2029]*$"

#: Pattern wildcards (AMQP topic semantics).
WILDCARD_ONE: Final = "*"
WILDCARD_ANY: Final = "#"

#: Metadata key carrying how deep in its causal chain an event is (root = 0).
CHAIN_DEPTH_KEY: Final = "nerve-chain-depth"

#: CloudEvents attributes.
CE_SPECVERSION: Final = "1.0"
#: CloudEvents requires a non-empty ``source``; an event with ``source=""`` uses this one.
CE_UNSET_SOURCE: Final = "urn:nerve:unset"
CE_CORRELATION: Final = "correlationid"
CE_CAUSATION: Final = "causationid"
#: Metadata that cannot be carried as CloudEvents extensions travels JSON-encoded here.
CE_METADATA: Final = "nervemetadata"
CE_RESERVED: Final = frozenset(
    {
        "specversion",
        "type",
        "source",
        "id",
        "time",
        "data",
        "data_base64",
        "datacontenttype",
        "dataschema",
        "subject",
        CE_CORRELATION,
        CE_CAUSATION,
        CE_METADATA,
    }
)
#: Valid CloudEvents extension attribute names.
CE_EXTENSION_RE: Final = r"^[a-z0-9]{1,20}$"

#: The store counter (``StepStore.add_to``) in which a subscription counts the starts of
#: an event's redeliveries (amount ``starts``), to catch crash loops.
STARTS_COUNTER: Final = "nerve.starts"
