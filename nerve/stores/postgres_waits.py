"""The PostgreSQL store's timers and waits (their SQL is in :mod:`nerve.stores.postgres_sql`).

``timers`` holds a row per timer, indexed by when it is due and then by ``seq``, the order
of writing (timers due at once come in the order they were written or claimed); a claim
is one statement that locks the due rows no other claim holds (``FOR UPDATE SKIP
LOCKED``) and moves them past their lease, so concurrent claims never share a timer.
``waits`` holds a row per wait (its record as JSON), indexed by awaited type and match key,
and by the suspended pair; ``wait_shapes`` the shapes of match in use per awaited type, so
a batch of published events costs one read of their types' shapes and one indexed lookup
of their keys.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from nerve.events import Event
from nerve.matching import event_key
from nerve.records import Timer, WaitRecord
from nerve.stores.base import Timers, WaitStore

if TYPE_CHECKING:
    import asyncpg

    from nerve.stores.postgres_sql import Statements

__all__ = ["PostgresTimersAndWaits"]


class PostgresTimersAndWaits(Timers, WaitStore):
    """:class:`Timers` and :class:`WaitStore` on the store's pool (one round trip each,
    :meth:`waits_for` two)."""

    if TYPE_CHECKING:  # the store's
        _sql: Statements

        async def _fetch(self, sql: str, *args: Any) -> list[asyncpg.Record]: ...

        async def _fetchval(self, sql: str, *args: Any) -> Any: ...

        async def _execute(self, sql: str, *args: Any) -> None: ...

    async def add_timer(self, timer: Timer, *, replace: bool = False) -> bool:
        sql = self._sql.replace_timer if replace else self._sql.add_timer
        return await self._fetchval(sql, timer.timer_id, timer.due, timer.body) is not None

    async def claim_timers(self, now: float, lease: float, limit: int) -> list[Timer]:
        rows = await self._fetch(self._sql.claim_timers, now, lease, limit)
        # RETURNING has no ORDER BY: the new seqs keep the order they were claimed in.
        rows.sort(key=lambda row: (row[1], row[3]))
        return [Timer(timer_id=row[0], due=row[1], body=row[2]) for row in rows]

    async def delete_timer(self, timer_id: str) -> bool:
        return await self._fetchval(self._sql.delete_timer, timer_id) is not None

    async def timers(self, prefix: str = "", limit: int = 100) -> list[Timer]:
        rows = await self._fetch(self._sql.timers, prefix, limit)
        return [Timer(timer_id=row[0], due=row[1], body=row[2]) for row in rows]

    async def timer(self, timer_id: str) -> Timer | None:
        rows = await self._fetch(self._sql.timer, timer_id)
        return Timer(timer_id=rows[0][0], due=rows[0][1], body=rows[0][2]) if rows else None

    async def add_wait(self, wait: WaitRecord) -> None:
        await self._execute(
            self._sql.add_wait,
            wait.wait_id,
            wait.event_type,
            wait.key,
            wait.subscription,
            wait.event.event_id,
            wait.model_dump_json(),
            json.dumps(wait.shape),
        )

    async def waits_for(self, events: Sequence[Event[Any]]) -> list[tuple[WaitRecord, Event[Any]]]:
        if not events:
            return []
        shapes: dict[str, list[list[str]]] = {}
        types = sorted({e.event_type for e in events})
        for event_type, shape in await self._fetch(self._sql.wait_shapes, types):
            shapes.setdefault(event_type, []).append(json.loads(shape))
        # each event's keys, one per shape of its type that it has every path of
        keys: list[list[str]] = []
        for event in events:
            found = (event_key(event, shape) for shape in shapes.get(event.event_type, ()))
            keys.append([k for k in found if k is not None])
        wanted = sorted({(e.event_type, k) for e, ks in zip(events, keys, strict=True) for k in ks})
        if not wanted:
            return []
        waits: dict[tuple[str, str], list[WaitRecord]] = {}
        rows = await self._fetch(
            self._sql.keyed_waits, [w[0] for w in wanted], [w[1] for w in wanted]
        )
        for body, event_type, key in rows:
            waits.setdefault((event_type, key), []).append(WaitRecord.model_validate_json(body))
        return [
            (wait, event)
            for event, event_keys in zip(events, keys, strict=True)
            for key in event_keys
            for wait in waits.get((event.event_type, key), ())
        ]

    async def remove_wait(self, wait_id: str) -> bool:
        return bool(await self._fetchval(self._sql.remove_wait, wait_id))

    async def waits(
        self,
        *,
        subscription: str | None = None,
        event_id: str | None = None,
        event_type: str | None = None,
        limit: int | None = None,
    ) -> list[WaitRecord]:
        clauses: list[str] = []
        params: list[Any] = []
        for column, value in (
            ("subscription", subscription),
            ("event_id", event_id),
            ("event_type", event_type),
        ):
            if value is not None:
                params.append(value)
                clauses.append(f"{column} = ${len(params)}")
        where = "WHERE " + " AND ".join(clauses) if clauses else ""
        rows = await self._fetch(self._sql.waits(where, len(params) + 1), *params, limit)
        return [WaitRecord.model_validate_json(row[0]) for row in rows]
