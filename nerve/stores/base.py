"""The store contracts: what the core remembers about deliveries, apart from the broker.

The core uses a store through a few small contracts, each an abstract class; a part of
the core types against the one it uses, and :class:`Store` is all of them together, the
class every backend subclasses (one backend implements every contract):

- :class:`PublishRecords`: **published** records (event id -> type), kept for
  ``window``, so ``status`` can name the subscriptions an event is still pending for.
- :class:`IdempotencyStore`, keyed by ``(subscription, event_id)``: **done marks**, kept
  for ``window`` seconds (an event redelivered or re-published within the window is
  acknowledged without running the handler again), and **failures**, the errors of
  attempts that will be retried, so the dead letter entry made after the last attempt
  holds every attempt's error even when attempts ran in different processes.
- :class:`DeadLetterStore`: **dead letters**, kept until replayed or purged.
- :class:`StepStore`: **step results** (``nerve.step``), the JSON result of each
  named step of a handler, so a retried or replayed event does not redo (and pay for) a
  step that succeeded; and **counters**, named totals per pair that only add up
  atomically (the core counts the starts of redelivered events in one, to catch crash
  loops; ``nerve.llm`` keeps an event's model spend in another, so a budget holds across
  retries).
- :class:`EventLog` (``nerve.history``): every published event in full and every
  attempt's outcome, kept ``history_retention`` seconds (trimmed by
  :meth:`EventLog.trim_history`).
- :class:`SubscriptionRegistry`: the **declared subscriptions** (name -> pattern) of every
  bus that connected with this store, kept for good, so a publisher-only bus knows them.
- :class:`Transactions`: a database transaction committed with a done mark.
- :class:`Timers`: things due at a time (delayed events, schedules, waits' timeouts and
  answers), each claimed by one process at a time with a lease.
- :class:`Limits`: flow control shared by every process: slots of keyed concurrency
  limits (held with a lease) and GCRA rate states (throttles, rate limits, model limits).
- :class:`WaitStore`: the handlers suspended in ``nerve.wait_for``, indexed by the event
  type and match key they wait for, so a published event finds its waits in one lookup
  per shape of match, never a scan.

Step results and counters are kept at least ``window`` seconds after their last write,
and for as long as the pair has a dead letter, however long that is: a replay finds its
steps. Taking a dead letter (replay or purge) forgets every counter of the pair, so a
replayed event starts with a fresh budget and fresh crash-loop counting (and its
recorded steps).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any, Self

from nerve.events import Event
from nerve.exceptions import ConfigurationError
from nerve.records import (
    AttemptError,
    DeadLetter,
    DeliveryState,
    EventRecord,
    OutcomeRow,
    PublishedRow,
    Timer,
    WaitRecord,
)
from nerve.settings import Settings

__all__ = [
    "DEFAULT_HISTORY_RETENTION",
    "DEFAULT_WINDOW",
    "RATE_EPSILON",
    "DeadLetterStore",
    "EventLog",
    "IdempotencyStore",
    "Limits",
    "PublishRecords",
    "StepStore",
    "Store",
    "SubscriptionRegistry",
    "Timers",
    "Transactions",
    "WaitStore",
]

#: Default idempotency window: a day.
DEFAULT_WINDOW = 24 * 3600.0
#: A rate take within this many seconds of conforming conforms (float unix times).
RATE_EPSILON = 1e-6
#: Default time the event log keeps events and outcomes: a week.
DEFAULT_HISTORY_RETENTION = 7 * 24 * 3600.0


class PublishRecords(ABC):
    """Which events were published lately, and their types."""

    @abstractmethod
    async def record_published(self, event: Event[Any]) -> None:
        """Remember that ``event`` was published (for :meth:`event_type`)."""

    async def record_published_many(self, events: Sequence[Event[Any]]) -> None:
        """:meth:`record_published` for many events (stores override it with one write)."""
        for event in events:
            await self.record_published(event)

    @abstractmethod
    async def event_type(self, event_id: str) -> str | None:
        """The type of a published event still within the window, or None."""


class IdempotencyStore(ABC):
    """Done marks and the failures of attempts that will be retried."""

    @abstractmethod
    async def is_done(self, subscription: str, event_id: str) -> bool:
        """Whether the subscription handled this event within the window."""

    @abstractmethod
    async def mark_done(self, subscription: str, event_id: str) -> None:
        """Record success (and forget the attempt failures of this pair)."""

    async def done_among(self, subscription: str, event_ids: Sequence[str]) -> set[str]:
        """Which of ``event_ids`` the subscription handled within the window."""
        return {eid for eid in event_ids if await self.is_done(subscription, eid)}

    async def mark_done_many(self, done: Mapping[str, Sequence[str]]) -> None:
        """:meth:`mark_done` for many events: subscription -> event ids.

        Stores override it with one write (a transaction, a pipeline).
        """
        for subscription, event_ids in done.items():
            for event_id in event_ids:
                await self.mark_done(subscription, event_id)

    @abstractmethod
    async def add_failure(self, subscription: str, event_id: str, error: AttemptError) -> None:
        """Record a failed attempt that will be retried."""

    @abstractmethod
    async def take_failures(self, subscription: str, event_id: str) -> list[AttemptError]:
        """Remove and return the recorded failures of this pair, oldest first."""

    @abstractmethod
    async def states(self, event_id: str) -> dict[str, DeliveryState]:
        """The recorded (non-pending) state of this event per subscription: done, else
        dead-lettered, else failed."""


class DeadLetterStore(ABC):
    """Dead letters, keyed by ``(subscription, event_id)``, kept until taken."""

    @abstractmethod
    async def add_dead_letter(self, entry: DeadLetter) -> None:
        """Store a dead letter, replacing one for the same pair."""

    @abstractmethod
    async def dead_letters(
        self,
        *,
        event_id: str | None = None,
        subscription: str | None = None,
        limit: int | None = None,
    ) -> list[DeadLetter]:
        """Dead letters matching the filters, newest first."""

    @abstractmethod
    async def take_dead_letters(
        self, *, event_id: str | None = None, subscription: str | None = None
    ) -> list[DeadLetter]:
        """Remove and return the dead letters matching the filters (all when none given).

        Every counter of each pair taken is forgotten (see :meth:`StepStore.add_to`); its
        step results are kept another window from now.
        """


class StepStore(ABC):
    """Durable step results and counters, per ``(subscription, event_id)``."""

    @abstractmethod
    async def step_result(self, subscription: str, event_id: str, step: str) -> str | None:
        """The recorded result (JSON text) of a handler's named step, or None."""

    @abstractmethod
    async def record_step(self, subscription: str, event_id: str, step: str, result: str) -> None:
        """Record the result (JSON text) of a step that succeeded, replacing an older one."""

    @abstractmethod
    async def add_to(
        self, subscription: str, event_id: str, counter: str, amounts: Mapping[str, float]
    ) -> dict[str, float]:
        """Add ``amounts`` (name -> amount) to the pair's ``counter``; return its totals.

        The totals are every name the counter holds (a name never added to is absent).
        With empty ``amounts`` this reads the totals and writes nothing. Atomic:
        concurrent adds are all counted. Counter and amount names must not contain NUL.
        """


class EventLog(ABC):
    """The event log (``nerve.history``): events in full and the outcomes of attempts."""

    @abstractmethod
    async def record_history(
        self, events: Sequence[PublishedRow], outcomes: Sequence[OutcomeRow]
    ) -> None:
        """Append published events (in full) and attempt outcomes to the event log.

        An event already in the log is kept as first recorded. Called with batches.
        """

    @abstractmethod
    async def trim_history(self, before: float) -> None:
        """Forget events published (and outcomes ended) before ``before`` (unix time)."""

    @abstractmethod
    async def history_event(self, event_id: str) -> EventRecord | None:
        """One logged event with its outcomes (oldest first), or None."""

    @abstractmethod
    async def history_chain(self, correlation_id: str) -> list[EventRecord]:
        """Every logged event of a correlation id, with outcomes, in publish order."""

    @abstractmethod
    async def history_after(
        self, after: str | None, limit: int
    ) -> tuple[list[EventRecord], str | None]:
        """Up to ``limit`` events logged after the cursor ``after``, oldest first, and the
        cursor after the last of them (``after`` itself when there is nothing new).

        With ``after=None``: the newest ``limit`` events and the cursor after them (None
        only when the log is empty). Cursors are opaque strings, ordered by logging.
        """

    @abstractmethod
    async def history_of_type(self, event_type: str, since: float, limit: int) -> list[EventRecord]:
        """Up to ``limit`` logged events of ``event_type`` published at ``since`` (unix
        time) or later, oldest first (their outcomes may be left out).

        An index by type and time, not a scan: a wait looks back here for the events
        that came before it was registered (``nerve.wait_for``).
        """


class SubscriptionRegistry(ABC):
    """The subscriptions declared by every bus that connected with this store."""

    @abstractmethod
    async def declare_subscriptions(self, subscriptions: Mapping[str, str]) -> None:
        """Remember subscriptions (name -> pattern), replacing the pattern of a known name."""

    @abstractmethod
    async def subscriptions(self) -> dict[str, str]:
        """Every subscription declared with this store: name -> pattern."""


class Transactions(ABC):  # noqa: B024  # one optional method: stores without it refuse
    """A handler's database writes committed together with its done mark."""

    def transaction(self, subscription: str, event_id: str) -> AbstractAsyncContextManager[Any]:
        """A database transaction that also marks ``(subscription, event_id)`` done.

        What the handler writes through it and the done mark commit together or not at
        all, so a crash anywhere cannot duplicate the writes: a redelivered event finds
        its mark and is not handled again. Stores backed by a database offer it; the
        object yielded is that database's connection (see each store).

        Raises:
            AlreadyHandled: at commit, the mark exists (another worker won); rolled back.
            ConfigurationError: this store has no transactions.
        """
        raise ConfigurationError(
            f"{type(self).__name__} has no transactions: use the SQLite or PostgreSQL store "
            "to write a handler's effects together with its done mark"
        )


class Timers(ABC):
    """Things due at a time, by id; claimed by one process at a time with a lease.

    A timer whose claim was not followed by :meth:`delete_timer` (its process died)
    comes due again when the lease ends: whatever a timer does must be safe to do twice.
    """

    @abstractmethod
    async def add_timer(self, timer: Timer, *, replace: bool = False) -> bool:
        """Create ``timer`` unless one with its id exists (then return False and change
        nothing); with ``replace``, create or overwrite it. True when written.

        Atomic: of concurrent adds of one id without ``replace``, exactly one wins.
        """

    @abstractmethod
    async def claim_timers(self, now: float, lease: float, limit: int) -> list[Timer]:
        """Up to ``limit`` timers due at ``now`` or before, earliest first, each moved to
        ``now + lease`` so that no other caller claims it meanwhile. The timers are
        returned as they were before the move (their ``due`` is when they were due).

        Atomic: concurrent claims never return the same timer.
        """

    @abstractmethod
    async def delete_timer(self, timer_id: str) -> bool:
        """Forget a timer; True if it existed."""

    @abstractmethod
    async def timers(self, prefix: str = "", limit: int = 100) -> list[Timer]:
        """Timers whose id starts with ``prefix``, earliest due first."""

    @abstractmethod
    async def timer(self, timer_id: str) -> Timer | None:
        """One timer, or None."""


class WaitStore(ABC):
    """Suspended handlers, indexed by what they wait for.

    A wait is found by ``(event_type, key)`` where the key is
    :func:`nerve.matching.match_key` of its match; the store also keeps, per event type,
    the shapes (sorted path tuples) of the waits on it, so :meth:`waits_for` costs one
    lookup per shape in use for the event's type.
    """

    @abstractmethod
    async def add_wait(self, wait: WaitRecord) -> None:
        """Index a wait (replacing one with the same ``wait_id``)."""

    @abstractmethod
    async def waits_for(self, events: Sequence[Event[Any]]) -> list[tuple[WaitRecord, Event[Any]]]:
        """The waits each event matches: (wait, event) pairs, events in the order given.

        Reads only; answering a wait is :meth:`Timers.add_timer` of its answer timer.
        """

    @abstractmethod
    async def remove_wait(self, wait_id: str) -> bool:
        """Forget a wait; True if it existed. A shape no wait has any more may be kept."""

    @abstractmethod
    async def waits(
        self,
        *,
        subscription: str | None = None,
        event_id: str | None = None,
        event_type: str | None = None,
        limit: int | None = None,
    ) -> list[WaitRecord]:
        """Waits matching the filters (``event_id`` is the suspended run's event,
        ``event_type`` the awaited one), oldest first."""


class Limits(ABC):
    """Flow control shared by every process on the store (``nerve.flow``).

    Slots: ``(limiter, key)`` has at most ``limit`` holders at once; a holding lasts until
    freed or its lease ends (a crashed holder frees its slot by itself).

    Rates (GCRA): ``(limiter, key)`` keeps a theoretical arrival time (TAT). Taking
    ``cost`` units at ``now`` with an emission interval ``interval`` (seconds per unit)
    and a burst of ``burst`` units: ``tat = max(stored, now)``, ``new = tat + cost *
    interval``; the units conform when ``new - now <= burst * interval`` (within
    :data:`RATE_EPSILON`). A state whose
    TAT is past may be forgotten (it equals a fresh one).
    """

    @abstractmethod
    async def take_slot(
        self, limiter: str, key: str, holder: str, *, limit: int, lease: float, now: float
    ) -> bool:
        """Hold a slot of ``(limiter, key)`` for ``holder`` until ``now + lease``; True if
        held. Holdings whose lease ended do not count; a holder taking again renews its
        lease (and counts once). Atomic across processes: never more than ``limit``."""

    @abstractmethod
    async def free_slot(self, limiter: str, key: str, holder: str) -> None:
        """Let go of ``holder``'s slot (nothing if it holds none)."""

    @abstractmethod
    async def slots_taken(self, limiter: str, key: str, now: float) -> int:
        """How many holders of ``(limiter, key)`` have a lease not ended at ``now``."""

    @abstractmethod
    async def take_rate(
        self,
        limiter: str,
        key: str,
        *,
        interval: float,
        burst: float,
        cost: float,
        now: float,
        force: bool = False,
    ) -> float:
        """Take ``cost`` units (see the class); return 0.0 if they conform (recorded), else
        the seconds until they would (nothing recorded, unless ``force``: then they are
        recorded anyway, as usage that happened). A negative cost gives units back (the
        TAT goes down, never below ``now``). Atomic across processes."""

    @abstractmethod
    async def block_rate(
        self, limiter: str, key: str, *, until: float, burst: float, interval: float
    ) -> None:
        """Make ``(limiter, key)`` refuse every take until ``until`` (a model's 429 with
        Retry-After pauses every process): its TAT becomes at least ``until + burst *
        interval``."""


class Store(
    PublishRecords,
    IdempotencyStore,
    DeadLetterStore,
    StepStore,
    EventLog,
    SubscriptionRegistry,
    Transactions,
    Timers,
    WaitStore,
    Limits,
):
    """Every contract in one: what a backend implements and a bus is given.

    Implementations must be safe to share between the subscriptions of one bus. Every
    method is a coroutine so that network stores fit the same contract.
    """

    @classmethod
    def from_url(cls, url: str, settings: Settings) -> Self:
        """Make the store for ``url``, taking its options from ``settings``.

        The stores :func:`nerve.stores.store_from_url` names override it.
        """
        raise ConfigurationError(f"{cls.__name__} is not made from a URL")

    async def open(self) -> None:  # an optional hook: most stores need nothing
        """Connect and create what the store needs."""

    async def close(self) -> None:
        """Release connections. The store may be opened again."""
