"""The Redis store's flow control (:class:`nerve.stores.redis.RedisStore` mixes it in).

Keys: the ``*_KEY`` constants below, listed in :mod:`nerve.stores.redis`. A limiter and
its key are joined by a NUL, which neither contains, so no two pairs share a Redis key.

Every call is one round trip and every change one Lua script (``take_slot``,
``take_rate``, ``block_rate``), so processes sharing the database never both see room
for one slot or one unit. The scripts use the time passed in, not Redis's clock. Slot
sets and rate states expire a minute after their last lease ends or their TAT is past:
by then they equal no state at all.
"""

from __future__ import annotations

from abc import abstractmethod
from contextlib import AbstractContextManager
from importlib import resources
from typing import Any, Final

from redis.asyncio import Redis

from nerve import clock
from nerve.stores.base import RATE_EPSILON, Limits

SLOTS_KEY: Final = "{prefix}:slots:{limiter}\x00{key}"
RATE_KEY: Final = "{prefix}:rate:{limiter}\x00{key}"


def _load_scripts() -> dict[str, str]:
    folder = resources.files("nerve.stores").joinpath("lua")
    return {
        name: folder.joinpath(f"{name}.lua").read_text(encoding="utf-8")
        for name in ("take_slot", "take_rate", "block_rate")
    }


_SCRIPTS: Final = _load_scripts()


class RedisLimits(Limits):
    """:class:`Limits` on Redis, for :class:`RedisStore`: a sorted set of holders by
    lease end per slotted key, a string holding the TAT per rated key."""

    prefix: str

    @abstractmethod
    def _client(self) -> Redis:
        """The open client (StoreError when closed)."""

    @abstractmethod
    def _translate(self, doing: str) -> AbstractContextManager[None]:
        """Turn Redis errors into StoreError naming what was being done."""

    def _open_limits(self, client: Redis) -> None:
        self._take_slot = client.register_script(_SCRIPTS["take_slot"])
        self._take_rate = client.register_script(_SCRIPTS["take_rate"])
        self._block_rate = client.register_script(_SCRIPTS["block_rate"])

    def _slots(self, limiter: str, key: str) -> str:
        return SLOTS_KEY.format(prefix=self.prefix, limiter=limiter, key=key)

    def _rate(self, limiter: str, key: str) -> str:
        return RATE_KEY.format(prefix=self.prefix, limiter=limiter, key=key)

    async def take_slot(
        self, limiter: str, key: str, holder: str, *, limit: int, lease: float, now: float
    ) -> bool:
        with self._translate("taking a slot"):
            held: Any = await self._take_slot(
                keys=[self._slots(limiter, key)],
                args=[holder, limit, repr(now), repr(now + lease)],
                client=self._client(),
            )
        return bool(held)

    async def free_slot(self, limiter: str, key: str, holder: str) -> None:
        with self._translate("freeing a slot"):
            await self._client().zrem(self._slots(limiter, key), holder)

    async def slots_taken(self, limiter: str, key: str, now: float) -> int:
        with self._translate("counting slots"):
            taken: Any = await self._client().zcount(self._slots(limiter, key), f"({now!r}", "+inf")
        return int(taken)

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
        with self._translate("taking from a rate"):
            wait: Any = await self._take_rate(
                keys=[self._rate(limiter, key)],
                args=[
                    repr(now),
                    repr(float(interval)),
                    repr(float(cost)),
                    repr(float(burst)),
                    "1" if force else "",
                    repr(RATE_EPSILON),
                ],
                client=self._client(),
            )
        return float(wait)

    async def block_rate(
        self, limiter: str, key: str, *, until: float, burst: float, interval: float
    ) -> None:
        blocked = until + burst * interval
        with self._translate("pausing a rate"):
            await self._block_rate(
                keys=[self._rate(limiter, key)],
                args=[repr(blocked), repr(clock.time())],
                client=self._client(),
            )
