"""Limits on a model shared by every process: requests and tokens per minute, a pause on
``Retry-After``, and a circuit after repeated failures.

``LLMSettings(limits=[LLMLimits(model="gpt-4o-mini", requests_per_minute=500,
tokens_per_minute=200_000)])`` (or ``NERVE_LLM_LIMITS='[{"model": ...}]'``). Every call
:func:`nerve.llm.chat` and :func:`nerve.llm.embed` make to a limited model then:

1. waits while the model is paused (below);
2. reserves one request and its estimated tokens (the prompt's characters / 4, plus
   ``max_tokens`` or :attr:`LLMLimits.completion_tokens`), each from a GCRA rate in the
   store, waiting for its turn (in turn order: a reservation is recorded, then waited
   for);
3. sends the request (the SDK's own retries are off: a 429 must reach nerve to be shared);
4. settles: the tokens the endpoint reports replace the estimate (the difference is
   taken, or given back).

A rate of ``L`` per minute allows a burst of ``B = max(1, L // 10)`` and then one unit
every ``60 / (L - B)`` seconds, so in any 60 s window at most ``L`` units conform: the
ceiling holds in every window, not only on average. A call estimated at more tokens
than the burst reserves the burst (it goes when the bucket is full) and settles the rest.

A 429 or 503 (any transient status) with ``Retry-After`` pauses the model in the store
for that long: no process sends to it until then, and the failed call waits and tries
again. A request already on its way when the pause was set still arrives: the pause holds
from the moment the store has it. ``failures`` transient failures in a row (a success
resets the count; a failure is forgotten after a minute, or ``cooldown`` if longer) open
the circuit: the model is paused for ``cooldown``, after which the next failure opens it
again at once.

A call waits for all of this in the handler, up to ``max_wait`` seconds in all; past that
it raises :class:`~nerve.ModelUnavailable` with the delay, and the event is retried then.
That retry counts an attempt against the subscription's ``retries`` (a ``Retry`` does):
keep ``max_wait`` above the pauses you expect, and below the subscription's ``timeout``.

The state lives in the running handler's store (``nerve.current().store``), shared by
every process on it. Outside a handler there is no shared store: calls are limited per
process, by a :class:`~nerve.stores.memory.MemoryStore` of this module.
"""

from __future__ import annotations

import logging
import math
import random
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from nerve import clock
from nerve.context import current
from nerve.exceptions import ModelRequestRejected, ModelUnavailable
from nerve.stores.base import Limits
from nerve.stores.memory import MemoryStore

__all__ = ["LLMLimits", "estimate_tokens", "limited", "limited_seconds", "reserved_ahead"]

log = logging.getLogger("nerve")

T = TypeVar("T")

#: The window the limits are per, in seconds.
WINDOW = 60.0
REQUESTS, TOKENS, PAUSE, FAILURES = "llm:requests", "llm:tokens", "llm:pause", "llm:failures"

#: Limits outside handlers: per process.
_LOCAL = MemoryStore()
#: Seconds calls spent waiting for limits, by model (this process).
_waited: dict[str, float] = {}
#: How far ahead each rate was reserved at the last call, by (model, "requests"/"tokens").
_ahead: dict[tuple[str, str], float] = {}


class LLMLimits(BaseModel):
    """The limits of one model, shared by every process on the store (see the module).

    Example:
        ```python
        LLMLimits(model="gpt-4o-mini", requests_per_minute=500, tokens_per_minute=200_000)
        ```
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    model: str = Field(description="The model name, as calls give it (exact match).")
    requests_per_minute: int | None = Field(default=None, ge=1, description="None: no limit.")
    tokens_per_minute: int | None = Field(default=None, ge=1, description="None: no limit.")
    max_wait: float = Field(
        default=30.0,
        ge=0,
        description="Seconds one call may wait for limits, pauses and retries in all; "
        "past that it raises ModelUnavailable and the event retries later.",
    )
    completion_tokens: int = Field(
        default=256,
        ge=0,
        description="Completion tokens estimated for a call that sets no max_tokens.",
    )
    failures: int = Field(
        default=5, ge=1, description="Transient failures in a row that open the circuit."
    )
    cooldown: float = Field(
        default=30.0, gt=0, description="Seconds the circuit stays open (the model paused)."
    )


def _rate(per_minute: int) -> tuple[float, float]:
    """(interval, burst) of a GCRA whose every 60 s window holds at most ``per_minute``."""
    burst = max(1, per_minute // 10)
    return WINDOW / max(1, per_minute - burst), float(burst)


def estimate_tokens(messages: Iterable[Mapping[str, Any]], completion: int) -> int:
    """Tokens a chat call is expected to cost: its text's characters / 4, plus
    ``completion`` (the call's ``max_tokens``)."""
    chars = 0
    for message in messages:
        content = message.get("content")
        if isinstance(content, str):
            chars += len(content)
        elif isinstance(content, list):
            chars += sum(len(str(part.get("text", ""))) for part in content)
        for call in message.get("tool_calls") or ():
            chars += len(str(call.get("function", {}).get("arguments", "")))
    return math.ceil(chars / 4) + completion


def limited_seconds() -> dict[str, float]:
    """Seconds this process's calls waited for limits, by model (for metrics)."""
    return dict(_waited)


def reserved_ahead() -> dict[tuple[str, str], float]:
    """How many seconds ahead each model's rate was reserved when last taken, by
    ``(model, "requests" | "tokens")``: 0 is a bucket with room (for metrics)."""
    return dict(_ahead)


class _Limiter:
    """One call's view of a model's limits in a store."""

    def __init__(self, limits: LLMLimits, store: Limits) -> None:
        self.limits = limits
        self.model = limits.model
        self.store = store
        self.deadline = clock.time() + limits.max_wait

    async def acquire(self, tokens: int) -> int:
        """Wait for a pause to end and reserve a request and ``tokens``; return the tokens
        reserved (what :meth:`settle` corrects)."""
        while True:
            paused = await self.paused()
            if paused > 0:
                await self._wait(paused)
                continue
            now = clock.time()
            wait, taken = 0.0, 0
            rpm, tpm = self.limits.requests_per_minute, self.limits.tokens_per_minute
            if rpm is not None:
                wait = await self._reserve(REQUESTS, rpm, 1, now)
            if tpm is not None:
                taken = min(tokens, int(_rate(tpm)[1]))
                wait = max(wait, await self._reserve(TOKENS, tpm, taken, now))
            if now + wait > self.deadline:
                await self._give_back(1, taken)
                raise ModelUnavailable(
                    f"{self.model}: over its limits for {wait:.1f}s more", delay=wait
                )
            if wait > 0:
                await self._wait(wait)
            # The pause is read last, right before sending, so a pause stored meanwhile
            # stops this call. Paused: the turn is lost (not given back: sent after the
            # pause it would break the rate); take a new one after the pause.
            if await self.paused() <= 0:
                return taken

    async def settle(self, reserved: int, used: int) -> None:
        """Replace the reserved tokens by those used."""
        tpm = self.limits.tokens_per_minute
        if tpm is not None and used != reserved:
            interval, burst = _rate(tpm)
            await self.store.take_rate(
                TOKENS,
                self.model,
                interval=interval,
                burst=burst,
                cost=used - reserved,
                now=clock.time(),
                force=True,
            )

    async def paused(self) -> float:
        """Seconds until the model's pause ends (0: not paused)."""
        return await self.store.take_rate(
            PAUSE, self.model, interval=1.0, burst=0.0, cost=0.0, now=clock.time()
        )

    async def failed(self, retry_after: float | None) -> float:
        """Count a transient failure; pause the model for ``retry_after`` or, when the
        circuit opens, for the cooldown. Return the pause set (0 when none)."""
        now = clock.time()
        limits = self.limits
        over = await self.store.take_rate(
            FAILURES,
            self.model,
            interval=max(WINDOW, limits.cooldown),
            burst=limits.failures - 0.5,
            cost=1,
            now=now,
            force=True,
        )
        pause, why = 0.0, ""
        if retry_after is not None:
            pause, why = retry_after, "Retry-After"
        if over > 0 and limits.cooldown > pause:
            pause, why = limits.cooldown, f"circuit open after {limits.failures} failures"
        if pause > 0:
            await self.store.block_rate(PAUSE, self.model, until=now + pause, burst=0, interval=1)
            log.warning("model %s paused for %.1fs in every process (%s)", self.model, pause, why)
        return pause

    async def succeeded(self) -> None:
        """Close the circuit: forget the failures in a row."""
        limits = self.limits
        await self.store.take_rate(
            FAILURES,
            self.model,
            interval=max(WINDOW, limits.cooldown),
            burst=limits.failures - 0.5,
            cost=-float(limits.failures + 1),
            now=clock.time(),
            force=True,
        )

    async def _reserve(self, name: str, per_minute: int, cost: int, now: float) -> float:
        interval, burst = _rate(per_minute)
        wait = await self.store.take_rate(
            name, self.model, interval=interval, burst=burst, cost=cost, now=now, force=True
        )
        _ahead[(self.model, name.removeprefix("llm:"))] = wait
        return wait

    async def _give_back(self, requests: int, tokens: int) -> None:
        now = clock.time()
        for name, per_minute, cost in (
            (REQUESTS, self.limits.requests_per_minute, requests),
            (TOKENS, self.limits.tokens_per_minute, tokens),
        ):
            if per_minute is not None and cost:
                interval, burst = _rate(per_minute)
                await self.store.take_rate(
                    name,
                    self.model,
                    interval=interval,
                    burst=burst,
                    cost=-cost,
                    now=now,
                    force=True,
                )

    async def _wait(self, seconds: float) -> None:
        """Sleep ``seconds`` for the limits, or raise if that passes the deadline."""
        if clock.time() + seconds > self.deadline:
            raise ModelUnavailable(f"{self.model}: paused for {seconds:.1f}s more", delay=seconds)
        await clock.sleep(seconds)
        _waited[self.model] = _waited.get(self.model, 0.0) + seconds


async def limited(
    limits: LLMLimits, tokens: int, call: Callable[[], Awaitable[tuple[T, int]]], *, retries: int
) -> T:
    """Make ``call`` (which returns its result and the tokens it used) within ``limits``:
    reserve, send, settle; on a transient failure pause or back off and call again
    (``retries`` times, pauses aside), all within ``limits.max_wait``."""
    ctx = current()
    limiter = _Limiter(limits, ctx.store if ctx is not None else _LOCAL)
    failures = 0
    while True:
        reserved = await limiter.acquire(tokens)
        try:
            result, used = await call()
        except ModelRequestRejected:
            await limiter.settle(reserved, 0)  # refused: nothing was spent
            raise
        except ModelUnavailable as exc:
            await limiter.settle(reserved, 0)
            if await limiter.failed(exc.delay) > 0:
                continue  # every process waits out the pause, this call too
            failures += 1
            backoff = min(8.0, 0.5 * 2 ** (failures - 1)) * (0.5 + random.random())
            if failures > retries or clock.time() + backoff > limiter.deadline:
                raise
            await clock.sleep(backoff)
            continue
        await limiter.settle(reserved, used)
        await limiter.succeeded()
        return result
