"""Settling successes when the connection drops in the middle of a batch.

A broker connection lost while a batch of acknowledgements goes out must leave no delivery
counted in flight (``join`` would then wait forever) and must not lose the done marks: the
broker delivers the unacknowledged events again and the store recognises them as handled.
"""

from __future__ import annotations

import logging

import pytest

from nerve import Event
from nerve.exceptions import TransportError
from nerve.settler import Settler
from nerve.stores.memory import MemoryStore
from nerve.transports.base import Delivery, Transport
from nerve.transports.memory import MemoryTransport


class Recorded(Delivery):
    """A delivery that remembers its acknowledgement, or fails it as a dropped link does."""

    def __init__(self, n: int, *, fails: bool) -> None:
        super().__init__(Event(event_type="job.run", payload={"n": n}), "job")
        self.fails = fails
        self.acked = False

    async def _ack(self) -> None:
        if self.fails:
            raise TransportError("connection reset while acknowledging")
        self.acked = True

    async def _nack(self, delay: float) -> None:
        raise AssertionError("a success is never released")

    async def _reject(self) -> None:
        raise AssertionError("a success is never rejected")


class OneByOne(MemoryTransport):
    """A transport that keeps the default ``ack_many`` (one acknowledgement at a time), as
    a transport without a batch acknowledgement of its own does."""

    ack_many = Transport.ack_many


@pytest.fixture
def transport() -> Transport:
    return OneByOne()


async def test_ack_many_settles_every_delivery_and_raises_the_first_failure(
    transport: Transport,
) -> None:
    batch = [Recorded(n, fails=n in (1, 3)) for n in range(5)]
    with pytest.raises(TransportError, match="connection reset"):
        await transport.ack_many(batch)
    assert all(d.settled for d in batch)  # none is left counted in flight
    assert [d.acked for d in batch] == [True, False, True, False, True]  # the rest went out


async def test_a_failed_acknowledgement_keeps_the_done_marks_and_is_logged(
    transport: Transport, caplog: pytest.LogCaptureFixture
) -> None:
    store = MemoryStore()
    released: list[Delivery] = []
    settler = Settler(store, transport, on_released=released.extend)
    batch = [Recorded(n, fails=n == 0) for n in range(3)]
    with caplog.at_level(logging.WARNING, logger="nerve"):
        for delivery in batch:
            await settler.done(delivery)
        await settler.close()  # does not raise: the broker delivers them again
    assert released == []
    for delivery in batch:  # so the redelivery is recognised as handled
        assert await store.is_done("job", delivery.event.event_id)
    assert "could not acknowledge 3 handled events" in caplog.text
    assert [d.acked for d in batch] == [False, True, True]
