"""The Redis store's timers and waits (:class:`nerve.stores.redis.RedisStore` mixes them in).

Keys: the ``*_KEY`` constants below, listed in :mod:`nerve.stores.redis` (the Lua scripts
name the same ones).

A timer is claimed by moving it to the lease's end in the same script that reads it, so
two processes never claim one timer. Timers due at once come in the order they were
written or moved (as in the other stores): the sorted set orders equal scores by member,
so a member is the timer's id behind a zero-padded count of writes.

A published event finds its waits in two round trips whatever their number: the shapes
in use for each of its types, then (keys computed here, with
:func:`nerve.matching.event_key`) the waits under each key. A shape's count drops with its
last wait, so shapes no wait has are not looked up. Steps and counters of a run with a
wait never expire (like those of a run with a dead letter); when its last wait goes, they
get a window again unless a dead letter keeps them.
"""

from __future__ import annotations

import json
from abc import abstractmethod
from collections.abc import Sequence
from contextlib import AbstractContextManager
from importlib import resources
from typing import Any, Final

from redis.asyncio import Redis

from nerve.events import Event
from nerve.matching import event_key
from nerve.records import Timer, WaitRecord
from nerve.stores.base import Timers, WaitStore

TIMERS_KEY: Final = "{prefix}:timers"
TIMER_BODIES_KEY: Final = "{prefix}:timers:bodies"
TIMER_ENTRIES_KEY: Final = "{prefix}:timers:entries"
TIMER_WRITES_KEY: Final = "{prefix}:timers:writes"
WAITS_KEY: Final = "{prefix}:waits"
WAITS_ORDER_KEY: Final = "{prefix}:waits:order"
WAITS_WHERE_KEY: Final = "{prefix}:waits:where"  # written and read by the scripts only
WAIT_SHAPES_KEY: Final = "{prefix}:waits:shapes:{event_type}"
WAIT_KEY_KEY: Final = "{prefix}:waits:key:{event_type}:{key}"
WAIT_RUN_KEY: Final = "{prefix}:waits:run:{event_id}"

#: Timers and waits are read this many at a time when listing with a filter.
_PAGE = 500


def _load_scripts() -> dict[str, str]:
    folder = resources.files("nerve.stores").joinpath("lua")

    def read(name: str) -> str:
        return folder.joinpath(f"{name}.lua").read_text(encoding="utf-8")

    unwait = read("unwait")
    return {
        "add_timer": read("add_timer"),
        "claim_timers": read("claim_timers"),
        "delete_timer": read("delete_timer"),
        "read_timer": read("read_timer"),
        "add_wait": unwait + read("add_wait"),
        "remove_wait": unwait + read("remove_wait"),
        "waits_at": read("waits_at"),
    }


_SCRIPTS: Final = _load_scripts()


def _compact(value: Any) -> str:
    """JSON without spaces, and UTF-8 as is (cjson in the scripts decodes it unchanged)."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


class RedisTimersAndWaits(Timers, WaitStore):
    """:class:`Timers` and :class:`WaitStore` on Redis, for :class:`RedisStore`."""

    prefix: str
    _window_ms: int

    @abstractmethod
    def _client(self) -> Redis:
        """The open client (StoreError when closed)."""

    @abstractmethod
    def _translate(self, doing: str) -> AbstractContextManager[None]:
        """Turn Redis errors into StoreError naming what was being done."""

    def _open_timers_and_waits(self, client: Redis) -> None:
        self._timers_key = TIMERS_KEY.format(prefix=self.prefix)
        self._timer_bodies = TIMER_BODIES_KEY.format(prefix=self.prefix)
        self._timer_keys = [
            self._timers_key,
            self._timer_bodies,
            TIMER_ENTRIES_KEY.format(prefix=self.prefix),
            TIMER_WRITES_KEY.format(prefix=self.prefix),
        ]
        self._waits_key = WAITS_KEY.format(prefix=self.prefix)
        self._waits_order = WAITS_ORDER_KEY.format(prefix=self.prefix)
        self._add_timer = client.register_script(_SCRIPTS["add_timer"])
        self._claim_timers = client.register_script(_SCRIPTS["claim_timers"])
        self._delete_timer = client.register_script(_SCRIPTS["delete_timer"])
        self._read_timer = client.register_script(_SCRIPTS["read_timer"])
        self._add_wait = client.register_script(_SCRIPTS["add_wait"])
        self._remove_wait = client.register_script(_SCRIPTS["remove_wait"])
        self._waits_at = client.register_script(_SCRIPTS["waits_at"])

    # timers

    async def add_timer(self, timer: Timer, *, replace: bool = False) -> bool:
        with self._translate("adding a timer"):
            written: Any = await self._add_timer(
                keys=self._timer_keys,
                args=[timer.timer_id, repr(timer.due), timer.body, "1" if replace else ""],
                client=self._client(),
            )
        return bool(written)

    async def claim_timers(self, now: float, lease: float, limit: int) -> list[Timer]:
        if limit <= 0:
            return []
        with self._translate("claiming timers"):
            flat: list[str] = await self._claim_timers(
                keys=self._timer_keys,
                args=[repr(now), repr(now + lease), limit],
                client=self._client(),
            )
        return [
            Timer(timer_id=flat[i], due=float(flat[i + 1]), body=flat[i + 2])
            for i in range(0, len(flat), 3)
        ]

    async def delete_timer(self, timer_id: str) -> bool:
        with self._translate("deleting a timer"):
            deleted: Any = await self._delete_timer(
                keys=self._timer_keys, args=[timer_id], client=self._client()
            )
        return bool(deleted)

    async def timers(self, prefix: str = "", limit: int = 100) -> list[Timer]:
        client = self._client()
        found: list[Timer] = []
        size = _PAGE if prefix else min(_PAGE, limit)  # without one, every timer is listed
        start = 0
        with self._translate("listing timers"):
            while len(found) < limit:
                page: Any = await client.zrange(
                    self._timers_key, start, start + size - 1, withscores=True
                )
                if not page:
                    break
                start += size
                ids = ((entry.partition(":")[2], due) for entry, due in page)
                chosen = [(i, due) for i, due in ids if i.startswith(prefix)]
                chosen = chosen[: limit - len(found)]
                if chosen:
                    bodies = await client.hmget(self._timer_bodies, [i for i, _ in chosen])
                    found.extend(
                        Timer(timer_id=i, due=due, body=body)
                        for (i, due), body in zip(chosen, bodies, strict=True)
                        if body is not None  # deleted meanwhile
                    )
        return found

    async def timer(self, timer_id: str) -> Timer | None:
        with self._translate("reading a timer"):
            found: Any = await self._read_timer(
                keys=self._timer_keys, args=[timer_id], client=self._client()
            )
        if not found or None in found:
            return None
        return Timer(timer_id=timer_id, due=float(found[0]), body=found[1])

    # waits

    async def add_wait(self, wait: WaitRecord) -> None:
        where = _compact([wait.event.event_id, wait.event_type, _compact(wait.shape), wait.key])
        with self._translate("adding a wait"):
            await self._add_wait(
                keys=[],
                args=[
                    self.prefix,
                    self._window_ms,
                    wait.wait_id,
                    wait.model_dump_json(),
                    repr(wait.created_at),
                    where,
                ],
                client=self._client(),
            )

    async def remove_wait(self, wait_id: str) -> bool:
        with self._translate("removing a wait"):
            removed: Any = await self._remove_wait(
                keys=[], args=[self.prefix, self._window_ms, wait_id], client=self._client()
            )
        return bool(removed)

    async def waits_for(self, events: Sequence[Event[Any]]) -> list[tuple[WaitRecord, Event[Any]]]:
        types = list(dict.fromkeys(e.event_type for e in events))
        if not types:
            return []
        client = self._client()
        with self._translate("finding waits"):
            async with client.pipeline(transaction=False) as pipe:
                for event_type in types:
                    pipe.hkeys(WAIT_SHAPES_KEY.format(prefix=self.prefix, event_type=event_type))
                shapes_of = dict(zip(types, await pipe.execute(), strict=True))
            lookups: list[tuple[int, str]] = []  # (event's index, key set)
            for index, event in enumerate(events):
                for shape in shapes_of[event.event_type]:
                    key = event_key(event, json.loads(shape))
                    if key is not None:
                        lookups.append((index, self._wait_key(event.event_type, key)))
            if not lookups:
                return []
            key_sets = list(dict.fromkeys(k for _, k in lookups))
            bodies: list[list[str]] = await self._waits_at(
                keys=[self._waits_key, *key_sets], args=[], client=client
            )
        under = dict(zip(key_sets, bodies, strict=True))
        parsed: dict[str, WaitRecord] = {}
        found: list[tuple[WaitRecord, Event[Any]]] = []
        for index, key_set in lookups:
            for body in under[key_set]:
                wait = parsed.get(body)
                if wait is None:
                    wait = parsed[body] = WaitRecord.model_validate_json(body)
                found.append((wait, events[index]))
        return found

    def _wait_key(self, event_type: str, key: str) -> str:
        return WAIT_KEY_KEY.format(prefix=self.prefix, event_type=event_type, key=key)

    async def waits(
        self,
        *,
        subscription: str | None = None,
        event_id: str | None = None,
        event_type: str | None = None,
        limit: int | None = None,
    ) -> list[WaitRecord]:
        client = self._client()
        found: list[WaitRecord] = []
        with self._translate("listing waits"):
            if event_id is not None:  # a run has a few waits: read them all, then order
                key = WAIT_RUN_KEY.format(prefix=self.prefix, event_id=event_id)
                ids: Any = await client.smembers(key)
                found = await self._read_waits(sorted(ids), subscription, event_type)
                found.sort(key=lambda w: (w.created_at, w.wait_id))
            else:
                start = 0
                while limit is None or len(found) < limit:
                    page: Any = await client.zrange(self._waits_order, start, start + _PAGE - 1)
                    if not page:
                        break
                    start += _PAGE
                    found += await self._read_waits(page, subscription, event_type)
        return found if limit is None else found[:limit]

    async def _read_waits(
        self, wait_ids: Sequence[str], subscription: str | None, event_type: str | None
    ) -> list[WaitRecord]:
        """The waits of these ids still there, keeping those of the subscription and type."""
        if not wait_ids:
            return []
        bodies: Any = await self._client().hmget(self._waits_key, list(wait_ids))
        waits = [WaitRecord.model_validate_json(body) for body in bodies if body is not None]
        return [
            w
            for w in waits
            if subscription in (None, w.subscription) and event_type in (None, w.event_type)
        ]
