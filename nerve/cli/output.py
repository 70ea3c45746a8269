"""Where the ``nerve`` commands write: the consoles, errors, JSON lines, times of day.

The consoles read no Rich markup: a text is printed as it is (an error may hold
``pip install 'nerve[redis]'``, a validation error a regex's ``[a-z0-9_-]``, an event type
or a subscription name anything printable), and styles are given as :class:`rich.text.Text`.
Nothing is cropped or wrapped when the output is not a terminal (a pipe, a file): ids are
copied from there into other commands.
"""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime
from typing import Any, TextIO

from rich.console import Console, RenderableType
from rich.table import Column
from rich.text import Text

#: The width of a console that is not a terminal: no line is cropped or wrapped.
UNBOUNDED = 1_000_000


def _console(file: TextIO) -> Console:
    terminal = file.isatty()
    return Console(
        file=file,
        markup=False,
        soft_wrap=True,  # a printed line is one line, however long
        width=None if terminal else UNBOUNDED,  # tables and trees: the terminal's, or all
    )


def stdout() -> Console:
    """Results, on the current ``sys.stdout``."""
    return _console(sys.stdout)


def stderr() -> Console:
    """Messages, progress and errors, on the current ``sys.stderr``."""
    return _console(sys.stderr)


def show(block: RenderableType) -> None:
    """A table or a tree on stdout, its words wrapped to a terminal's width (an id is one
    word: never cut), at full width when stdout is not a terminal."""
    stdout().print(block, soft_wrap=False)


def error(message: str) -> None:
    """``error: message``, one line on stderr: the message as it is, control characters
    and line breaks escaped."""
    stderr().print(Text.assemble(("error:", "red"), " ", printable(message)))


def printable(text: str) -> str:
    """``text`` with each control character (and line or paragraph separator) escaped:
    one line, that moves no terminal's cursor."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def id_column(header: str, ids: list[str]) -> Column:
    """A table column of ids: never cropped nor folded (they are copied into commands)."""
    return Column(header, no_wrap=True, min_width=max(map(len, ids), default=0))


def print_json(value: Any) -> None:
    sys.stdout.write(json.dumps(value, default=str) + "\n")


def time_of_day(at: datetime) -> str:
    """``HH:MM:SS.mmm`` in UTC."""
    return at.astimezone(UTC).strftime("%H:%M:%S.%f")[:-3]
