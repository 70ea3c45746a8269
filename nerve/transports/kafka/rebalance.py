"""Rebalances: what a subscription's member does when its group takes partitions from it or
gives it some.

Revoked, it commits what is settled and keeps each partition's state: Kafka's eager
rebalances revoke every partition from every member, and a partition usually comes
straight back. Assigned one it had, with nobody's commit in between, it carries on where
it was; assigned a new one, it starts from the group's commit and reads the partition's
claims (:mod:`nerve.transports.kafka.claims`), so that what another member delivered
comes back as a later attempt.
"""

from __future__ import annotations

import asyncio
import heapq
import logging
from collections import deque
from typing import TYPE_CHECKING, Any

from aiokafka import ConsumerRebalanceListener  # type: ignore[import-untyped]  # no type hints

from nerve.transports.kafka.claims import read_claims
from nerve.transports.kafka.partition import Partition

if TYPE_CHECKING:
    from nerve.transports.kafka.subscription import Subscription

log = logging.getLogger("nerve")


class Rebalance(ConsumerRebalanceListener):  # type: ignore[misc]  # untyped base class
    """Handles a subscription's rebalance callbacks (never raising)."""

    def __init__(self, sub: Subscription) -> None:
        self._sub = sub

    async def on_partitions_revoked(self, revoked: Any) -> None:
        try:
            await self._revoked(list(revoked))
        except Exception:  # aiokafka would log and go on; say what it was
            log.exception("%s: handling revoked partitions failed", self._sub.name)

    async def on_partitions_assigned(self, assigned: Any) -> None:
        try:
            await self._assigned(list(assigned))
        except Exception:
            log.exception("%s: handling assigned partitions failed", self._sub.name)
        self._sub.assigned.set()

    async def _revoked(self, revoked: list[Any]) -> None:
        """Commit what is settled; keep the state in case the partitions come straight back."""
        sub = self._sub
        gone = {tp for tp in revoked if tp in sub.parts}
        if not gone:
            return
        await sub.commit()
        for tp in gone:
            part = sub.parts.pop(tp)
            part.revoked = True
            sub.revoked[tp] = part
        # Deliveries not handed out yet stay: the partition usually comes straight back
        # (the assignment favours the oldest members), and handlers keep working meanwhile.

    async def _assigned(self, assigned: list[Any]) -> None:
        sub = self._sub
        consumer = sub.consumer
        previous, sub.revoked = sub.revoked, {}
        # Nothing is fetched until every partition's state (claims included) is known.
        sub.assigning = True
        consumer.pause(*assigned)
        try:
            parts: dict[Any, Partition] = {}
            fresh: list[Any] = []
            commits = await asyncio.gather(*(consumer.committed(tp) for tp in assigned))
            for tp, committed in zip(assigned, commits, strict=True):
                old = previous.pop(tp, None)
                if old is not None and committed == old.committed:
                    # Ours again, and nobody committed in between: carry on where we were,
                    # with the deliveries still in flight in the handlers.
                    old.revoked = False
                    parts[tp] = old
                    if old.next is not None:
                        consumer.seek(tp, old.next)
                    continue
                part = parts[tp] = Partition(tp=tp, next=committed, committed=committed)
                fresh.append(tp)
                if committed is None and sub.starts_at_end(tp):
                    await consumer.seek_to_end(tp)
                    part.next = await consumer.position(tp)
            for part in previous.values():  # gone to another member: it redelivers them
                part.gone = True
                part.in_flight.clear()
            if previous:
                sub.ready = deque(d for d in sub.ready if not d.partition.gone)
                sub.waiting = [w for w in sub.waiting if not w[2].partition.gone]
                heapq.heapify(sub.waiting)
            if fresh:
                # Records other members delivered without committing come back as later
                # attempts.
                found = await read_claims(sub.cluster, sub.claims_topic, fresh, sub.name)
                for tp, claim in found.items():
                    part = parts[tp]
                    start = part.committed or 0
                    part.claims = [(end, n) for end, n in claim["ranges"] if end >= start]
                    log.info(
                        "%s: took over %s from offset %d; delivered before: %s",
                        sub.name,
                        tp,
                        start,
                        part.claims,
                    )
            sub.parts.update(parts)
        finally:
            sub.assigning = False
            consumer.resume(*assigned)
        await sub.commit()  # "latest" positions become the group's
