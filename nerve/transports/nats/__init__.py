"""``nats://host:port``: NATS JetStream, one stream, a durable pull consumer per subscription.

One concept per module, in the order a reader meets them:

- :mod:`.names`: the stream, the subjects and the consumers on the server, and why every
  subject ends in a target token (patterns with ``#``, replays to one subscription);
- :mod:`.options`: the URL options' defaults (the URL itself, the prefix and connecting
  are :mod:`nerve.connections.nats`'s, shared with the NATS store);
- :mod:`.declaring`: the stream and consumers nerve makes (retention, where a new
  subscription starts, the retry limit);
- :mod:`.transport`: :class:`NATSTransport`: connecting, declaring, publishing (dedupe),
  coming back from a broker restart;
- :mod:`.consuming`: one open pull request per subscription, what arrives, ``receive``;
- :mod:`.delivery`: :class:`NATSDelivery`, its attempt, and the deliveries held in flight
  (acks, retries, keeping them from being redelivered while a handler runs).

docs/transport-nats.md says what survives what and how to run it in production.
"""

from nerve.transports.nats.delivery import NATSDelivery
from nerve.transports.nats.names import MSG_ID_HEADER, consumer_name, filter_subject, stream_name
from nerve.transports.nats.transport import NATSTransport

__all__ = [
    "MSG_ID_HEADER",
    "NATSDelivery",
    "NATSTransport",
    "consumer_name",
    "filter_subject",
    "stream_name",
]
