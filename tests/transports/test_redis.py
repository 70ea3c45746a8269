"""What only the Redis transport has: its URL options, and trimming that keeps unsettled events."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from nerve import ConfigurationError, Event, EventBus, Settings
from nerve.transports import transport_from_url
from nerve.transports.redis import RedisTransport
from tests.conftest import drop_redis_keys


@pytest.fixture
async def transport() -> AsyncIterator[RedisTransport]:
    url = f"redis://127.0.0.1:6379/0?prefix=tr-{uuid.uuid4().hex[:12]}&retention=0"
    found = transport_from_url(url, Settings())
    assert isinstance(found, RedisTransport)
    await found.connect()
    yield found
    await found.close()
    drop_redis_keys(url)


def test_url_options_are_read_and_checked() -> None:
    transport = RedisTransport("redis://h:1/2?prefix=app&lease=5&block_ms=200&retention=60")
    assert (transport.prefix, transport.lease, transport.block_ms) == ("app", 5.0, 200)
    assert (transport.claim_interval, transport.retention) == (2.5, 60.0)
    assert transport.events_key == "app:events"
    with pytest.raises(ConfigurationError, match="lease='abc' is not a number"):
        RedisTransport("redis://h/0?lease=abc")
    with pytest.raises(ConfigurationError, match="lease must be > 0"):
        RedisTransport("redis://h/0?lease=0")


async def test_trim_deletes_settled_events_and_keeps_unsettled_ones(
    transport: RedisTransport,
) -> None:
    await transport.declare("fast", "job.#", start_from="earliest")
    await transport.declare("slow", "job.#", start_from="earliest")
    await transport.publish_many([Event(event_type="job.run", payload={"n": n}) for n in range(10)])
    client: Redis = Redis.from_url("redis://127.0.0.1:6379/0", decode_responses=True)
    try:
        fast = await transport.receive("fast", 100)
        assert len(fast) == 10
        await transport.ack_many(fast)
        # "slow" read 4 and settled 3: the 4th is pending, the other 6 unread.
        slow = list(await transport.receive("slow", 4))
        await transport.ack_many(slow[:3])
        assert await transport.trim() == 3  # only what every group has settled
        assert await client.xlen(transport.events_key) == 7
        assert await transport.trim() == 0
        await transport.ack_many(slow[3:])
        rest = await transport.receive("slow", 100)
        assert [d.event.payload["n"] for d in rest] == list(range(4, 10))  # nothing lost
        await transport.ack_many(rest)
        assert await transport.trim() == 6  # the last read entry stays as the group's mark
        assert await client.xlen(transport.events_key) == 1
    finally:
        await client.aclose()


async def test_retention_keeps_recent_settled_events() -> None:
    url = f"redis://127.0.0.1:6379/0?prefix=tr-{uuid.uuid4().hex[:12]}"  # a week by default
    transport = RedisTransport(url)
    await transport.connect()
    try:
        await transport.declare("s", "#", start_from="earliest")
        await transport.publish_many([Event(event_type="a") for _ in range(5)])
        await transport.ack_many(await transport.receive("s", 10))
        assert await transport.trim() == 0  # settled, but younger than the retention
    finally:
        await transport.close()
        drop_redis_keys(url)


async def test_more_concurrent_publishes_than_connections_wait_for_one() -> None:
    """Past its pool's size a command waits for a free connection: redis-py 8's default
    pool fails the 101st concurrent command with "Too many connections"."""
    url = f"redis://127.0.0.1:6379/0?prefix=pool-{uuid.uuid4().hex[:12]}&max_connections=10"
    bus = EventBus(url)  # the Redis store too, with the same small pool
    handled: set[str] = set()

    @bus.on("job.run", name="job")
    async def job(event: Event) -> None:
        handled.add(event.event_id)

    try:
        async with bus:
            published = await asyncio.gather(
                *(bus.publish(Event(event_type="job.run")) for _ in range(300))
            )
            await bus.join(timeout=30)
        assert handled == {event.event_id for event in published}
    finally:
        drop_redis_keys(url)
