"""Event: validation and the lossless CloudEvents 1.0 round trip."""

from __future__ import annotations

import json
import os
import time
import uuid
from datetime import datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from nerve import Event
from nerve.constants import CE_UNSET_SOURCE
from nerve.events import new_event_id, real_errors, utc_now

segment = st.from_regex(r"\A[a-z0-9_-]{1,8}\Z")
#: Any text Python strings can carry through pydantic: no lone surrogates (category Cs),
#: which pydantic refuses in every str field, so generating an event with one fails.
unicode = st.characters(blacklist_categories=["Cs"])
event_types = st.lists(segment, min_size=1, max_size=5).map(".".join)
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False)
    | st.text(unicode, max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.text(unicode, max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
metadata = st.dictionaries(
    st.text(unicode, min_size=1, max_size=25) | st.from_regex(r"\A[a-z0-9]{1,20}\Z"),
    st.text(unicode, max_size=20),
    max_size=5,
)
#: What ids and sources may hold: anything printable (no control characters, no line breaks).
printable = st.characters(blacklist_categories=("Cc", "Cs", "Zl", "Zp"))
events: st.SearchStrategy[Event] = st.builds(
    Event,
    event_type=event_types,
    payload=json_values,
    event_id=st.text(printable, min_size=1, max_size=40),
    timestamp=st.datetimes().map(lambda d: d.isoformat() + "Z"),
    source=st.text(printable, max_size=30).filter(lambda s: s != CE_UNSET_SOURCE),
    correlation_id=st.text(printable, min_size=1, max_size=40),
    causation_id=st.none() | st.text(printable, min_size=1, max_size=40),
    metadata=metadata,
)


def test_defaults() -> None:
    event = Event(event_type="support.ticket.created")
    assert event.payload == {}
    assert uuid.UUID(event.event_id).version == 7
    assert datetime.fromisoformat(event.timestamp).utcoffset() is not None
    assert event.source == ""
    assert event.correlation_id == event.event_id
    assert event.causation_id is None
    assert event.metadata == {}
    assert Event(event_type="a").event_id != event.event_id


def test_event_ids_are_unique_and_sort_by_time() -> None:
    ids = [new_event_id() for _ in range(10_000)]
    assert len(set(ids)) == len(ids)
    assert ids == sorted(ids)
    parsed = uuid.UUID(ids[0])
    assert (parsed.version, parsed.variant) == (7, uuid.RFC_4122)
    assert abs((parsed.int >> 80) - time.time() * 1000) < 60_000  # its clock is now


def test_a_forked_child_draws_other_ids() -> None:
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: send one id and leave at once
        os.write(write, new_event_id().encode())
        os._exit(0)
    os.waitpid(pid, 0)
    child = os.read(read, 64).decode()
    mine = new_event_id()
    assert child[14:] != mine[14:]  # the same millisecond may lead; the random tail differs


def test_timestamps_are_iso_utc_with_microseconds() -> None:
    stamp = utc_now()
    parsed = datetime.fromisoformat(stamp)
    assert parsed.utcoffset() == timedelta(0)
    assert abs(parsed.timestamp() - time.time()) < 5


@pytest.mark.parametrize(
    "bad", ["", "Support.ticket", "a..b", ".a", "a.", "a b", "a/b", "ticket.créé", "a.*", "a.#"]
)
def test_invalid_event_types_are_rejected_with_a_clear_error(bad: str) -> None:
    with pytest.raises(ValidationError, match="event_type") as info:
        Event(event_type=bad)
    assert "String should match pattern" in str(info.value)


@pytest.mark.parametrize(
    ("fields", "invalid"),
    [
        ({"event_type": "X.Y"}, [("event_type",)]),
        ({"event_type": "a.b", "event_id": ""}, [("event_id",)]),
        ({"event_type": "a.b", "payload": {1, 2}}, [("payload",)]),
        (
            {"event_type": "X", "source": "a\nb", "causation_id": "c\rd"},
            [("event_type",), ("source",), ("causation_id",)],
        ),
    ],
)
def test_only_the_invalid_fields_are_reported(
    fields: dict[str, object], invalid: list[tuple[str, ...]]
) -> None:
    # correlation_id defaults to the validated event_id: pydantic reported it as an error
    # of its own (default_factory_not_called) once any field before it failed, so a 422
    # for a bad event_type named a correlation_id the sender never sent.
    with pytest.raises(ValidationError) as caught:
        Event.model_validate(fields)
    assert [e["loc"] for e in real_errors(caught.value.errors())] == invalid
    assert caught.value.title == "Event"


def test_events_are_immutable() -> None:
    event = Event(event_type="a.b")
    with pytest.raises(ValidationError, match="frozen"):
        event.event_type = "c.d"  # type: ignore[misc]


def test_payload_must_be_json() -> None:
    with pytest.raises(ValidationError, match="payload"):
        Event(event_type="a.b", payload={"when": datetime.now()})


def test_unknown_fields_are_rejected() -> None:
    with pytest.raises(ValidationError, match="evnt_id"):
        Event(event_type="a.b", evnt_id="x")  # type: ignore[call-arg]


def test_cloudevent_shape() -> None:
    event = Event(
        event_type="github.push",
        payload={"ref": "main"},
        source="https://github.com/org/repo",
        causation_id="c1",
        metadata={"traceparent": "00-abc-def-01", "X-User": "ada"},
    )
    ce = event.to_cloudevent()
    assert ce["specversion"] == "1.0"
    assert ce["type"] == "github.push"
    assert ce["id"] == event.event_id
    assert ce["time"] == event.timestamp
    assert ce["source"] == "https://github.com/org/repo"
    assert ce["data"] == {"ref": "main"}
    assert ce["correlationid"] == event.event_id
    assert ce["causationid"] == "c1"
    assert ce["traceparent"] == "00-abc-def-01"
    assert json.loads(ce["nervemetadata"]) == {"X-User": "ada"}
    assert Event(event_type="a").to_cloudevent()["source"] == CE_UNSET_SOURCE


@given(events)
def test_cloudevents_round_trip_is_lossless(event: Event) -> None:
    ce = event.to_cloudevent()
    assert Event.from_cloudevent(json.loads(json.dumps(ce))) == event


def test_from_a_foreign_cloudevent() -> None:
    event = Event.from_cloudevent(
        {
            "specversion": "1.0",
            "type": "com.example.thing",
            "source": "/sensors/7",
            "id": "A234-1234",
            "time": "2018-04-05T17:31:00Z",
            "data": {"temp": 41},
            "comexampleext": 5,
        }
    )
    assert event.event_type == "com.example.thing"
    assert event.correlation_id == "A234-1234"
    assert event.metadata == {"comexampleext": "5"}


@pytest.mark.parametrize("field", ["event_id", "correlation_id", "causation_id", "source"])
@pytest.mark.parametrize("bad", ["a\nb", "a\rb", "x\x1b[31m", "\x00", "a\u2028b", "\x85"])
def test_ids_and_sources_are_printable(field: str, bad: str) -> None:
    # A line break in an id would let a sender write a fake line into a text log.
    with pytest.raises(ValidationError) as caught:
        Event(event_type="a.b", **{field: bad})
    assert caught.value.errors()[0]["loc"] == (field,)


def test_printable_ids_may_be_any_unicode() -> None:
    event = Event(event_type="a.b", event_id="bestellung-ü-42 #7", source="https://ex.org/a?b=c")
    assert event.event_id == "bestellung-ü-42 #7"


@pytest.mark.parametrize(
    "packed", [5, "5", "null", "[1, 2]", "true", '"text"', '{"a": 1}', "{", {"a": "b"}, [1]]
)
def test_a_malformed_nervemetadata_is_a_value_error(packed: object) -> None:
    ce = Event(event_type="a.b").to_cloudevent() | {"nervemetadata": packed}
    with pytest.raises(ValueError, match="nervemetadata must be a JSON object of strings"):
        Event.from_cloudevent(ce)


@pytest.mark.parametrize(
    ("kind", "event_type"),
    [
        ("Microsoft.Storage.BlobCreated", "microsoft.storage.blob_created"),
        ("com.github.pull_request.opened", "com.github.pull_request.opened"),
        ("aws.s3@ObjectCreated:Put", "aws.s3_object_created_put"),
        ("x" * 200 + "." + "AbAb" * 30, ("x" * 200 + "." + "ab_ab_" * 10)[:255].rstrip(".")),
    ],
)
def test_a_cloudevents_type_is_routed_on_its_segments_and_kept_whole(
    kind: str, event_type: str
) -> None:
    ce = {"specversion": "1.0", "id": "1", "source": "s", "type": kind, "data": {}}
    event = Event.from_cloudevent(ce)
    assert event.event_type == event_type
    assert event.metadata == ({} if kind == event_type else {"ce-type": kind})
    assert event.to_cloudevent()["type"] == kind
    assert Event.from_cloudevent(event.to_cloudevent()) == event


def test_every_cloudevents_attribute_reaches_the_event() -> None:
    ce = {
        "specversion": "1.0",
        "id": "1",
        "source": "/storage",
        "type": "blob.created",
        "subject": "container/blob.txt",
        "dataschema": "https://example.com/blob.json",
        "datacontenttype": "application/json",  # what every event's data is: not kept
        "data": {"size": 3},
    }
    event = Event.from_cloudevent(ce)
    assert event.metadata == {
        "subject": "container/blob.txt",
        "dataschema": "https://example.com/blob.json",
    }
    other = Event.from_cloudevent(ce | {"datacontenttype": "text/json"})
    assert other.metadata["datacontenttype"] == "text/json"
    back = other.to_cloudevent()
    assert (back["subject"], back["dataschema"], back["datacontenttype"]) == (
        "container/blob.txt",
        "https://example.com/blob.json",
        "text/json",
    )


cloudevents_metadata = st.dictionaries(
    st.sampled_from(["subject", "dataschema", "datacontenttype", "ce-type", "region"])
    | st.text(unicode, max_size=12),
    st.sampled_from(["", "application/json", "Foo.Bar", "a.b", "x"])
    | st.text(unicode, max_size=12),
    max_size=5,
)


@given(events, cloudevents_metadata)
def test_cloudevents_round_trip_is_lossless_with_attribute_like_metadata(
    event: Event, extra: dict[str, str]
) -> None:
    event = event.model_copy(update={"metadata": {**event.metadata, **extra}})
    if "ce-type" in extra:
        event = event.model_copy(update={"event_type": "foo.bar"})
    ce = event.to_cloudevent()
    assert Event.from_cloudevent(json.loads(json.dumps(ce))) == event
