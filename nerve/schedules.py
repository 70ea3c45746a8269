"""Schedules: an event published at every due time of a cron expression or a period.

``bus.schedule("nightly-report", "0 2 * * *", Event(event_type="report.due"),
tz="Europe/Paris")`` (or ``@bus.every(...)`` on a handler) keeps one timer in the store,
``schedule:<name>``, due at the next firing. Whichever running bus claims it (one at a
time: :mod:`nerve.timers`) publishes the event and moves the timer to the next due time.

- **Once per due time, across any number of processes.** The timer is claimed by one
  process at a time, and the event of the firing at ``T`` has an id made of the name
  and ``T``: a process dying between publishing and moving the timer makes the next
  claimer publish the same event again, which every subscription recognises as done.
- **Catch-up after downtime** (``catch_up``), never silent: with ``"latest"`` (the
  default) the due times missed while no bus ran fire once, as one event for the latest
  of them, its metadata saying how many were missed (``nerve-schedule-missed``); with
  ``"all"`` each fires (at most :data:`MAX_CATCH_UP`); with ``"skip"`` none does. Every
  case logs a warning with the count.
- **Time zones**: cron expressions are read in ``tz`` (an IANA name), so ``0 9 * * *``
  is 09:00 there, summer and winter. A period (``timedelta``) fires at multiples of
  itself since the Unix epoch, the same instants in every process.
- **Changing a schedule**: a bus starting with a schedule whose definition differs from
  the stored one replaces it (its next due time computed afresh); the same definition
  keeps the stored due time, so a restart does not skip or repeat a firing.
"""

from __future__ import annotations

import json
import logging
import math
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any, Literal
from zoneinfo import ZoneInfo

from cronsim import CronSim, CronSimError
from pydantic import BaseModel, ConfigDict, Field

from nerve.events import Event
from nerve.records import Timer

log = logging.getLogger("nerve")

__all__ = ["CatchUp", "Schedule"]

CatchUp = Literal["latest", "all", "skip"]
#: With ``catch_up="all"``, at most this many missed firings are published.
MAX_CATCH_UP = 1000
#: Metadata key of a catch-up firing: how many due times it stands for.
MISSED_KEY = "nerve-schedule-missed"
#: Metadata keys naming the schedule and the due time of a firing.
SCHEDULE_KEY = "nerve-schedule"
DUE_KEY = "nerve-schedule-due"


class Schedule(BaseModel):
    """A named schedule: when it fires and the event it publishes then."""

    model_config = ConfigDict(frozen=True)

    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.\-]+$")
    cron: str | None = None
    every: float | None = Field(default=None, gt=0, description="a period, in seconds")
    tz: str = "UTC"
    event_type: str
    payload: Any = None
    source: str = ""
    metadata: dict[str, str] = Field(default_factory=dict)
    catch_up: CatchUp = "latest"

    @classmethod
    def make(
        cls,
        name: str,
        when: str | timedelta,
        event: Event[Any],
        *,
        tz: str = "UTC",
        catch_up: CatchUp = "latest",
    ) -> Schedule:
        """A schedule firing ``event`` (a template: each firing has its own id) at every
        due time of ``when``: a cron expression or a period.

        Raises:
            ValueError: a bad cron expression, period or time zone.
        """
        try:
            ZoneInfo(tz)
        except Exception as exc:
            raise ValueError(f"unknown time zone {tz!r}") from exc
        cron = when if isinstance(when, str) else None
        if cron is not None:
            try:
                CronSim(cron, datetime.now(UTC))
            except CronSimError as exc:
                raise ValueError(f"bad cron expression {cron!r}: {exc}") from exc
        every = when.total_seconds() if isinstance(when, timedelta) else None
        return cls(
            name=name,
            cron=cron,
            every=every,
            tz=tz,
            event_type=event.event_type,
            payload=event.payload,
            source=event.source,
            metadata=dict(event.metadata),
            catch_up=catch_up,
        )

    @property
    def timer_id(self) -> str:
        return f"schedule:{self.name}"

    def next_after(self, t: float) -> float:
        """The first due time strictly after ``t`` (unix time)."""
        if self.every is not None:
            return (math.floor(t / self.every) + 1) * self.every
        if self.cron is None:  # pragma: no cover  # make() gives one or the other
            raise ValueError(f"schedule {self.name} has neither a cron expression nor a period")
        start = datetime.fromtimestamp(t, ZoneInfo(self.tz))
        for due in CronSim(self.cron, start):
            if due.timestamp() > t:
                return due.timestamp()
        raise ValueError(f"{self.cron!r} never fires")  # pragma: no cover  # cronsim ends

    def timer(self, due: float) -> Timer:
        """The store's timer for the firing at ``due``."""
        return Timer(timer_id=self.timer_id, due=due, body=self.model_dump_json())

    def same_as(self, timer: Timer) -> bool:
        """Whether ``timer`` was made by this very definition."""
        try:
            return Schedule.model_validate_json(timer.body) == self
        except ValueError:
            return False

    def firings(self, due: float, now: float) -> tuple[list[Event[Any]], float]:
        """The events to publish for a timer due at ``due`` claimed at ``now``, and the
        next due time. Each event's id is made of the name and its due time."""
        times = [due]
        while len(times) <= MAX_CATCH_UP:
            after = self.next_after(times[-1])
            if after > now:
                break
            times.append(after)
        following = self.next_after(max(times[-1], now))
        missed = len(times) - 1
        if missed:
            log.warning(
                "schedule %s missed %d due time(s) since %s; catch_up=%s",
                self.name,
                missed,
                datetime.fromtimestamp(due, UTC).isoformat(),
                self.catch_up,
            )
        if self.catch_up == "all":
            fire = times
        elif self.catch_up == "latest":
            fire = times[-1:]
        else:
            fire = [] if missed else times
        extra = {MISSED_KEY: str(missed)} if missed and self.catch_up == "latest" else {}
        return [self.event_at(t, extra) for t in fire], following

    def event_at(self, due: float, extra: dict[str, str] | None = None) -> Event[Any]:
        """The event of the firing at ``due``."""
        at = datetime.fromtimestamp(due, UTC)
        return Event(
            event_type=self.event_type,
            payload=self.payload,
            source=self.source,
            event_id=str(uuid.uuid5(uuid.NAMESPACE_URL, f"nerve-schedule:{self.name}@{due!r}")),
            timestamp=at.isoformat(),
            metadata={
                **self.metadata,
                SCHEDULE_KEY: self.name,
                DUE_KEY: at.isoformat(),
                **(extra or {}),
            },
        )


def describe(timer: Timer) -> dict[str, Any]:
    """A stored schedule as plain data (for ``nerve schedules`` and the dashboard)."""
    data: dict[str, Any] = json.loads(timer.body)
    data["next_due"] = datetime.fromtimestamp(timer.due, UTC).isoformat()
    return data
