"""``amqp://user:password@host:port/vhost``: RabbitMQ (3.10 or later), through aio-pika.

Layout (every name under ``prefix``, default ``nerve``; the ``*_NAME`` constants of ``wire``)::

    {prefix}.events        topic exchange: every published event, routing key = event type
    {prefix}.sub.{name}    a durable quorum queue per subscription, bound with its pattern
    {prefix}.delay         headers exchange: retries waiting for their delay...
    {prefix}.wait.{ms}     ...in a quorum queue per delay step (x-message-ttl = ms)
    {prefix}.parked        a quorum queue for what the broker gives up on (see below)

Routing is the broker's: AMQP topic patterns are nerve's (``*`` one segment, ``#`` zero or
more), so each subscription queue is bound to the events exchange with its own pattern and
gets every matching event (fan-out); the workers of a subscription consume its queue
(competing consumers, manual acknowledgement). The consumer prefetch (``basic.qos``) is the
bound on what one process holds: the worker's batch size unless ``prefetch`` is given.
An event that matches no queue is dropped by the exchange: in nerve's contract an event
with no subscriber is accepted (``publish`` succeeds), so events publish unmandatory.

RabbitMQ keeps an event only for queues that exist when it is published: a subscription
starts with its queue's declaration (``start_from`` cannot reach further back), so an app
should declare its subscriptions (start its bus, or run ``nerve worker`` once) before
anything publishes to them. Both ``start_from`` values mean "from the declaration on".

``publish`` returns once the broker confirmed the event (publisher confirms): it is then
persistent in every matching quorum queue, on disk and replicated. A retry or a replay
is for one subscription only: it is published to the default exchange with the queue's
name as routing key (mandatory: a replay to a subscription that does not exist fails).

Retries: RabbitMQ 3.10 has no delayed delivery, so :meth:`AMQPDelivery.nack` re-publishes
the event with its next attempt number to the delay exchange, which routes it (by a header)
to the wait queue of the nearest delay step; when its TTL expires the queue dead-letters it
(at-least-once) back through the default exchange to the subscription's queue, its
original routing key. Only then is the original delivery acknowledged (at least once: a
crash in between delivers the event twice, which the idempotency store absorbs). One TTL
per wait queue keeps the queue first-in first-out in expiry order (per-message TTL only
expires at the head). The steps are 1, 1.5, 2, 3, 5 and 7 times powers of ten
milliseconds, from 10 ms up to a day; a delay is rounded to the nearest (within about 20%)
and one under 5 ms skips the wait queue. Wait queues delete themselves (``x-expires``)
once unused for their TTL plus 5 minutes. RabbitMQ 3.10 writes a new quorum queue's Raft
registration to disk up to half a second late, and a queue declared just before a crash
comes back without a leader, holding what it had and confirming nothing: so a retry's
original is held until its wait queue is :data:`WAIT_REGISTERED` seconds old (``waits``), a
re-publish not confirmed within :data:`REQUEUE_CONFIRM` seconds has its wait queue
checked: one that does not answer is deleted (declared anew by the next retry) and the
delivery handed back; a sound one (a memory alarm) is waited for, spending no attempt.

The attempt number is the ``nerve-attempt`` header of a re-published retry (1 if absent)
plus the quorum queue's ``x-delivery-count``: a delivery returned to the queue (its
process died, its channel closed) comes back counted. A broker-side ``x-delivery-limit``
(``delivery_limit``, default 20 returns) stops a message that kills every worker that
takes it: the queue then dead-letters it to ``{prefix}.parked``. :meth:`take_parked` hands
what is parked there to the core (``parked``), which files each event as a dead letter of
the subscription its queue names, then has it acknowledged: listed and replayed like the
others. Malformed messages (not a nerve event) are parked too, and stay there for an
operator (``rabbitmqctl list_queues``). Dead letters decided by the core are in nerve's
store; their deliveries are simply acknowledged.

Connections: aio-pika's robust connection reconnects after a broker restart or a network
cut (``reconnect_interval``, default 5 s) and re-declares the exchanges, queues, bindings,
prefetch and consumers. Deliveries received on the lost connection are returned to their
queue by the broker and come back counted; settling one of them afterwards does nothing,
and one under way when the connection drops is given up at once (aiormq alone can leave it
waiting for ever; see :func:`client.unless_lost`).
While the connection is down, ``publish`` raises :class:`nerve.TransportError` at once
(it may also wait for a channel being restored, up to its ``timeout``); a publish caught
by the cut raises too and may or may not have been accepted: publishing the same event
again is safe (same id: not handled again once handled). RabbitMQ's consumer timeout
(``consumer_timeout``, 30 minutes by default) closes the channel of a delivery left
unacknowledged longer: set it above your longest handler.

``wait_idle`` polls: the subscriptions' queues and the wait queues this process used have
no ready message, and nothing delivered here is unsettled. AMQP does not report another
process's unacknowledged deliveries, so a bus's ``join`` does not wait for them.

RabbitMQ holds no store: the bus's store is ``store`` (a store URL, URL-encoded if it has
its own query) or ``NERVE_STORE_URL``; without either, a SQLite file in the state
directory (``{NERVE_STATE_DIR}/nerve-{prefix}.db``), shared by the processes of one host.

URL options (query string): ``prefix``, ``store``, ``prefetch`` (deliveries a process
holds per subscription), ``delivery_limit`` (returns before parking; 0: no limit). Other
options go to aio-pika (``reconnect_interval``, ``heartbeat``, ``name``, ...).

The modules, one thing each::

    transport.py   AMQPTransport: connection and channels, declare, publish, consume, settle,
                   idleness and lag
    consumer.py    SubscriptionQueue: a subscription's queue as consumed here, its buffer
    delivery.py    AMQPDelivery: a consumed message, settled by the transport
    parked.py      the parked queue: what the broker gave up on, handed up to be filed
    waits.py       the wait queues of retries: declaring them, holding a retry's original
                   while its wait queue is new, checking (and deleting) a leaderless one
    wire.py        names, headers and messages on the wire; the URL's options
    client.py      aio-pika and aiormq: their errors, a write that gives up on a lost
                   connection, what a failure becomes for nerve
"""

from nerve.transports.amqp.delivery import AMQPDelivery
from nerve.transports.amqp.transport import DEFAULT_DELIVERY_LIMIT, AMQPTransport
from nerve.transports.amqp.waits import DELAY_STEPS_MS, delay_step_ms
from nerve.transports.amqp.wire import amqp_options, amqp_where, queue_name

__all__ = [
    "DEFAULT_DELIVERY_LIMIT",
    "DELAY_STEPS_MS",
    "AMQPDelivery",
    "AMQPTransport",
    "amqp_options",
    "amqp_where",
    "delay_step_ms",
    "queue_name",
]
