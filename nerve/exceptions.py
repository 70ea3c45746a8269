"""nerve's exceptions, all raised from one tree.

```
NerveError
├── ConfigurationError          a bad URL, setting or missing optional dependency
│   └── MissingDependency       an extra is not installed (the message has the pip line)
├── SubscriptionError           a handler or pattern that cannot be subscribed
├── PublishError
│   ├── BusFull                 pending work is at its bound and the publish timed out
│   └── BusClosed               the bus is stopped (or stopping) and takes no new events
├── TransportError              the broker failed (the vendor error is chained)
├── StoreError                  the idempotency / dead letter store failed
├── AlreadyHandled              a handler's transaction found its event already done
└── HandlerError                raised *by handlers* (or by nerve on their behalf)
    ├── Reject                  never retry: dead-letter this event now
    │   ├── PayloadInvalid      the payload does not validate against the handler's model
    │   └── ChainTooDeep        agents triggering each other went past the chain limit
    ├── Retry                   retry (after ``delay`` seconds if given), counting an attempt
    └── HandlerTimeout          the handler ran past its subscription's timeout
```

Event validation errors are pydantic's own ``ValidationError``: constructing a bad
``Event`` fails the way every pydantic model does.
"""

from __future__ import annotations


class NerveError(Exception):
    """Base class of every error nerve raises."""


class ConfigurationError(NerveError, ValueError):
    """A URL, setting or argument nerve cannot work with."""


class MissingDependency(ConfigurationError, ImportError):
    """An optional dependency is missing; the message names the extra to install."""


class SubscriptionError(NerveError, ValueError):
    """A subscription cannot be made (bad pattern, non-async handler, duplicate name)."""


class PublishError(NerveError):
    """An event could not be published."""


class BusFull(PublishError):
    """Pending work is at its bound and ``publish`` waited longer than its timeout."""


class BusClosed(PublishError):
    """The bus is stopped or stopping and takes no new events."""


class TransportError(NerveError):
    """The transport (broker) failed; the vendor exception is chained as ``__cause__``."""


class StoreError(NerveError):
    """The store (idempotency, failures, dead letters) failed."""


class AlreadyHandled(NerveError):
    """The event was already recorded as handled when a handler's transaction committed.

    Raised from ``async with nerve.transaction()`` when another worker finished the same
    event first; the transaction is rolled back (none of its writes happen) and the
    delivery is acknowledged as the duplicate it is. Handlers need not catch it.
    """


class HandlerError(NerveError):
    """Base of the exceptions a handler raises to steer delivery."""


class Reject(HandlerError):
    """Raise in a handler to dead-letter the event at once, without retries.

    Example:
        ```python
        @bus.on("payment.received")
        async def check(event: Event) -> None:
            if "amount" not in event.payload:
                raise Reject("payment without an amount")
        ```
    """


class PayloadInvalid(Reject):
    """The event's payload does not validate against the handler's payload model."""


class ChainTooDeep(Reject):
    """A handler published an event deeper in its causal chain than the bus allows."""


class Retry(HandlerError):
    """Raise in a handler to retry the event, optionally after ``delay`` seconds.

    The attempt counts against the subscription's ``retries``; when none are left the
    event is dead-lettered like any other failure.
    """

    def __init__(self, message: str = "retry requested", *, delay: float | None = None) -> None:
        super().__init__(message)
        self.delay = delay


class HandlerTimeout(HandlerError, TimeoutError):
    """The handler ran longer than its subscription's ``timeout``; a retryable failure."""
