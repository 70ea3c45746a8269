"""Takeovers: which offsets a member handed out, so that the next one counts attempts.

Kafka does not count deliveries. Before a batch of a partition is handed out, its offset
range is recorded in the subscription's claims topic (``{prefix}.claims.{name}``, keyed by
partition, compacted on real Kafka). A member newly assigned a partition reads the claims
of that partition, and a record another member had delivered without committing comes
back as attempt ``n + 1``: a handler that kills its process ends in the dead letter queue
instead of looping.
"""

from __future__ import annotations

import json
import logging
from typing import Any, Final

from aiokafka import TopicPartition  # type: ignore[import-untyped]  # aiokafka ships no type hints

from nerve import clock
from nerve.transports.kafka.cluster import POLL_MS, Cluster
from nerve.transports.kafka.partition import Partition
from nerve.transports.kafka.producer import Producer
from nerve.transports.kafka.wire import claim_key

log = logging.getLogger("nerve")

#: Longest read of a claims topic at an assignment.
CLAIMS_READ_TIMEOUT: Final = 10.0


async def write_claims(
    producer: Producer, topic: str, claims: dict[Any, tuple[Partition, int]]
) -> None:
    """Record, before handing them out, which offsets this member delivers: for each
    partition, up to which offset (``claims``: partition -> (its state, last offset))."""
    records = []
    for tp, (part, last) in claims.items():
        ranges = part.claims_through(last)
        data = json.dumps({"from": part.commit_point(), "ranges": ranges}).encode()
        records.append((claim_key(tp), data))
        part.claimed = last
    await producer.write_keyed(topic, records)


async def read_claims(cluster: Cluster, topic: str, tps: list[Any], name: str) -> dict[Any, Any]:
    """The latest claim of each partition in ``tps`` (claims ``topic`` read to its end);
    ``name``, the subscription's, is for the log."""
    wanted = {claim_key(tp): tp for tp in tps}
    reader = cluster.consumer(
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        fetch_max_wait_ms=50,  # an empty fetch ends the read: make it a short one
    )
    found: dict[Any, Any] = {}
    await reader.start()
    try:
        claims_tp = TopicPartition(topic, 0)
        reader.assign([claims_tp])
        deadline = clock.monotonic() + CLAIMS_READ_TIMEOUT
        while clock.monotonic() < deadline:
            batch = await reader.getmany(claims_tp, timeout_ms=POLL_MS)
            records = batch.get(claims_tp, ())
            for record in records:
                tp = wanted.get(record.key)
                if tp is not None:
                    found[tp] = json.loads(record.value)
            # The end: a fetch that found nothing at or past the high watermark (not
            # the watermark alone, which a stand-in broker may report early).
            end = reader.highwater(claims_tp)
            if not records and end is not None and await reader.position(claims_tp) >= end:
                return found
        log.warning("%s: could not read its claims topic to the end", name)
        return found
    finally:
        await reader.stop()
