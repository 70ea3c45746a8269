"""Contract: causal chains and the loop guard, shutdown, and the lifecycle's errors."""

from __future__ import annotations

import asyncio

import pytest

from nerve import BusClosed, ChainTooDeep, DeliveryState, Event, SubscriptionError
from tests.conftest import BusFactory, eventually


async def test_events_published_by_handlers_carry_their_chain(make_bus: BusFactory) -> None:
    bus = make_bus()
    seen: dict[str, Event] = {}

    @bus.on("deployment.failed")
    async def diagnose(event: Event) -> None:
        seen["failed"] = event
        await bus.publish(Event(event_type="deployment.fix.suggested"))

    @bus.on("deployment.fix.suggested")
    async def notify(event: Event) -> None:
        seen["suggested"] = event
        await bus.publish(Event(event_type="chat.message.sent"))

    @bus.on("chat.message.sent")
    async def log(event: Event) -> None:
        seen["sent"] = event

    async with bus:
        root = await bus.publish(Event(event_type="deployment.failed"))
    assert root.causation_id is None
    assert root.correlation_id == root.event_id
    assert seen["suggested"].causation_id == root.event_id
    assert seen["sent"].causation_id == seen["suggested"].event_id
    assert {e.correlation_id for e in seen.values()} == {root.event_id}
    assert [seen[k].chain_depth for k in ("failed", "suggested", "sent")] == [0, 1, 2]


async def test_agents_triggering_each_other_are_stopped_at_the_chain_limit(
    make_bus: BusFactory,
) -> None:
    bus = make_bus(chain_limit=5)
    depths: list[int] = []

    @bus.on("ping", name="ping", retries=3)
    async def ping(event: Event) -> None:
        depths.append(event.chain_depth)
        await bus.publish(Event(event_type="pong"))

    @bus.on("pong", name="pong", retries=3)
    async def pong(event: Event) -> None:
        depths.append(event.chain_depth)
        await bus.publish(Event(event_type="ping"))

    async with bus:
        root = await bus.publish(Event(event_type="ping"))
    assert depths == [0, 1, 2, 3, 4, 5]
    entries = await bus.dlq.list()
    assert len(entries) == 1
    entry = entries[0]
    assert entry.attempts == 1  # not retried: it would loop again
    assert entry.event.chain_depth == 5
    assert entry.event.correlation_id == root.event_id
    assert entry.errors[0].type == "nerve.exceptions.ChainTooDeep"
    assert "chain_limit=5" in entry.errors[0].message


async def test_default_chain_limit_is_16(make_bus: BusFactory) -> None:
    bus = make_bus()
    depths: list[int] = []

    @bus.on("loop")
    async def again(event: Event) -> None:
        depths.append(event.chain_depth)
        await bus.publish(Event(event_type="loop"))

    async with bus:
        await bus.publish(Event(event_type="loop"))
    assert depths == list(range(17))
    assert len(await bus.dlq.list()) == 1


async def test_chain_too_deep_is_raised_to_the_publishing_handler(make_bus: BusFactory) -> None:
    bus = make_bus(chain_limit=1)
    caught: list[ChainTooDeep] = []

    @bus.on("a")
    async def first(event: Event) -> None:
        await bus.publish(Event(event_type="b"))

    @bus.on("b")
    async def second(event: Event) -> None:
        try:
            await bus.publish(Event(event_type="c"))
        except ChainTooDeep as exc:
            caught.append(exc)

    async with bus:
        await bus.publish(Event(event_type="a"))
    assert len(caught) == 1
    assert await bus.dlq.list() == []  # the handler chose to swallow it


async def test_stop_lets_in_flight_handlers_finish_within_the_grace_period(
    make_bus: BusFactory,
) -> None:
    bus = make_bus()
    started = asyncio.Event()
    finished: list[str] = []

    @bus.on("report.build", name="build")
    async def build(event: Event) -> None:
        started.set()
        await asyncio.sleep(0.1)
        finished.append(event.event_id)

    await bus.start()
    event = await bus.publish(Event(event_type="report.build"))
    await started.wait()
    loop = asyncio.get_running_loop()
    began = loop.time()
    await bus.stop(grace=30)
    assert finished == [event.event_id]
    assert loop.time() - began < 10  # returned when the handler finished, not after the grace
    assert bus.unfinished == []
    assert (await bus.status(event.event_id)).subscriptions == {"build": DeliveryState.DONE}


async def test_stop_cancels_handlers_past_the_grace_and_leaves_their_events(
    make_bus: BusFactory,
) -> None:
    bus = make_bus()
    running: list[str] = []
    cancelled: list[str] = []

    @bus.on("report.build", name="build", concurrency=2)
    async def build(event: Event) -> None:
        running.append(event.event_id)
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            cancelled.append(event.event_id)
            raise

    await bus.start()
    events = [await bus.publish(Event(event_type="report.build")) for _ in range(5)]
    await eventually(lambda: len(running) == 2)
    await bus.stop(grace=0.05)
    assert sorted(cancelled) == sorted(running)
    for event in events:  # nothing was acknowledged
        assert (await bus.status(event.event_id)).subscriptions == {"build": DeliveryState.PENDING}
    ids = sorted(e.event_id for e in events)
    if not bus.transport.durable:  # lost with the process, and reported
        assert sorted(d.event.event_id for d in bus.unfinished) == ids
        return
    assert bus.unfinished == []  # left with the broker: the next run handles them all
    again = make_bus()
    handled: list[str] = []

    @again.on("report.build", name="build")
    async def rebuild(event: Event) -> None:
        handled.append(event.event_id)

    async with again:
        await eventually(lambda: sorted(handled) == ids, timeout=30)


async def test_start_processing_runs_until_cancelled(make_bus: BusFactory) -> None:
    """The seed's form: a task in a FastAPI lifespan, cancelled at shutdown."""
    bus = make_bus()
    handled: list[str] = []

    async def handle(event: Event) -> None:
        handled.append(event.event_id)

    bus.subscribe("support.ticket.created", handle)
    task = asyncio.create_task(bus.start_processing())
    event = Event(event_type="support.ticket.created", payload={"id": 1, "body": "help"})
    await bus.publish(event)
    await eventually(lambda: handled == [event.event_id])
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    with pytest.raises(BusClosed):
        await bus.publish(Event(event_type="support.ticket.created"))


async def test_a_task_publishing_in_a_loop_ends_when_cancelled(make_bus: BusFactory) -> None:
    """A cancellation that lands mid-publish ends the task, whatever the client library
    does with it (redis-py and nats-py can swallow one: 155 and 131 of 200 such tasks went
    on publishing before their transports raised it again)."""
    bus = make_bus()
    await bus.publish(Event(event_type="job.run"))  # connected: the cancels land mid-publish

    async def publish_forever() -> None:
        while True:
            await bus.publish(Event(event_type="job.run"))
            await asyncio.sleep(0)  # in process, a publish with room never suspends

    for trial in range(50):
        task = asyncio.create_task(publish_forever())
        await asyncio.sleep(0.002 + (trial % 7) * 0.0005)  # lands at varied points
        task.cancel()
        done, _ = await asyncio.wait({task}, timeout=5)
        assert done, f"trial {trial}: the cancelled task went on publishing"
        assert task.cancelled()


async def test_publish_after_stop_raises_bus_closed(make_bus: BusFactory) -> None:
    bus = make_bus()
    async with bus:
        pass
    with pytest.raises(BusClosed):
        await bus.publish(Event(event_type="a.b"))


async def test_subscribe_errors_are_clear(make_bus: BusFactory) -> None:
    bus = make_bus()

    def not_async(event: Event) -> None:
        pass

    with pytest.raises(SubscriptionError, match="must be an async function"):
        bus.subscribe("a.b", not_async)
    with pytest.raises(SubscriptionError, match=r"invalid pattern 'A\.b'"):
        bus.subscribe("A.b", _handler)
    with pytest.raises(SubscriptionError, match=r"invalid pattern 'a\.\.b'"):
        bus.subscribe("a..b", _handler)
    with pytest.raises(SubscriptionError, match="concurrency must be >= 1"):
        bus.subscribe("a.b", _handler, concurrency=-1)
    bus.subscribe("a.b", _handler, name="first")
    with pytest.raises(SubscriptionError, match="'first' exists already; pass name="):
        bus.subscribe("c.d", _handler, name="first")
    bus.subscribe("c.d", _handler)
    with pytest.raises(SubscriptionError, match="exists already"):
        bus.subscribe("c.d", _handler)  # the same handler on the same pattern twice
    await bus.start()
    with pytest.raises(SubscriptionError, match="before the bus starts"):
        bus.subscribe("e.f", _handler, name="late")


async def _handler(event: Event) -> None:
    pass


async def test_async_callable_objects_are_handlers(make_bus: BusFactory) -> None:
    bus = make_bus()

    class Agent:
        def __init__(self) -> None:
            self.seen: list[str] = []

        async def __call__(self, event: Event) -> None:
            self.seen.append(event.event_type)

    agent = Agent()
    bus.subscribe("a.b", agent, name="agent")
    async with bus:
        await bus.publish(Event(event_type="a.b"))
    assert agent.seen == ["a.b"]


async def test_one_handler_on_several_event_types_the_seeds_way(make_bus: BusFactory) -> None:
    bus = make_bus()
    seen: list[str] = []

    async def handle(event: Event) -> None:
        seen.append(event.event_type)

    first = bus.subscribe("deployment.completed", handle)
    second = bus.subscribe("deployment.failed", handle)
    assert first.name != second.name
    assert second.name.endswith(":deployment.failed")
    async with bus:
        await bus.publish(Event(event_type="deployment.completed"))
        await bus.publish(Event(event_type="deployment.failed"))
    assert sorted(seen) == ["deployment.completed", "deployment.failed"]


async def test_an_unresolvable_payload_model_is_a_clear_error(make_bus: BusFactory) -> None:
    bus = make_bus()

    async def handler(event: Event[NotDefinedAnywhere]) -> None:  # type: ignore[name-defined]  # noqa: F821  # the point of the test
        pass

    with pytest.raises(SubscriptionError, match="define the model at module level"):
        bus.subscribe("a.b", handler)


async def test_publish_many_publishes_in_order_and_stamps_chains(make_bus: BusFactory) -> None:
    bus = make_bus()
    children: list[Event] = []

    @bus.on("order.placed", name="fan_out")
    async def fan_out(event: Event) -> None:
        await bus.publish_many([Event(event_type="email.send", payload={"n": n}) for n in range(3)])

    @bus.on("email.send", name="mailer", ordered_by=lambda e: "all")
    async def mailer(event: Event) -> None:
        children.append(event)

    async with bus:
        assert await bus.publish_many([]) == []
        parent = await bus.publish(Event(event_type="order.placed"))
        await eventually(lambda: len(children) == 3, timeout=20)
        direct = await bus.publish_many(
            [Event(event_type="email.send", payload={"n": n}) for n in range(3, 200)]
        )
        await eventually(lambda: len(children) == 200, timeout=20)
    assert [c.payload["n"] for c in children] == list(range(200))
    assert {c.causation_id for c in children[:3]} == {parent.event_id}
    assert {c.correlation_id for c in children[:3]} == {parent.correlation_id}
    assert {c.causation_id for c in children[3:]} == {None}
    assert [c.event_id for c in children[3:]] == [e.event_id for e in direct]
