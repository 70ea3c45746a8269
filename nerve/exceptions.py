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
    │   ├── ChainTooDeep        agents triggering each other went past the chain limit
    │   ├── OutputInvalid       the model's output stayed invalid after every re-ask
    │   ├── BudgetExceeded      the event's token or time budget for model calls is spent
    │   ├── ToolNotAllowed      the model called a tool not on the handler's allow-list
    │   ├── GuardrailTripped    an agent's input or output guardrail blocked the run
    │   ├── AgentStopped        an agent's run ended without an answer (``messages``: so far)
    │   │   ├── TurnsExceeded         still calling tools after ``max_turns`` model calls
    │   │   ├── ToolArgumentsInvalid  the model's tool arguments kept failing validation
    │   │   └── AgentBudgetExceeded   the budget ran out mid-run (also a BudgetExceeded)
    │   └── ModelRequestRejected  the model endpoint refused the request (a 4xx)
    ├── Retry                   retry (after ``delay`` seconds if given), counting an attempt
    │   └── ModelUnavailable    the model endpoint failed after the SDK's own retries
    └── HandlerTimeout          the handler ran past its subscription's timeout
```

Event validation errors are pydantic's own ``ValidationError``: constructing a bad
``Event`` fails the way every pydantic model does.
"""

from __future__ import annotations

import json
from typing import Any


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


class CrashLoop(Reject):
    """The event came back more times than its retries allow without ever finishing: the
    process handling it died each time (a handler that crashes its process, runs out of
    memory, or is killed). nerve records this error in the dead letter; handlers never
    raise it."""


class OutputInvalid(Reject):
    """The model's output did not validate against the requested type, even after re-asks.

    ``errors`` holds the validation error of each attempt, oldest first.
    """

    def __init__(self, message: str, errors: list[str] | None = None) -> None:
        super().__init__(message)
        self.errors = errors or []


class BudgetExceeded(Reject):
    """The event's token or time budget for model calls is spent (a retry would not help).

    Spend is counted per ``(subscription, event_id)`` across attempts; a replay from the
    dead letter queue starts a fresh budget.
    """


class ToolNotAllowed(Reject):
    """The model asked for a tool that is not on the allow-list; it was not run."""


class GuardrailTripped(Reject):
    """An agent's input or output guardrail blocked the run (the message says why)."""


class AgentStopped(Reject):
    """An agent's run ended before its answer; ``messages`` is the conversation so far.

    The message ends with the conversation as JSON lines, so the dead letter shows a
    person what the model saw and did.
    """

    def __init__(self, message: str, messages: list[Any] | None = None) -> None:
        self.messages: list[Any] = list(messages or [])
        lines = "\n".join(json.dumps(m, default=str) for m in self.messages)
        super().__init__(f"{message}\nconversation so far:\n{lines}" if lines else message)
        self.reason = message


class TurnsExceeded(AgentStopped):
    """The model was still calling tools after the agent's ``max_turns`` model calls."""


class ToolArgumentsInvalid(AgentStopped):
    """The model's tool arguments failed validation more often than the agent allows."""


class AgentBudgetExceeded(AgentStopped, BudgetExceeded):
    """The event's budget ran out during an agent's run (a :class:`BudgetExceeded`)."""


class ModelRequestRejected(Reject):
    """The model endpoint refused the request (400, 401, 403, 404, 422...); the SDK's
    error is chained. Retrying the same request would be refused again."""


class Retry(HandlerError):
    """Raise in a handler to retry the event, optionally after ``delay`` seconds.

    The attempt counts against the subscription's ``retries``; when none are left the
    event is dead-lettered like any other failure.
    """

    def __init__(self, message: str = "retry requested", *, delay: float | None = None) -> None:
        super().__init__(message)
        self.delay = delay


class ModelUnavailable(Retry):
    """The model endpoint failed (connection, timeout, 429, 5xx) after the SDK's retries.

    The event is retried like any failure, after the endpoint's ``Retry-After`` when it
    gave one longer than the SDK waits; the SDK's error is chained.
    """


class RunCancelled(HandlerError):
    """The run was cancelled (``bus.cancel`` or a subscription's ``cancel_on``): raised by
    ``wait_for`` in the resumed handler; the event is settled as done, not retried."""


class HandlerTimeout(HandlerError, TimeoutError):
    """The handler ran longer than its subscription's ``timeout``; a retryable failure."""
