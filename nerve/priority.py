"""A subscription's buffer in priority order (``priority=`` on ``bus.on``).

The runner keeps the deliveries it received and has not started in a buffer; for a
subscription with a priority it is this heap instead of a FIFO deque: the highest
priority first, then the order of arrival. It orders what this process has received (its
prefetch), so the broker's backlog beyond that keeps its order until received.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Iterable, Iterator

from nerve.flow.controls import PrioritySpec, priority_of
from nerve.transports.base import Delivery


class PriorityBuffer:
    """The subset of ``deque`` the runner uses, highest priority first."""

    def __init__(self, spec: PrioritySpec | None) -> None:
        self._spec = spec
        self._heap: list[tuple[int, int, Delivery]] = []
        self._order = itertools.count()

    def extend(self, deliveries: Iterable[Delivery]) -> None:
        for delivery in deliveries:
            rank = -priority_of(self._spec, delivery.event)
            heapq.heappush(self._heap, (rank, next(self._order), delivery))

    def popleft(self) -> Delivery:
        return heapq.heappop(self._heap)[2]

    def clear(self) -> None:
        self._heap.clear()

    def __len__(self) -> int:
        return len(self._heap)

    def __bool__(self) -> bool:
        return bool(self._heap)

    def __iter__(self) -> Iterator[Delivery]:
        return (entry[2] for entry in sorted(self._heap))
