"""A user's mistake in one line: pydantic's validation errors, said as the CLI names things.

A :class:`pydantic.ValidationError` prints as many lines (a header, then each error, its
input and a documentation link on lines of their own). The commands say each error as
``where 'input': message``, joined by ``; ``, ``where`` being the option or variable the
user set (``EVENT_TYPE``, ``--correlation-id``, ``NERVE_SHUTDOWN_GRACE``), and every
control character escaped: the pattern of printable text holds them, and an input may.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from pydantic import ValidationError
from pydantic_settings import BaseSettings

from nerve import constants
from nerve.cli.output import printable
from nerve.events import real_errors

#: Longest input quoted in a message.
_INPUT_CHARS = 80


def describe(exc: ValidationError, names: Mapping[str, str] | None = None) -> str:
    """``exc`` in one line, each field called by its name in ``names`` if it has one.

    By default the fields of settings (:class:`~nerve.Settings`, the log's, the LLM's) are
    called by their environment variables, ``NERVE_SHUTDOWN_GRACE``, ``NERVE_LOG_LEVEL``.
    """
    if names is None:
        names = variables_of(exc.title)
    return "; ".join(_one(error, names) for error in real_errors(exc.errors(include_url=False)))


def variables_of(title: str) -> dict[str, str]:
    """The environment variable of each field of the settings class named ``title``."""
    for cls in _settings_classes(BaseSettings):
        if cls.__name__ == title:
            prefix = str(cls.model_config.get("env_prefix", ""))
            return {name: f"{prefix}{name}".upper() for name in cls.model_fields}
    return {}


def _settings_classes(base: type[BaseSettings]) -> Iterator[type[BaseSettings]]:
    for cls in base.__subclasses__():
        yield cls
        yield from _settings_classes(cls)


def _one(error: Any, names: Mapping[str, str]) -> str:
    loc = [str(part) for part in error["loc"]]
    if loc and loc[0] in names:
        loc[0] = names[loc[0]]
    where = ".".join(loc)
    ctx = error.get("ctx") or {}
    if error["type"] == "string_pattern_mismatch" and ctx.get("pattern") == (
        constants.PRINTABLE_RE
    ):
        message = "should be printable: no control characters or line breaks"
    else:
        message = error["msg"]
    if error["type"] != "missing" and "input" in error:
        quoted = repr(error["input"])
        if len(quoted) > _INPUT_CHARS:
            quoted = quoted[: _INPUT_CHARS - 1] + "…"
        where = f"{where} {quoted}" if where else quoted
    return printable(f"{where}: {message}" if where else message)
