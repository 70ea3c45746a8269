"""The stream and the consumers nerve wants on the server, and making the server's match.

Each is created if missing, else attached to; where its configuration differs from the
app's URL (the configuration of record), it is updated. Another process may create the
same stream or consumer at the same moment: that is expected, not an error.

Retention: the stream keeps events for ``retention`` (a week by default) whether or not
every subscription has handled them (JetStream's ``max_age`` cannot ask the consumers);
``retention=0`` keeps them forever. A new subscription starts at the oldest event kept
(``start_from="earliest"``) or at the next one (``"latest"``).

Retry limit: the core dead-letters from ``attempt`` and the subscription's ``retries``, so
the consumers' ``max_deliver`` is unlimited by default. A finite ``max_deliver`` makes the
broker stop delivering a message after that many deliveries *without* the core having
dead-lettered it; it is a last-resort stop for a handler that kills its process every
time, and the transport then logs the broker's MAX_DELIVERIES advisory as an error (with
the stream sequence, to find the event with ``nats stream get``).
"""

from __future__ import annotations

import nats.errors
import nats.js.errors
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy, StorageType, StreamConfig

from nerve.exceptions import TransportError
from nerve.subscription import StartFrom
from nerve.transports.nats.names import SUBJECTS, consumer_name, filter_subject, stream_name


def stream_config(
    prefix: str, *, replicas: int, retention: float, dedupe_window: float
) -> StreamConfig:
    """The stream of every event published under ``prefix``."""
    return StreamConfig(
        name=stream_name(prefix),
        description=f"nerve events under {prefix}",
        subjects=[SUBJECTS.format(prefix=prefix)],
        storage=StorageType.FILE,
        num_replicas=replicas,
        max_age=retention,
        duplicate_window=dedupe_window,
    )


def consumer_config(
    subscription: str,
    pattern: str,
    *,
    prefix: str,
    start_from: StartFrom,
    ack_wait: float,
    max_deliver: int,
    max_ack_pending: int,
) -> ConsumerConfig:
    """The durable pull consumer of a subscription to ``pattern``."""
    return ConsumerConfig(
        durable_name=consumer_name(subscription),
        description=f"nerve subscription {subscription} ({pattern})",
        deliver_policy=DeliverPolicy.ALL if start_from == "earliest" else DeliverPolicy.NEW,
        ack_policy=AckPolicy.EXPLICIT,
        ack_wait=ack_wait,
        max_deliver=max_deliver,
        max_ack_pending=max_ack_pending,
        filter_subject=filter_subject(prefix, pattern),
    )


async def ensure_stream(
    js: JetStreamContext, stream: str, config: StreamConfig, *, where: str
) -> None:
    """Create ``stream``, or update it to ``config``.

    Raises:
        TransportError: the server has no JetStream.
        nats.errors.Error: as nats-py raises it (the caller translates it).
    """
    try:
        info = await js.stream_info(stream)
    except nats.errors.NoRespondersError as exc:
        raise TransportError(
            f"NATS at {where} has no JetStream: start nats-server with -js"
        ) from exc
    except nats.js.errors.NotFoundError:
        try:
            await js.add_stream(config)
            return
        except nats.js.errors.BadRequestError:
            info = await js.stream_info(stream)  # another process made it
    current = info.config
    if (current.max_age or 0.0, current.duplicate_window or 0.0) != (
        config.max_age,
        config.duplicate_window,
    ) or current.subjects != config.subjects:
        await js.update_stream(config)  # the app's URL is the configuration of record


async def ensure_consumer(
    js: JetStreamContext,
    stream: str,
    consumer: str,
    wanted: ConsumerConfig,
    *,
    subscription: str,
    where: str,
) -> None:
    """Create ``consumer`` (of ``subscription``), or attach to it, updated to ``wanted``.

    Raises:
        TransportError: it could not be declared.
        nats.errors.Error: as nats-py raises it (the caller translates it).
    """
    for _ in range(2):
        try:
            info = await js.consumer_info(stream, consumer)
        except nats.js.errors.NotFoundError:
            try:
                await js.add_consumer(stream, wanted)
                return
            except nats.js.errors.BadRequestError:
                continue  # another process made it meanwhile: look again
        current = info.config
        if (
            current.filter_subject,
            current.ack_wait,
            current.max_deliver,
            current.max_ack_pending,
        ) == (
            wanted.filter_subject,
            wanted.ack_wait,
            wanted.max_deliver,
            wanted.max_ack_pending,
        ):
            return
        # Attach, keeping the consumer's position: its start is what it was.
        wanted.deliver_policy = current.deliver_policy
        wanted.opt_start_seq = current.opt_start_seq
        wanted.opt_start_time = current.opt_start_time
        await js.add_consumer(stream, wanted)  # an update of the same durable
        return
    raise TransportError(f"NATS at {where}: could not declare {subscription!r}")
