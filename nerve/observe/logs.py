"""Structured logs: one line per event outcome, and a JSON formatter for them.

:class:`EventLog` is an observer that logs to the ``nerve.events`` logger each time a
subscription is done with an attempt: ``handled`` (INFO), ``retrying`` (INFO),
``dead_lettered`` (WARNING), ``waiting`` (INFO: suspended in ``wait_for``) or
``cancelled`` (INFO). The fields ride on the record as ``extra`` attributes, so any
JSON formatter picks them up; :class:`JSONFormatter` is one that is ready to use.

Fields: ``outcome``, ``event_id``, ``event_type``, ``correlation_id``, ``causation_id``,
``subscription``, ``attempt``, ``duration_ms``, and on failures ``error_type``, ``error``
and ``retry_in`` (seconds, for ``retrying``); ``trace_id`` / ``span_id`` when the attempt
is traced (see :mod:`nerve.observe.tracing`).

``NERVE_LOG_FORMAT=json`` (or ``text``) and ``NERVE_LOG_LEVEL`` choose what
:func:`configure_logging` installs, for a process that leaves logging to nerve (the CLI's
``serve`` and ``worker``).

Example:
    ```python
    import logging
    from nerve.observe.logs import JSONFormatter

    handler = logging.StreamHandler()
    handler.setFormatter(JSONFormatter())
    logging.basicConfig(level=logging.INFO, handlers=[handler])
    # {"time": "...", "level": "INFO", "logger": "nerve.events", "message": "handled ...",
    #  "outcome": "handled", "event_id": "...", "subscription": "triage", ...}
    ```
"""

from __future__ import annotations

import logging
import sys
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal

import orjson
from opentelemetry import trace
from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from nerve.events import Event
from nerve.observe.observer import Observer

if TYPE_CHECKING:
    from nerve.context import HandlerContext

#: The logger of event outcomes.
EVENTS_LOGGER = "nerve.events"

# What every LogRecord has: anything else on a record came as ``extra``.
_STANDARD = frozenset(
    vars(logging.LogRecord("", logging.INFO, "", 0, "", None, None)).keys()
    | {"message", "asctime", "taskName"}
)


class LogSettings(BaseSettings):
    """What :func:`configure_logging` installs (``NERVE_LOG_*`` variables)."""

    model_config = SettingsConfigDict(env_prefix="NERVE_LOG_", extra="ignore")

    format: Literal["text", "json"] = Field(
        default="text", description="text: one readable line per record; json: one object."
    )
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = Field(
        default="INFO", description="Level of the root logger."
    )

    @field_validator("level", mode="before")
    @classmethod
    def _upper(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value


class EventLog(Observer):
    """Logs one line per event outcome to ``logger`` (default ``nerve.events``).

    Costs a level check per outcome while the logger is disabled for INFO.
    """

    def __init__(self, logger: logging.Logger | None = None) -> None:
        self.logger = logger or logging.getLogger(EVENTS_LOGGER)

    def handled(
        self, subscription: str, event: Event[Any], seconds: float, context: HandlerContext
    ) -> None:
        if not self.logger.isEnabledFor(logging.INFO):
            return
        fields = _fields("handled", subscription, event, seconds, context)
        self.logger.info(
            "handled %s %s in %s (attempt %d, %.1f ms)",
            event.event_type,
            event.event_id,
            subscription,
            context.attempt,
            fields["duration_ms"],
            extra=fields,
        )

    def waiting(
        self, subscription: str, event: Event[Any], seconds: float, context: HandlerContext
    ) -> None:
        self._settled(
            "waiting", "%s %s in %s waits (attempt %d)", subscription, event, seconds, context
        )

    def cancelled(
        self, subscription: str, event: Event[Any], seconds: float, context: HandlerContext
    ) -> None:
        self._settled(
            "cancelled",
            "%s %s in %s was cancelled (attempt %d)",
            subscription,
            event,
            seconds,
            context,
        )

    def _settled(
        self,
        outcome: str,
        message: str,
        subscription: str,
        event: Event[Any],
        seconds: float,
        context: HandlerContext,
    ) -> None:
        if not self.logger.isEnabledFor(logging.INFO):
            return
        fields = _fields(outcome, subscription, event, seconds, context)
        where = (event.event_type, event.event_id, subscription, context.attempt)
        self.logger.info(message, *where, extra=fields)

    def failed(
        self,
        subscription: str,
        event: Event[Any],
        error: BaseException,
        seconds: float,
        context: HandlerContext,
        *,
        retry_in: float | None,
    ) -> None:
        level = logging.WARNING if retry_in is None else logging.INFO
        if not self.logger.isEnabledFor(level):
            return
        outcome = "dead_lettered" if retry_in is None else "retrying"
        fields = _fields(outcome, subscription, event, seconds, context)
        fields["error_type"] = type(error).__name__
        fields["error"] = str(error)
        where = (event.event_type, event.event_id, subscription, context.attempt)
        if retry_in is None:
            message = "dead-lettered %s %s in %s after attempt %d: %s: %s"
            args: tuple[Any, ...] = (*where, fields["error_type"], fields["error"])
        else:
            fields["retry_in"] = retry_in
            message = "%s %s in %s: attempt %d failed: %s: %s; retrying in %.2fs"
            args = (*where, fields["error_type"], fields["error"], retry_in)
        self.logger.log(level, message, *args, extra=fields)


def _fields(
    outcome: str, subscription: str, event: Event[Any], seconds: float, context: HandlerContext
) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "outcome": outcome,
        "event_id": event.event_id,
        "event_type": event.event_type,
        "correlation_id": event.correlation_id,
        "causation_id": event.causation_id,
        "subscription": subscription,
        "attempt": context.attempt,
        "duration_ms": round(seconds * 1000, 3),
    }
    span = trace.get_current_span().get_span_context()
    if span.is_valid:
        fields["trace_id"] = format(span.trace_id, "032x")
        fields["span_id"] = format(span.span_id, "016x")
    return fields


class JSONFormatter(logging.Formatter):
    """One JSON object per record: ``time`` (UTC, ISO 8601), ``level``, ``logger``,
    ``message``, every ``extra`` field, and ``exception`` (the traceback) when there is one.

    Values JSON cannot hold are written as their ``str()``.
    """

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and key not in entry:
                entry[key] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            entry["exception"] = record.exc_text
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return orjson.dumps(entry, default=str).decode()


#: Characters that would end or bend a text log line, escaped in messages.
_BREAKING = {c: f"\\x{c:02x}" for c in (*range(0x20), 0x7F, 0x85)} | {
    0x0A: "\\n",
    0x0D: "\\r",
    0x09: "\\t",
    0x2028: "\\u2028",
    0x2029: "\\u2029",
}


class TextFormatter(logging.Formatter):
    """``time level logger: message``, one line per record whatever the message holds.

    Control characters and line breaks in the message (an id, a type, an error message a
    sender chose) are escaped (``\\n``, ``\\x1b``), so nobody can write a fake line into
    the log. A traceback, which is nerve's own text, follows on its own lines as usual.
    """

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def formatMessage(self, record: logging.LogRecord) -> str:  # logging names it so
        record.message = record.message.translate(_BREAKING)
        return super().formatMessage(record)


def configure_logging(settings: LogSettings | None = None) -> LogSettings:
    """Send every log record to stderr, as text or JSON per ``settings`` (the environment
    by default), replacing the root logger's handlers. Returns the settings used.

    For the CLI's processes; an application that configures logging itself need not call
    it (add :class:`JSONFormatter` to its own handler instead).
    """
    settings = settings or LogSettings()
    handler = logging.StreamHandler(sys.stderr)
    if settings.format == "json":
        handler.setFormatter(JSONFormatter())
    else:
        handler.setFormatter(TextFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(settings.level)
    return settings
