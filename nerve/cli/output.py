"""Where the ``nerve`` commands write: the consoles, JSON lines, times of day."""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime
from typing import Any

from rich.console import Console

#: Messages, progress and errors (stderr).
console = Console(stderr=True)
#: Results (stdout).
out = Console(soft_wrap=True)


def print_json(value: Any) -> None:
    sys.stdout.write(json.dumps(value, default=str) + "\n")


def time_of_day(at: datetime) -> str:
    """``HH:MM:SS.mmm`` in UTC."""
    return at.astimezone(UTC).strftime("%H:%M:%S.%f")[:-3]
