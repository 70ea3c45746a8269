"""``redis://host:port/db``: Redis Streams (Redis >= 6.2), a consumer group per subscription.

Layout (every key under ``prefix``, default ``nerve``; the names are the ``*_KEY`` constants
of :mod:`.keys`)::

    {prefix}:events              one stream holding every published event
    {prefix}:sub:{name}:direct   a stream per subscription: retries and DLQ replays
    {prefix}:sub:{name}:delayed  a sorted set per subscription: retries waiting for their delay

Why one stream for all events rather than a stream per event type: a subscription's pattern
(``github.#``) must also match event types first published after its workers started, and
a new subscription must see events published before it existed (``start_from="earliest"``).
With one stream, each subscription's consumer group (created by
:meth:`RedisTransport.declare` at ``0`` or ``$``) reads everything and filters by pattern;
entries that do not match are acknowledged in bulk on the spot and never handed out. The
price is that every group reads every event: fine for the tens of subscriptions an agent
system runs, not for thousands.

Why a second stream per subscription: a retry or a replay is for one subscription only.
:meth:`RedisDelivery.nack` acknowledges the original entry and, in the same Lua script,
puts the event with its next attempt number into the subscription's ``delayed`` set,
scored by its due time (Redis server time, so hosts' clocks do not matter). A task moves
due entries into the ``direct`` stream, which the same consumer group reads next to the
main one (one XREADGROUP over both keys, so an XADD to either wakes a blocked reader).
Direct entries are deleted once settled: only one group reads them.

Dead consumers: each transport instance is a consumer of its own (host-pid-random). Redis
redelivers nothing on its own, so :meth:`RedisTransport.receive` runs XAUTOCLAIM every
``claim_interval`` seconds, taking over entries idle for ``lease`` seconds. An entry taken
over is attempt ``delivery count`` (a takeover spends a retry). While a
delivery is in flight here, a background task resets its idle time every ``lease / 3``
(``XCLAIM ... JUSTID``, only while this consumer still owns it), so a long LLM call is not
taken over. A claim is not a lease: a consumer that stalls past ``lease`` (a frozen
process) can still finish and acknowledge after another one took the entry over; the
event is then handled twice, which the idempotency store catches in most cases (at least
once, never lost).

Trimming: Redis's own ``MAXLEN`` trim deletes entries even when they are pending or not
yet read, so nerve never publishes with it. Instead, every minute,
:meth:`RedisTransport.trim` runs ``XTRIM ... MINID`` at the oldest of (the retention
horizon, the first pending entry of each group, the last entry each group read): settled
events older than ``retention`` go, an unprocessed one never does. A consumer group nobody
reads any more (a subscription removed from the code) holds trimming back: delete it with
``XGROUP DESTROY``.
``publish`` never waits: Redis holds the pending work, so ``timeout`` and ``bounded``
are accepted and ignored. A cancellation that redis-py swallows mid-command is raised
again once the command returns (``publish``, ``publish_many``, ``receive``). Keys of one
subscription live in different hash slots: Redis Cluster is not supported.

URL options (query string): ``prefix`` (key prefix), ``block_ms`` (longest XREADGROUP
block, default 1000), ``lease`` (seconds, default 30), ``claim_interval`` (seconds,
default ``lease / 2``), ``retention`` (seconds settled events stay, default a week).
Other query options go to redis-py.

Connections: each client (the transport's, the store's) has a pool of up to
``max_connections`` connections (default 500, a redis-py URL option), one per command in
progress. A command that finds every connection busy waits up to 20 s for one, instead of
failing at once as redis-py 8's default pool does past 100 (a hundred concurrent
``publish`` calls failed with "Too many connections").

The package, one part per module: :mod:`.transport` (the transport: options, lifecycle,
publishing, background tasks), :mod:`.receiving` (reading a subscription, taking over
dead consumers' entries), :mod:`.delivery` (deliveries, settling them, keeping them
claimed), :mod:`.link` (what the parts share), :mod:`.keys` (the names on the wire),
:mod:`.scripts` and ``lua/`` (the Lua scripts).
"""

from nerve.transports.redis.delivery import RedisDelivery
from nerve.transports.redis.keys import (
    DELAYED_KEY,
    DIRECT_KEY,
    EVENTS_KEY,
    FIELD_ATTEMPT,
    FIELD_EVENT,
    FIELD_TYPE,
)
from nerve.transports.redis.transport import RedisTransport

__all__ = [
    "DELAYED_KEY",
    "DIRECT_KEY",
    "EVENTS_KEY",
    "FIELD_ATTEMPT",
    "FIELD_EVENT",
    "FIELD_TYPE",
    "RedisDelivery",
    "RedisTransport",
]
