"""A token and time budget per event, across retries, kept in the store.

Every model call made through ``nerve.llm`` inside a handler is charged to its
``(subscription, event_id)``: the tokens the endpoint reports and the seconds spent
waiting on it (the SDK's own retries and ``Retry-After`` waits included). The spend lives
in the bus's store, so it adds up over the attempts of an event even when they run in
different processes; before each call the spend is checked, and a spent budget raises
:class:`~nerve.BudgetExceeded`, which dead-letters the event (a retry would not help).
A replay from the dead letter queue starts a fresh budget (its recorded steps stay).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

from nerve.context import HandlerContext
from nerve.exceptions import BudgetExceeded
from nerve.llm.settings import LLMSettings

#: The store counter (``StepStore.add_to``) the spend of a pair is kept in: its amounts
#: are ``tokens`` and ``seconds``. Taking the pair's dead letter forgets it.
SPEND_COUNTER = "llm.spend"


class Spend(NamedTuple):
    """What handling one event has cost one subscription in model calls so far."""

    tokens: int
    seconds: float


@dataclass(frozen=True, slots=True)
class Budget:
    """At most ``tokens`` model tokens and ``seconds`` of model calls per event.

    None is no limit. Without an explicit budget, calls use ``NERVE_LLM_BUDGET_TOKENS`` and
    ``NERVE_LLM_BUDGET_SECONDS`` (no limit when unset).

    Example:
        ```python
        TRIAGE_BUDGET = Budget(tokens=4_000, seconds=30)

        @bus.on("support.ticket.created")
        async def triage(event: Event) -> None:
            label = await agent_output(Label, messages, budget=TRIAGE_BUDGET)
        ```
    """

    tokens: int | None = None
    seconds: float | None = None

    @classmethod
    def from_settings(cls, settings: LLMSettings) -> Budget:
        return cls(tokens=settings.budget_tokens, seconds=settings.budget_seconds)

    @property
    def limited(self) -> bool:
        return self.tokens is not None or self.seconds is not None

    def check(self, spent: Spend, where: str) -> float | None:
        """Raise BudgetExceeded if ``spent`` reaches the budget; else the seconds left."""
        if self.tokens is not None and spent.tokens >= self.tokens:
            raise BudgetExceeded(
                f"{where}: token budget spent ({spent.tokens} of {self.tokens} tokens)"
            )
        if self.seconds is None:
            return None
        left = self.seconds - spent.seconds
        if left <= 0:
            raise BudgetExceeded(
                f"{where}: time budget spent ({spent.seconds:.1f} of {self.seconds:g} seconds)"
            )
        return left


def _where(ctx: HandlerContext) -> str:
    return f"{ctx.subscription} {ctx.event.event_id}"


async def seconds_left(ctx: HandlerContext | None, budget: Budget) -> float | None:
    """Check the event's spend before a call; the seconds it may take (None: no limit).

    Outside a handler there is no event to charge: only the time limit applies, to the
    one call.
    """
    if not budget.limited:
        return None
    if ctx is None:
        return budget.seconds
    totals = await ctx.store.add_to(ctx.subscription, ctx.event.event_id, SPEND_COUNTER, {})
    spent = Spend(int(totals.get("tokens", 0)), totals.get("seconds", 0.0))
    return budget.check(spent, _where(ctx))


async def charge(ctx: HandlerContext | None, budget: Budget, tokens: int, seconds: float) -> None:
    """Add a call's cost to the event's spend (kept only when a budget is in force)."""
    if ctx is not None and budget.limited and (tokens or seconds):
        amounts = {"tokens": float(tokens), "seconds": seconds}
        await ctx.store.add_to(ctx.subscription, ctx.event.event_id, SPEND_COUNTER, amounts)


def ran_out(ctx: HandlerContext | None, budget: Budget) -> BudgetExceeded:
    """The error for a call cut off because the time budget ran out."""
    where = _where(ctx) if ctx is not None else "model call"
    return BudgetExceeded(f"{where}: time budget of {budget.seconds:g} seconds ran out mid-call")
