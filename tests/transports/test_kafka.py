"""What only the Kafka transport has: URL options, topic names, commits, retries, takeovers.

``drop(url)`` deletes the topics one test made (the conftest calls it after each test).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest
from aiokafka.admin import AIOKafkaAdminClient  # type: ignore[import-untyped]  # no type hints

from nerve import ConfigurationError, Event, Settings, SubscriptionError, TransportError
from nerve.transports import transport_from_url
from nerve.transports.kafka import KafkaDelivery, KafkaTransport, kafka_where, topic_safe

BROKER = "127.0.0.1:9092"


def drop(url: str) -> None:
    """Delete the topics under a ``kafka://`` URL's prefix (what one test made)."""
    asyncio.run(_drop(url))


async def _drop(url: str) -> None:
    prefix = KafkaTransport(url).prefix
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_where(url).split(","))
    await admin.start()
    try:
        mine = [t for t in await admin.list_topics() if t.startswith(f"{prefix}.")]
        if mine:
            await admin.delete_topics(mine)
    finally:
        await admin.close()


@pytest.fixture
async def url() -> AsyncIterator[str]:
    found = (
        f"kafka://{BROKER}?prefix=tk-{uuid.uuid4().hex[:12]}&partitions=2&session_timeout_ms=2000"
    )
    yield found
    await _drop(found)


@pytest.fixture
async def transport(url: str) -> AsyncIterator[KafkaTransport]:
    found = transport_from_url(url, Settings())
    assert isinstance(found, KafkaTransport)
    await found.connect()
    yield found
    await found.close()


def test_url_options_are_read_and_checked() -> None:
    transport = KafkaTransport(
        "kafka://u:p%40ss@k1:9092,k2:9092?prefix=app&partitions=6&replication=3"
        "&session_timeout_ms=30000&security_protocol=sasl_ssl&sasl_mechanism=scram-sha-512"
    )
    assert transport.cluster.bootstrap == ["k1:9092", "k2:9092"]
    assert (transport.prefix, transport.partitions, transport.replication) == ("app", 6, 3)
    assert transport.session_timeout_ms == 30000
    assert transport.events_topic == "app.events"
    assert transport.cluster.security["sasl_plain_password"] == "p@ss"  # noqa: S105  # a test value
    assert transport.cluster.security["sasl_mechanism"] == "SCRAM-SHA-512"
    state = Settings().state_directory()  # NERVE_STATE_DIR: the tests' own (conftest.py)
    assert transport.default_store_url == f"sqlite:///{state}/nerve-app.db"
    assert KafkaTransport("kafka://h:1?store=redis://r:6379/0").default_store_url == (
        "redis://r:6379/0"
    )
    with pytest.raises(ConfigurationError, match="partitions='x' is not an integer"):
        KafkaTransport("kafka://h:1?partitions=x")
    with pytest.raises(ConfigurationError, match="replication must be > 0"):
        KafkaTransport("kafka://h:1?replication=0")
    with pytest.raises(ConfigurationError, match="unknown kafka URL option"):
        KafkaTransport("kafka://h:1?lease=2")


def test_subscription_names_become_valid_topic_names() -> None:
    assert topic_safe("billing.charge") == "billing.charge"
    odd = topic_safe("app.<locals>.handler")
    assert odd.startswith("app._locals_.handler-")
    assert odd != topic_safe("app.[locals].handler")  # replaced alike, told apart by a hash


async def test_an_unreachable_broker_is_a_transport_error_naming_it() -> None:
    transport = KafkaTransport("kafka://user:secret@127.0.0.1:1?prefix=x")
    with pytest.raises(TransportError, match=r"127\.0\.0\.1:1") as caught:
        await asyncio.wait_for(transport.connect(), 60)
    assert "secret" not in str(caught.value)


async def test_offsets_are_committed_below_the_first_unsettled_delivery(
    transport: KafkaTransport,
) -> None:
    await transport.declare("s", "job.#", start_from="earliest")
    events = [Event(event_type="job.run") for _ in range(5)]  # no key: partition 0
    await transport.publish_many(events)
    got: list[KafkaDelivery] = []
    while len(got) < 5:
        got += [d for d in await transport.receive("s", 10) if isinstance(d, KafkaDelivery)]
    assert [d.event.event_id for d in got] == [e.event_id for e in events]  # one key: in order
    sub = transport._subs["s"]
    part = got[0].partition
    await got[1].ack()
    await got[3].ack()
    assert part.committed == got[0].offset  # the first is still in flight
    await got[0].ack()
    assert part.committed == got[2].offset
    await transport.ack_many([got[2], got[4]])
    assert part.committed == got[4].offset + 1
    assert await sub.consumer.committed(part.tp) == got[4].offset + 1
    await asyncio.wait_for(transport.wait_idle(), 10)


async def test_a_nack_comes_back_after_its_delay_with_the_next_attempt(
    transport: KafkaTransport,
) -> None:
    await transport.declare("s", "#", start_from="earliest")
    await transport.publish(Event(event_type="a.b"))
    [first] = await transport.receive("s", 10)
    loop = asyncio.get_running_loop()
    started = loop.time()
    await first.nack(0.5)
    [again] = await asyncio.wait_for(transport.receive("s", 10), 10)
    assert loop.time() - started >= 0.45
    assert (again.event, again.attempt) == (first.event, 2)
    await again.reject()
    await asyncio.wait_for(transport.wait_idle(), 10)


async def test_a_later_retry_does_not_hold_up_an_earlier_one(transport: KafkaTransport) -> None:
    await transport.declare("s", "#", start_from="earliest")
    slow, fast = Event(event_type="a.slow"), Event(event_type="a.fast")
    await transport.publish_many([slow, fast])
    got = list(await transport.receive("s", 10))
    if len(got) < 2:
        got += await transport.receive("s", 10)
    by_id = {d.event.event_id: d for d in got}
    await by_id[slow.event_id].nack(30.0)
    await by_id[fast.event_id].nack(0.1)
    [retried] = await asyncio.wait_for(transport.receive("s", 10), 10)
    assert retried.event.event_id == fast.event_id
    await retried.ack()


async def test_replay_goes_to_one_subscription_only(transport: KafkaTransport) -> None:
    await transport.declare("a", "#", start_from="earliest")
    await transport.declare("b", "#", start_from="earliest")
    event = Event(event_type="x.y")
    await transport.publish(event, subscription="b")
    [delivery] = await asyncio.wait_for(transport.receive("b", 10), 10)
    assert (delivery.event, delivery.attempt) == (event, 1)
    await delivery.ack()
    await asyncio.wait_for(transport.wait_idle(), 10)
    assert not transport._subs["a"].ready
    with pytest.raises(SubscriptionError, match="no subscription named 'nope'"):
        await transport.publish(event, subscription="nope")


async def test_latest_skips_what_was_published_before(url: str) -> None:
    early = KafkaTransport(url)
    await early.connect()
    try:
        await early.publish(Event(event_type="old.one"))
        await early.declare("late", "#", start_from="latest")
        new = Event(event_type="new.one")
        await early.publish(new)
        [delivery] = await asyncio.wait_for(early.receive("late", 10), 10)
        assert delivery.event == new
        await delivery.ack()
    finally:
        await early.close()


async def test_a_closed_transport_refuses_and_stops_receiving(transport: KafkaTransport) -> None:
    await transport.declare("s", "#", start_from="earliest")
    waiting = asyncio.create_task(transport.receive("s", 10))
    await asyncio.sleep(0)  # the receiver is parked
    await transport.close()
    assert await asyncio.wait_for(waiting, 10) == ()
    with pytest.raises(Exception, match="closed"):
        await transport.publish(Event(event_type="a"))
