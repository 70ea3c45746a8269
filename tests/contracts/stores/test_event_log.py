"""Contract ``EventLog`` (``nerve.history``): events in full with their outcomes, a feed
read by cursor, trimmed by age."""

from __future__ import annotations

import time

from nerve import Event
from nerve.stores.base import DEFAULT_HISTORY_RETENTION
from nerve.stores.redis import LOG_EVENT_KEY, RedisStore
from tests.contracts.stores import StoreFactory


def chain_of_three() -> list[Event]:
    root = Event(event_type="agent.a", payload={"step": 1})
    middle = Event(
        event_type="agent.b",
        payload={"step": 2, "nul": "a\x00b"},
        causation_id=root.event_id,
        correlation_id=root.correlation_id,
    )
    leaf = Event(
        event_type="agent.c",
        payload={"step": 3},
        causation_id=middle.event_id,
        correlation_id=root.correlation_id,
    )
    return [root, middle, leaf]


async def test_history_records_events_in_full_with_their_outcomes(
    make_store: StoreFactory,
) -> None:
    store = make_store()
    await store.open()
    root, middle, leaf = chain_of_three()
    other = Event(event_type="other.x")
    await store.record_history([(root, 100.0), (middle, 100.5)], [])
    await store.record_history(
        [(leaf, 101.0), (other, 101.5), (root, 999.0)],  # root again: kept as first logged
        [
            ("s1", root.event_id, 1, "retrying", 100.2, 0.01, "RuntimeError", "boom\x00"),
            ("s1", root.event_id, 2, "done", 100.4, 0.02, None, None),
            ("s2", middle.event_id, 1, "dead_lettered", 100.9, 0.5, "x.Reject", "no"),
        ],
    )
    record = await store.history_event(root.event_id)
    assert record is not None
    assert record.event == root
    assert record.published_at.timestamp() == 100.0
    assert [(o.subscription, o.attempt, o.state) for o in record.outcomes] == [
        ("s1", 1, "retrying"),
        ("s1", 2, "done"),
    ]
    first = record.outcomes[0]
    assert (first.error_type, first.error_message.replace("\ufffd", "\x00")) == (  # type: ignore[union-attr]
        "RuntimeError",
        "boom\x00",
    )
    assert first.seconds == 0.01
    assert first.ended_at.timestamp() == 100.2
    assert record.outcomes[1].error_type is None
    assert record.final_states() == {"s1": "done"}
    found = await store.history_event(middle.event_id)
    assert found is not None
    assert found.event.payload == {"step": 2, "nul": "a\x00b"}
    assert found.final_states() == {"s2": "dead_lettered"}
    assert await store.history_event("nope") is None

    chain = await store.history_chain(root.correlation_id)
    assert [r.event.event_id for r in chain] == [root.event_id, middle.event_id, leaf.event_id]
    assert await store.history_chain("nope") == []


async def test_history_feed_follows_a_cursor(make_store: StoreFactory) -> None:
    store = make_store()
    await store.open()
    assert await store.history_after(None, 10) == ([], None)
    events = [Event(event_type=f"feed.{n}") for n in range(5)]
    await store.record_history([(e, 100.0 + n) for n, e in enumerate(events)], [])

    newest, cursor = await store.history_after(None, 2)
    assert [r.event.event_type for r in newest] == ["feed.3", "feed.4"]
    assert cursor is not None
    assert cursor == newest[-1].cursor
    assert await store.history_after(cursor, 10) == ([], cursor)  # nothing new
    _, end = await store.history_after(None, 0)  # no records: only where the log ends
    assert end == cursor

    first, after_two = await store.history_after(None, 5)
    assert [r.event.event_type for r in first] == [f"feed.{n}" for n in range(5)]
    page, nxt = await store.history_after(first[1].cursor, 2)
    assert [r.event.event_type for r in page] == ["feed.2", "feed.3"]
    assert nxt == page[-1].cursor

    later = Event(event_type="feed.later")
    await store.record_history(
        [(later, 200.0)], [("s", later.event_id, 1, "done", 200.1, 0.0, None, None)]
    )
    new, end2 = await store.history_after(end, 10)
    assert [(r.event.event_type, r.final_states()) for r in new] == [("feed.later", {"s": "done"})]
    assert end2 == new[0].cursor
    assert after_two == end


async def test_history_is_trimmed_by_age(make_store: StoreFactory) -> None:
    store = make_store()
    await store.open()
    old, new = Event(event_type="t.old"), Event(event_type="t.new")
    now = time.time()
    await store.record_history(
        [(old, now - 3600), (new, now)],
        [("s", old.event_id, 1, "done", now - 3599, 0.0, None, None)],
    )
    await store.trim_history(now - 60)
    if isinstance(store, RedisStore):
        # Keys expire by TTL (a retention from their write); the feed is trimmed by the
        # time of logging (its ids), which for both events here is now.
        key = LOG_EVENT_KEY.format(prefix=store.prefix, event_id=old.event_id)
        assert 0 < await store._client().pttl(key) <= DEFAULT_HISTORY_RETENTION * 1000
        await store.trim_history(now + 60)
        assert await store.history_after(None, 10) == ([], None)
        return
    assert await store.history_event(old.event_id) is None
    assert await store.history_event(new.event_id) is not None
    records, _ = await store.history_after(None, 10)
    assert [r.event.event_type for r in records] == ["t.new"]
