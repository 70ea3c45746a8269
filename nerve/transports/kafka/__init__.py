"""``kafka://host:9092``: Apache Kafka (aiokafka), a consumer group per subscription.

Layout (every name under ``prefix``, default ``nerve``)::

    {prefix}.events              one topic holding every published event
    {prefix}.retry.{name}        a topic per subscription: its retries and DLQ replays
    {prefix}.claims.{name}       a topic per subscription: offsets its members handed out
    {prefix}.{name}              the subscription's consumer group (reads both topics)

Why one topic for every event: a pattern (``github.#``) must match event types first
published after its workers started, and a new subscription must see events published
before it existed. Each subscription's group reads the whole topic and skips the events
its pattern does not match (by the ``nerve-type`` header, without parsing them). The price
is that every group reads every event: fine for tens of subscriptions, not thousands.

Ordering: an event with ``partitionkey`` metadata (the CloudEvents partitioning
extension) is keyed by it, and Kafka hashes the key to a partition; an event without one
goes to partition 0. A partition is read by one member at a time, in order: events without
a key keep their publication order (as on every other transport), and events with the same
key keep theirs. Keys are what spreads a subscription's work over several workers (one
active member per partition); set ``partitionkey`` to the ordering key (a ticket, an
account) of subscriptions with ``ordered_by``.

URL options: ``prefix``, ``partitions`` (of topics nerve creates, default 12),
``replication`` (default 1; use 3 on a real cluster), ``session_timeout_ms`` (default 10000),
``security_protocol``, ``sasl_mechanism`` (credentials from the URL's user and password),
``store`` (the default store URL, see :meth:`KafkaTransport.own_store_url`).
See docs/transport-kafka.md.

The modules, in reading order:

- :mod:`~nerve.transports.kafka.wire`: topic and group names, headers, record keys.
- :mod:`~nerve.transports.kafka.cluster`: reaching the brokers, clients, topic admin.
- :mod:`~nerve.transports.kafka.transport`: :class:`KafkaTransport`: lifecycle,
  declaring, publishing, idleness and lag.
- :mod:`~nerve.transports.kafka.producer`: every record nerve writes.
- :mod:`~nerve.transports.kafka.member`: a subscription's consumer side: fetching,
  deliveries ready and waiting for their due time, commits, rebalances.
- :mod:`~nerve.transports.kafka.partition`: one assigned partition; how commits work.
- :mod:`~nerve.transports.kafka.claims`: takeovers, and how attempts are counted.
- :mod:`~nerve.transports.kafka.delivery`: :class:`KafkaDelivery`; how retries work.
"""

from nerve.transports.kafka.cluster import kafka_where
from nerve.transports.kafka.delivery import KafkaDelivery
from nerve.transports.kafka.transport import KafkaTransport
from nerve.transports.kafka.wire import topic_safe

__all__ = ["KafkaDelivery", "KafkaTransport", "kafka_where", "topic_safe"]
