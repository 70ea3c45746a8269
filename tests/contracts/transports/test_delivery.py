"""Contract: retries, dead letters, replay, idempotency, status, timeouts, typed payloads."""

from __future__ import annotations

import asyncio
from collections import Counter

import pytest
from pydantic import BaseModel

from nerve import (
    DeliveryState,
    Event,
    HandlerTimeout,
    PayloadInvalid,
    Reject,
    Retry,
    current,
)
from tests.conftest import FAST, BusFactory, eventually


async def test_a_failing_handler_is_retried_until_it_succeeds(make_bus: BusFactory) -> None:
    bus = make_bus()
    attempts: list[int] = []

    @bus.on("charge.requested", name="charge", retries=3, backoff=FAST)
    async def charge(event: Event) -> None:
        ctx = current()
        assert ctx is not None
        attempts.append(ctx.attempt)
        if len(attempts) < 3:
            raise ConnectionError("payment provider unavailable")

    async with bus:
        event = await bus.publish(Event(event_type="charge.requested"))
    assert attempts == [1, 2, 3]
    assert (await bus.status(event.event_id)).subscriptions == {"charge": DeliveryState.DONE}
    assert await bus.dlq.list() == []


async def test_a_poison_event_is_dead_lettered_while_others_keep_flowing(
    make_bus: BusFactory,
) -> None:
    bus = make_bus()
    good: list[int] = []

    @bus.on("order.created", name="orders", retries=2, backoff=FAST)
    async def handle(event: Event) -> None:
        assert isinstance(event.payload, dict)
        if event.payload.get("poison"):
            raise ValueError(f"cannot parse order {event.payload['n']}")
        good.append(event.payload["n"])

    async with bus:
        poison = await bus.publish(
            Event(event_type="order.created", payload={"poison": True, "n": -1})
        )
        for n in range(100):
            await bus.publish(Event(event_type="order.created", payload={"n": n}))
    assert sorted(good) == list(range(100))
    entries = await bus.dlq.list()
    assert len(entries) == 1
    entry = entries[0]
    assert entry.event == poison
    assert entry.subscription == "orders"
    assert entry.attempts == 3
    assert [e.attempt for e in entry.errors] == [1, 2, 3]
    for error in entry.errors:
        assert error.type == "ValueError"
        assert error.message == "cannot parse order -1"
        assert 'raise ValueError(f"cannot parse order' in error.traceback
        assert error.time
    assert "ValueError: cannot parse order -1" in repr(entry)
    assert (await bus.status(poison.event_id)).subscriptions == {
        "orders": DeliveryState.DEAD_LETTERED
    }


async def test_reject_skips_the_retries(make_bus: BusFactory) -> None:
    bus = make_bus()
    calls = 0

    @bus.on("payment.received", name="check", retries=5, backoff=FAST)
    async def check(event: Event) -> None:
        nonlocal calls
        calls += 1
        raise Reject("payment without an amount")

    async with bus:
        event = await bus.publish(Event(event_type="payment.received"))
    assert calls == 1
    entry = await bus.dlq.get(event.event_id)
    assert entry is not None
    assert entry.attempts == 1
    assert entry.errors[0].type == "nerve.exceptions.Reject"


async def test_retry_exception_sets_the_delay(make_bus: BusFactory) -> None:
    bus = make_bus()
    times: list[float] = []
    loop = asyncio.get_running_loop()

    @bus.on("rate.limited", retries=1)
    async def call(event: Event) -> None:
        times.append(loop.time())
        if len(times) == 1:
            raise Retry("429 from the provider", delay=0.2)

    async with bus:
        await bus.publish(Event(event_type="rate.limited"))
    assert len(times) == 2
    assert times[1] - times[0] >= 0.19


async def test_default_backoff_retries_first_within_a_second(make_bus: BusFactory) -> None:
    bus = make_bus()
    times: list[float] = []
    loop = asyncio.get_running_loop()

    @bus.on("flaky.call", retries=1)
    async def call(event: Event) -> None:
        times.append(loop.time())
        if len(times) == 1:
            raise ConnectionError("reset")

    async with bus:
        await bus.publish(Event(event_type="flaky.call"))
    assert len(times) == 2
    assert 0.2 <= times[1] - times[0] <= 1.0


async def test_a_timeout_is_a_retryable_failure(make_bus: BusFactory) -> None:
    bus = make_bus()
    calls = 0

    @bus.on("llm.call", name="slow", retries=1, timeout=0.05, backoff=FAST)
    async def slow(event: Event) -> None:
        nonlocal calls
        calls += 1
        await asyncio.sleep(10)

    async with bus:
        event = await bus.publish(Event(event_type="llm.call"))
    assert calls == 2
    entry = await bus.dlq.get(event.event_id)
    assert entry is not None
    assert [e.type for e in entry.errors] == ["nerve.exceptions.HandlerTimeout"] * 2
    assert "within its 0.05s timeout" in entry.errors[0].message
    assert issubclass(HandlerTimeout, TimeoutError)


async def test_replay_after_the_handler_is_fixed(make_bus: BusFactory) -> None:
    bus = make_bus()
    broken = True
    handled: Counter[str] = Counter()

    @bus.on("invoice.created", name="bill", retries=1, backoff=FAST)
    async def bill(event: Event) -> None:
        if broken:
            raise KeyError("customer")
        handled["bill"] += 1

    @bus.on("invoice.created", name="archive")
    async def archive(event: Event) -> None:
        handled["archive"] += 1

    async with bus:
        event = await bus.publish(Event(event_type="invoice.created"))
        await bus.join(5)
        assert handled == {"archive": 1}
        assert (await bus.status(event.event_id)).subscriptions["bill"] == (
            DeliveryState.DEAD_LETTERED
        )

        broken = False
        replayed = await bus.dlq.replay(event.event_id)
        assert [(e.subscription, e.event.event_id) for e in replayed] == [("bill", event.event_id)]
        await bus.join(5)

    assert handled == {"archive": 1, "bill": 1}  # replayed to "bill" only
    assert await bus.dlq.list() == []
    assert (await bus.status(event.event_id)).subscriptions == {
        "bill": DeliveryState.DONE,
        "archive": DeliveryState.DONE,
    }


async def test_a_replayed_event_that_fails_again_returns_with_its_new_errors(
    make_bus: BusFactory,
) -> None:
    bus = make_bus()
    messages = iter(["first", "second", "third", "fourth"])

    @bus.on("invoice.created", name="bill", retries=1, backoff=FAST)
    async def bill(event: Event) -> None:
        raise RuntimeError(next(messages))

    async with bus:
        event = await bus.publish(Event(event_type="invoice.created"))
        await bus.join(5)
        await bus.dlq.replay(subscription="bill")
        await bus.join(5)
    entry = await bus.dlq.get(event.event_id, subscription="bill")
    assert entry is not None
    assert [e.message for e in entry.errors] == ["third", "fourth"]
    assert len(await bus.dlq.list()) == 1


async def test_purge(make_bus: BusFactory) -> None:
    bus = make_bus()

    @bus.on("a.b", name="fails", retries=0)
    async def fails(event: Event) -> None:
        raise RuntimeError("no")

    async with bus:
        first = await bus.publish(Event(event_type="a.b"))
        await bus.publish(Event(event_type="a.b"))
        await bus.publish(Event(event_type="a.b"))
    assert len(await bus.dlq.list()) == 3
    assert await bus.dlq.purge(first.event_id) == 1
    assert await bus.dlq.get(first.event_id) is None
    assert await bus.dlq.purge() == 2
    assert await bus.dlq.list() == []


async def test_the_same_event_published_twice_is_handled_once(make_bus: BusFactory) -> None:
    bus = make_bus()
    handled: Counter[str] = Counter()

    @bus.on("webhook.received", name="one")
    async def one(event: Event) -> None:
        handled[f"one:{event.event_id}"] += 1

    @bus.on("webhook.received", name="two")
    async def two(event: Event) -> None:
        handled[f"two:{event.event_id}"] += 1

    event = Event(event_type="webhook.received", event_id="delivery-42")
    async with bus:
        await bus.publish(event)
        await bus.publish(event)  # concurrently with the first
        await bus.join(5)
        await bus.publish(event)  # after the first is done
    assert handled == {"one:delivery-42": 1, "two:delivery-42": 1}


async def test_status_moves_from_pending_to_failed_to_done(make_bus: BusFactory) -> None:
    bus = make_bus()
    gate = asyncio.Event()
    calls = 0

    @bus.on("report.requested", name="report", retries=1)
    async def report(event: Event) -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise Retry("not yet", delay=0.01)
        await gate.wait()

    event = await bus.publish(Event(event_type="report.requested"))
    status = await bus.status(event.event_id)
    assert status.event_type == "report.requested"
    assert status.subscriptions == {"report": DeliveryState.PENDING}
    assert not status.settled
    async with bus:
        await eventually(lambda: calls == 2)
        assert (await bus.status(event.event_id)).subscriptions == {"report": DeliveryState.FAILED}
        gate.set()
    status = await bus.status(event.event_id)
    assert status.subscriptions == {"report": DeliveryState.DONE}
    assert status.settled


async def test_status_of_an_unknown_event(make_bus: BusFactory) -> None:
    bus = make_bus()
    status = await bus.status("no-such-event")
    assert status.event_type is None
    assert status.subscriptions == {}


class Ticket(BaseModel):
    id: int
    body: str


async def test_typed_payload_is_validated_into_the_model(make_bus: BusFactory) -> None:
    bus = make_bus()
    got: list[Ticket] = []

    @bus.on("support.ticket.created", name="typed", retries=3, backoff=FAST)
    async def triage(event: Event[Ticket]) -> None:
        got.append(event.payload)

    async with bus:
        await bus.publish(
            Event(event_type="support.ticket.created", payload={"id": "7", "body": "hi"})
        )
        bad = await bus.publish(Event(event_type="support.ticket.created", payload={"id": "x"}))
    assert got == [Ticket(id=7, body="hi")]
    entry = await bus.dlq.get(bad.event_id)
    assert entry is not None
    assert entry.attempts == 1  # a validation error is not retried
    assert entry.errors[0].type == "nerve.exceptions.PayloadInvalid"
    assert "id: Input should be a valid integer" in entry.errors[0].message
    assert "body: Field required" in entry.errors[0].message


async def test_payload_model_option(make_bus: BusFactory) -> None:
    bus = make_bus()
    got: list[object] = []

    @bus.on("support.ticket.created", payload_model=Ticket)
    async def triage(event: Event) -> None:
        got.append(event.payload)

    async with bus:
        await bus.publish(
            Event(event_type="support.ticket.created", payload={"id": 1, "body": "b"})
        )
    assert got == [Ticket(id=1, body="b")]
    assert issubclass(PayloadInvalid, Reject)


@pytest.mark.parametrize("retries", [0, 2])
async def test_retries_means_attempts_after_the_first(make_bus: BusFactory, retries: int) -> None:
    bus = make_bus()
    calls = 0

    @bus.on("a.b", name="n", retries=retries, backoff=FAST)
    async def fails(event: Event) -> None:
        nonlocal calls
        calls += 1
        raise RuntimeError("x")

    async with bus:
        await bus.publish(Event(event_type="a.b"))
    assert calls == retries + 1
