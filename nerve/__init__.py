"""nerve: event-driven AI agents on an event bus with delivery guarantees."""

from __future__ import annotations

from nerve.bus import EventBus, EventStatus
from nerve.context import HandlerContext, current, transaction
from nerve.dlq import DeadLetterQueue
from nerve.events import Event
from nerve.exceptions import (
    AlreadyHandled,
    BudgetExceeded,
    BusClosed,
    BusFull,
    ChainTooDeep,
    ConfigurationError,
    CrashLoop,
    HandlerError,
    HandlerTimeout,
    MissingDependency,
    ModelRequestRejected,
    ModelUnavailable,
    NerveError,
    OutputInvalid,
    PayloadInvalid,
    PublishError,
    Reject,
    Retry,
    RunCancelled,
    StoreError,
    SubscriptionError,
    ToolNotAllowed,
    TransportError,
)
from nerve.history import History
from nerve.observe.observer import Observer
from nerve.records import (
    AttemptError,
    DeadLetter,
    DeliveryState,
    EventRecord,
    Outcome,
    TraceNode,
    WaitRecord,
)
from nerve.settings import Settings
from nerve.steps import step
from nerve.stores.base import Store
from nerve.subscription import Backoff, Subscription
from nerve.transports.base import Delivery, Transport
from nerve.waits import wait_for

__version__ = "0.1.0"

__all__ = [
    "AlreadyHandled",
    "AttemptError",
    "Backoff",
    "BudgetExceeded",
    "BusClosed",
    "BusFull",
    "ChainTooDeep",
    "ConfigurationError",
    "CrashLoop",
    "DeadLetter",
    "DeadLetterQueue",
    "Delivery",
    "DeliveryState",
    "Event",
    "EventBus",
    "EventRecord",
    "EventStatus",
    "HandlerContext",
    "HandlerError",
    "HandlerTimeout",
    "History",
    "MissingDependency",
    "ModelRequestRejected",
    "ModelUnavailable",
    "NerveError",
    "Observer",
    "Outcome",
    "OutputInvalid",
    "PayloadInvalid",
    "PublishError",
    "Reject",
    "Retry",
    "RunCancelled",
    "Settings",
    "Store",
    "StoreError",
    "Subscription",
    "SubscriptionError",
    "ToolNotAllowed",
    "TraceNode",
    "Transport",
    "TransportError",
    "WaitRecord",
    "__version__",
    "current",
    "step",
    "transaction",
    "wait_for",
]
