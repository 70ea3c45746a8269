"""The names the Redis transport writes: its keys and the fields of its stream entries.

Every key lives under the transport's ``prefix`` (default ``nerve``). The Lua scripts in
``lua/`` spell the field names out (``'t'``, ``'e'``, ``'a'``): change them together.
"""

from __future__ import annotations

from typing import Final

#: One stream holding every published event.
EVENTS_KEY: Final = "{prefix}:events"
#: A stream per subscription: retries and DLQ replays.
DIRECT_KEY: Final = "{prefix}:sub:{name}:direct"
#: A sorted set per subscription: retries waiting for their delay.
DELAYED_KEY: Final = "{prefix}:sub:{name}:delayed"

FIELD_TYPE: Final = "t"  # event type, so non-matching entries are skipped without parsing
FIELD_EVENT: Final = "e"  # the event as JSON
FIELD_ATTEMPT: Final = "a"  # attempt number, on direct entries
