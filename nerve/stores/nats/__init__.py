"""``nats://host:4222?prefix=...``: the store on NATS JetStream, the NATS transport's
default (a NATS deployment then needs nothing else), or alone beside another transport.

What it keeps, where, for how long (the layout on the server is in :mod:`.layout`):

- **done marks, failures, publish records**: the KV bucket ``{prefix}_done``, kept the
  idempotency ``window`` (the bucket's max age); a done mark older than the window is
  ignored even before the server removes it. A success forgets the pair's failures
  without a write: the done mark is newer than them (:mod:`.marks`).
- **dead letters**: ``{prefix}_dead``, until taken (replayed or purged).
- **step results and counters**: ``{prefix}_steps``, a window after the pair's last
  write, and ``{prefix}_kept`` (no expiry) while the pair has a dead letter or a wait;
  taking the dead letter forgets the pair's counters and keeps its steps another window,
  removing the last wait keeps both another window (:mod:`.kept`).
- **the event log**: the streams ``{prefix}-log`` and ``{prefix}-log-index``, kept
  ``history_retention`` (their max age) and trimmed by publish time (:mod:`.log`).
- **declared subscriptions**: ``{prefix}_subscriptions``, for good.
- **timers**: ``{prefix}_timers``, until deleted, with an index by due minute
  (:mod:`.timers`).
- **waits**: ``{prefix}_waits``, until removed, indexed by awaited type and match key
  (:mod:`.waits`).
- **slots and rate states** (``nerve.flow``): ``{prefix}_limits``, one key per
  (limiter, key) updated by compare-and-set; a slot key goes when its last holder frees
  it, a rate state stays (nats-server 2.9 has no per-key expiry) (:mod:`.limits`).
- transactions: none (:meth:`nerve.Store.transaction` raises ``ConfigurationError``).

Durability is JetStream's: file storage, and the URL's ``replicas`` (the transport's
option, default 1) for every bucket and stream, so the store's state has as many copies
as the events it is about. With one replica, reads are direct gets; with more, they go
to each stream's leader (a direct get may be answered by a replica a write has not
reached yet). The last store opened sets the buckets' max age and the log's retention.

Round trips: every call is one batch of JetStream requests sent together and awaited
together (:mod:`.wire`), or a few: per event on a bus's hot path, one publish record,
one done-mark read per subscription (per received batch), one done mark per
subscription (per settled batch) and, with the event log on (the default on durable
transports), one log entry and one outcome per subscription. Compare-and-set loops (a
failure appended, a step recorded, a counter added to, a slot taken or freed, a rate
taken from) read then write: two round trips
and one more per lost race. Listing by event (``states``), or every dead letter or
subscription, asks the server for the subjects of a bucket: a scan of its subject index
(nats-server 2.9 keeps no tree of subjects).

Modules: :mod:`.layout` (names, keys, configurations), :mod:`.wire` (batched requests),
:mod:`.marks`, :mod:`.kept`, :mod:`.log`, :mod:`.timers`, :mod:`.waits`, :mod:`.limits`,
:mod:`.store`
(:class:`NATSStore`).
"""

from nerve.stores.nats.store import NATSStore

__all__ = ["NATSStore"]
