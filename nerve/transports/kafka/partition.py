"""What a member knows of one partition assigned to it: the offsets in flight, the commit
point, and the offsets other members delivered before it.

Commits: offsets are committed only after handling. Deliveries of one partition finish out
of order, so each assigned partition keeps the offsets in flight (handed out, not
settled); the committed offset is the lowest of them, or the next offset to read when none
is in flight. A crash therefore redelivers what was in flight (and anything settled above
it); the core's idempotency store recognises what was already handled.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(eq=False, slots=True)
class Partition:
    """What this member knows of one assigned partition of a subscription."""

    tp: Any  # aiokafka's TopicPartition
    next: int | None  # the offset after the last record read (None: nothing read yet)
    in_flight: set[int] = field(default_factory=set)  # read, not settled
    committed: int | None = None  # what this member last committed
    claimed: int = -1  # the highest offset recorded in the claims topic
    #: Offsets other members delivered without committing: (last offset, deliveries) ranges.
    claims: list[tuple[int, int]] = field(default_factory=list)
    revoked: bool = False  # during a rebalance: may come back to this member
    gone: bool = False  # went to another member: its deliveries are not handed out

    def commit_point(self) -> int | None:
        if self.in_flight:
            return min(self.in_flight)
        return self.next

    def delivered_before(self, offset: int) -> int:
        """How many times other members delivered ``offset`` (from the claims read)."""
        for last, count in self.claims:
            if offset <= last:
                return count
        return 0

    def claims_through(self, last: int) -> list[tuple[int, int]]:
        """The claims once this member delivers up to ``last``: (last offset, deliveries)
        ranges, cumulative: offsets others delivered count once more, ours up to last once.
        """
        ranges: list[tuple[int, int]] = []
        for end, count in self.claims:
            if end <= last:
                ranges.append((end, count + 1))
                continue
            if not ranges or ranges[-1][0] < last:
                ranges.append((last, count + 1))  # this range, split at last
            ranges.append((end, count))
        if not ranges or ranges[-1][0] < last:
            ranges.append((last, 1))
        return ranges
