"""The transport contract's shared rules (nerve/transports/base.py)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Self

import pytest

from nerve import ConfigurationError, Event, EventBus, Settings
from nerve.subscription import StartFrom
from nerve.transports.base import Delivery, Transport


class Durable(Transport):
    """A broker with no store of its own, as a plug-in might be."""

    durable = True
    name = "Acme"

    @classmethod
    def from_url(cls, url: str, settings: Settings) -> Self:
        return cls()

    async def connect(self) -> None: ...

    async def close(self) -> list[Delivery]:
        return []

    async def declare(self, subscription: str, pattern: str, *, start_from: StartFrom) -> None: ...

    async def publish(
        self,
        event: Event[Any],
        *,
        subscription: str | None = None,
        timeout: float | None = None,
        bounded: bool = True,
    ) -> None: ...

    async def receive(self, subscription: str, max_items: int) -> Sequence[Delivery]:
        return []


def test_a_durable_transport_without_a_store_is_refused_with_the_fix() -> None:
    # Its dead letters would live in one process's memory and go with it.
    with pytest.raises(ConfigurationError, match="no store of its own: give one") as caught:
        EventBus(transport=Durable())
    assert "NERVE_STORE_URL" in str(caught.value)
    assert "postgresql://" in str(caught.value)


def test_a_memory_store_asked_for_is_allowed() -> None:
    bus = EventBus(transport=Durable(), store="memory://")
    assert bus.store_url == "memory://"


def test_claim_decides_the_first_settlement_once() -> None:
    class Plain(Delivery):
        async def _ack(self) -> None: ...
        async def _nack(self, delay: float) -> None: ...
        async def _reject(self) -> None: ...

    delivery = Plain(Event(event_type="a.b"), "s")
    assert not delivery.settled
    assert delivery.claim()
    assert delivery.settled
    assert not delivery.claim()
