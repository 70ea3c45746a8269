"""Contract: fan-out, patterns, competing consumers, concurrency, ordering, backpressure."""

from __future__ import annotations

import asyncio
from collections import Counter, defaultdict

import pytest

from nerve import Event
from tests.conftest import BusFactory, eventually


async def test_every_matching_subscription_gets_every_event(make_bus: BusFactory) -> None:
    bus = make_bus()
    got: dict[str, list[str]] = defaultdict(list)

    for name in ("a", "b", "c"):

        async def handler(event: Event, name: str = name) -> None:
            got[name].append(event.event_id)

        bus.subscribe("order.created", handler, name=name)

    async with bus:
        sent = [
            (await bus.publish(Event(event_type="order.created", payload={"n": i}))).event_id
            for i in range(50)
        ]
    assert got["a"] == got["b"] == got["c"]
    assert sorted(got["a"]) == sorted(sent)


@pytest.mark.parametrize(
    ("pattern", "hits", "misses"),
    [
        (
            "deployment.*",
            ["deployment.failed", "deployment.completed"],
            ["deployment", "deployment.x.y", "deploy.failed"],
        ),
        (
            "github.#",
            ["github", "github.push", "github.pull_request.opened"],
            ["gitlab.push", "githubx.push"],
        ),
        ("#", ["a", "a.b", "x.y.z"], []),
        ("a.#.z", ["a.z", "a.b.z", "a.b.c.z"], ["a.b", "a.z.b"]),
        ("*.created", ["order.created", "user.created"], ["created", "a.b.created"]),
        (
            "support.ticket.created",
            ["support.ticket.created"],
            ["support.ticket", "support.ticket.created.x"],
        ),
    ],
)
async def test_patterns(
    make_bus: BusFactory, pattern: str, hits: list[str], misses: list[str]
) -> None:
    bus = make_bus()
    seen: list[str] = []

    @bus.on(pattern, name="p")
    async def handler(event: Event) -> None:
        seen.append(event.event_type)

    async with bus:
        for event_type in misses + hits:
            await bus.publish(Event(event_type=event_type))
    assert seen == hits


async def test_workers_of_a_subscription_share_its_events(make_bus: BusFactory) -> None:
    """Competing consumers: many workers, each event handled exactly once."""
    bus = make_bus()
    counts: Counter[str] = Counter()

    @bus.on("job.run", concurrency=8)
    async def work(event: Event) -> None:
        await asyncio.sleep(0)  # let other workers interleave
        counts[event.event_id] += 1

    async with bus:
        ids = [(await bus.publish(Event(event_type="job.run"))).event_id for _ in range(500)]
    assert set(counts) == set(ids)
    assert set(counts.values()) == {1}


async def test_concurrency_is_bounded_per_subscription(make_bus: BusFactory) -> None:
    bus = make_bus()
    running = 0
    peak = 0
    gate = asyncio.Event()

    @bus.on("llm.call", concurrency=4)
    async def slow(event: Event) -> None:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await gate.wait()
        running -= 1

    async with bus:
        for _ in range(20):
            await bus.publish(Event(event_type="llm.call"))
        await eventually(lambda: running == 4)
        gate.set()
    assert peak == 4


async def test_a_slow_handler_does_not_stall_other_events_or_subscriptions(
    make_bus: BusFactory,
) -> None:
    bus = make_bus()
    release = asyncio.Event()
    fast_done: list[int] = []
    other_done: list[int] = []

    @bus.on("ticket.created", concurrency=4)
    async def triage(event: Event) -> None:
        assert isinstance(event.payload, dict)
        if event.payload["slow"]:
            await release.wait()  # an LLM call that takes "forever"
        else:
            fast_done.append(event.payload["n"])

    @bus.on("ticket.created", name="other")
    async def other(event: Event) -> None:
        assert isinstance(event.payload, dict)
        other_done.append(event.payload["n"])

    async with bus:
        await bus.publish(Event(event_type="ticket.created", payload={"slow": True, "n": -1}))
        for n in range(10):
            await bus.publish(Event(event_type="ticket.created", payload={"slow": False, "n": n}))
        await eventually(lambda: len(fast_done) == 10 and len(other_done) == 11)
        release.set()
    assert sorted(fast_done) == list(range(10))


async def test_ordered_by_key_runs_one_key_at_a_time_in_order(make_bus: BusFactory) -> None:
    bus = make_bus()
    order: dict[str, list[int]] = defaultdict(list)
    busy: Counter[str] = Counter()
    overlap_same_key = False
    running = 0
    peak = 0

    @bus.on("account.changed", concurrency=8, ordered_by="account")
    async def apply(event: Event) -> None:
        nonlocal overlap_same_key, running, peak
        assert isinstance(event.payload, dict)
        key = event.payload["account"]
        busy[key] += 1
        running += 1
        peak = max(peak, running)
        overlap_same_key |= busy[key] > 1
        # Longer than a publish takes (a confirmed one on a broker: about a millisecond),
        # so that the next key's event arrives while this one runs.
        await asyncio.sleep(0.01)
        order[key].append(event.payload["seq"])
        busy[key] -= 1
        running -= 1

    async with bus:
        for seq in range(30):
            for key in ("a", "b", "c", "d"):
                await bus.publish(
                    Event(event_type="account.changed", payload={"account": key, "seq": seq})
                )
    assert not overlap_same_key
    assert peak > 1  # different keys did run in parallel
    assert all(order[key] == list(range(30)) for key in "abcd")


async def test_ordered_retry_holds_back_later_events_of_its_key(make_bus: BusFactory) -> None:
    from tests.conftest import FAST

    bus = make_bus()
    seen: list[int] = []
    failed_once = False

    @bus.on("account.changed", ordered_by=lambda e: "k", retries=2, backoff=FAST)
    async def apply(event: Event) -> None:
        nonlocal failed_once
        assert isinstance(event.payload, dict)
        if event.payload["seq"] == 0 and not failed_once:
            failed_once = True
            raise RuntimeError("transient")
        seen.append(event.payload["seq"])

    async with bus:
        for seq in range(5):
            await bus.publish(Event(event_type="account.changed", payload={"seq": seq}))
    assert seen == [0, 1, 2, 3, 4]


async def test_events_with_no_subscriber_are_accepted(make_bus: BusFactory) -> None:
    bus = make_bus()
    async with bus:
        event = await bus.publish(Event(event_type="nobody.listens"))
    status = await bus.status(event.event_id)
    assert status.subscriptions == {}
