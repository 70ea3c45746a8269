"""Contract ``WaitStore``: waits indexed by awaited type and match key; steps of a pair
with a wait are kept while it waits; and the event log's lookback by type."""

from __future__ import annotations

import time
from typing import Any

from nerve import Event
from nerve.records import WaitRecord
from tests.contracts.stores import StoreFactory


def trigger(event_id: str = "run-1") -> Event[Any]:
    return Event(event_type="refund.requested", payload={"id": 7}, event_id=event_id)


def wait(
    wait_id: str,
    match: dict[str, Any],
    *,
    event_type: str = "refund.approval.decided",
    subscription: str = "refunds",
    run: str = "run-1",
) -> WaitRecord:
    return WaitRecord(
        wait_id=wait_id,
        subscription=subscription,
        name="wait:1",
        event=trigger(run),
        event_type=event_type,
        match=match,
        since=time.time() - 1,
        deadline=time.time() + 3600,
        info={"for": "approval"},
    )


def decided(refund_id: Any, **extra: Any) -> Event[Any]:
    return Event(event_type="refund.approval.decided", payload={"refund_id": refund_id, **extra})


async def test_a_published_event_finds_its_waits(make_store: StoreFactory) -> None:
    store = make_store()
    await store.open()
    await store.add_wait(wait("w1", {"payload.refund_id": 7}))
    await store.add_wait(wait("w2", {"payload.refund_id": 8}, run="run-2"))
    await store.add_wait(wait("w3", {"payload.refund_id": 7, "payload.by": "ann"}, run="run-3"))
    corr = Event(event_type="refund.approval.decided", payload={}, correlation_id="chain-9")
    await store.add_wait(wait("w4", {"correlation_id": "chain-9"}, run="run-4"))
    seven, eight, seven_ann, other = decided(7), decided(8), decided(7, by="ann"), decided(9)
    found = await store.waits_for([seven, eight, seven_ann, other, corr])
    pairs = sorted((w.wait_id, e.event_id) for w, e in found)
    assert pairs == sorted(
        [
            ("w1", seven.event_id),
            ("w2", eight.event_id),
            ("w1", seven_ann.event_id),
            ("w3", seven_ann.event_id),
            ("w4", corr.event_id),
        ]
    )
    back = next(w for w, _ in found if w.wait_id == "w1")
    assert (back.subscription, back.name, back.event_type, back.kind) == (
        "refunds",
        "wait:1",
        "refund.approval.decided",
        "wait",
    )
    assert back.match == {"payload.refund_id": 7}
    assert back.info == {"for": "approval"}
    assert back.event.event_id == "run-1"
    assert back.event.payload == {"id": 7}
    assert back.deadline is not None
    assert back.deadline > back.since > 0
    # the value must be equal as JSON: "7" is not 7; another type is not matched
    assert await store.waits_for([decided("7")]) == []
    other_type = Event(event_type="refund.approval.asked", payload={"refund_id": 7})
    assert await store.waits_for([other_type]) == []


async def test_removed_waits_are_not_found(make_store: StoreFactory) -> None:
    store = make_store()
    await store.open()
    await store.add_wait(wait("w1", {"payload.refund_id": 7}))
    await store.add_wait(wait("w2", {"payload.refund_id": 7}, run="run-2"))
    assert await store.remove_wait("w1")
    assert not await store.remove_wait("w1")
    found = await store.waits_for([decided(7)])
    assert [w.wait_id for w, _ in found] == ["w2"]
    await store.add_wait(wait("w2", {"payload.refund_id": 8}, run="run-2"))  # replaced
    assert await store.waits_for([decided(7)]) == []
    assert [w.wait_id for w, _ in await store.waits_for([decided(8)])] == ["w2"]


async def test_waits_are_listed_by_filters(make_store: StoreFactory) -> None:
    store = make_store()
    await store.open()
    await store.add_wait(wait("w1", {"payload.refund_id": 1}))
    await store.add_wait(wait("w2", {"payload.refund_id": 2}, subscription="other"))
    await store.add_wait(wait("w3", {"payload.x": 3}, run="run-3", event_type="build.finished"))
    assert {w.wait_id for w in await store.waits()} == {"w1", "w2", "w3"}
    assert {w.wait_id for w in await store.waits(subscription="refunds")} == {"w1", "w3"}
    assert {w.wait_id for w in await store.waits(event_id="run-1")} == {"w1", "w2"}
    assert {w.wait_id for w in await store.waits(event_type="build.finished")} == {"w3"}
    assert len(await store.waits(limit=2)) == 2


async def test_steps_of_a_waiting_pair_outlive_the_window(make_store: StoreFactory) -> None:
    store = make_store(window=0.0)
    await store.open()
    await store.add_wait(wait("w1", {"payload.refund_id": 7}))
    await store.record_step("refunds", "run-1", "draft", '"text"')
    await store.add_to("refunds", "run-1", "spend", {"tokens": 5})
    await store.record_step("refunds", "gone", "draft", '"old"')
    for i in range(1001):  # past every store's pruning interval
        await store.add_to("s", f"filler{i}", "spend", {"tokens": 1})
    assert await store.step_result("refunds", "gone", "draft") is None
    assert await store.step_result("refunds", "run-1", "draft") == '"text"'  # resumes find it
    assert await store.add_to("refunds", "run-1", "spend", {}) == {"tokens": 5.0}


async def test_history_of_type_looks_back_by_type_and_time(make_store: StoreFactory) -> None:
    store = make_store()
    await store.open()
    now = time.time()
    early = decided(1)
    a, b = decided(2), decided(3)
    unrelated = Event(event_type="refund.requested", payload={})
    await store.record_history([(early, now - 100), (a, now - 5), (unrelated, now - 4)], [])
    await store.record_history([(b, now - 1)], [])
    found = await store.history_of_type("refund.approval.decided", now - 10, 100)
    assert [r.event.event_id for r in found] == [a.event_id, b.event_id]
    assert found[0].event == a
    assert [
        r.event.event_id
        for r in await store.history_of_type("refund.approval.decided", now - 10, 1)
    ] == [a.event_id]
    assert await store.history_of_type("nothing.here", 0, 10) == []
