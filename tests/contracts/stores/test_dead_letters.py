"""Contract ``DeadLetterStore``: dead letters, kept until taken (replayed or purged)."""

from __future__ import annotations

from nerve import DeadLetter, DeliveryState, Event
from tests.contracts.stores import StoreFactory, error


async def test_failures_then_dead_letter(make_store: StoreFactory) -> None:
    store = make_store()
    await store.open()
    event = Event(event_type="a.b", payload={"k": [1, 2]})
    await store.record_published(event)
    assert await store.event_type(event.event_id) == "a.b"
    await store.add_failure("s", event.event_id, error(1, "one"))
    await store.add_failure("s", event.event_id, error(2, "two"))
    assert await store.states(event.event_id) == {"s": DeliveryState.FAILED}
    errors = await store.take_failures("s", event.event_id)
    assert [e.message for e in errors] == ["one", "two"]
    assert "RuntimeError: one" in errors[0].traceback
    entry = DeadLetter(event=event, subscription="s", attempts=3, errors=[*errors, error(3)])
    await store.add_dead_letter(entry)
    await store.add_dead_letter(DeadLetter(event=event, subscription="t", attempts=1, errors=[]))
    assert await store.states(event.event_id) == {
        "s": DeliveryState.DEAD_LETTERED,
        "t": DeliveryState.DEAD_LETTERED,
    }
    assert await store.dead_letters(event_id=event.event_id, subscription="s") == [entry]
    assert len(await store.dead_letters(limit=1)) == 1
    assert await store.take_dead_letters(subscription="s") == [entry]
    assert [e.subscription for e in await store.dead_letters()] == ["t"]
    assert await store.take_dead_letters() != []
    assert await store.dead_letters() == []


async def test_dead_letters_newest_first(make_store: StoreFactory) -> None:
    store = make_store()
    await store.open()
    events = [Event(event_type="a") for _ in range(3)]
    for event in events:
        await store.add_dead_letter(
            DeadLetter(event=event, subscription="s", attempts=1, errors=[])
        )
    assert [e.event.event_id for e in await store.dead_letters()] == [
        e.event_id for e in reversed(events)
    ]
