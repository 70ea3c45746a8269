"""One SQLite connection on a thread of its own, for the SQLite store and transport.

SQLite connections are not meant to be shared across threads, and every call blocks, so
each user gets a single-thread executor that owns its connection. WAL mode lets readers
run beside the one writer, ``synchronous=NORMAL`` makes a committed transaction survive a
crash of the process (a power loss may take the last few), and ``busy_timeout`` makes
writers from several processes queue instead of failing.
"""

from __future__ import annotations

import asyncio
import random
import sqlite3
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from nerve.exceptions import ConfigurationError

T = TypeVar("T")

#: SQLite's ``synchronous`` levels, safest first. In WAL mode ``FULL`` syncs every commit
#: (survives a power loss), ``NORMAL`` syncs at checkpoints (survives a crash of the
#: process, not always of the machine), ``OFF`` leaves it to the OS.
#: How long a statement waits for another process's write lock before "database is locked".
BUSY_TIMEOUT_MS = 10_000
SYNCHRONOUS = ("EXTRA", "FULL", "NORMAL", "OFF")


def sqlite_path(url: str) -> str:
    """The file of a SQLAlchemy-style URL: ``sqlite:///rel.db``, ``sqlite:////abs.db``."""
    prefix = "sqlite:///"
    if not url.startswith(prefix) or len(url) == len(prefix):
        raise ConfigurationError(
            f"{url!r}: expected sqlite:///relative/path.db or sqlite:////absolute/path.db"
        )
    return url[len(prefix) :].split("?", 1)[0]


class SQLiteDatabase:
    """A connection to ``path`` living on its own thread.

    Args:
        path: the database file.
        schema: SQL run once at open (``CREATE TABLE IF NOT EXISTS ...``).
        error: the nerve exception type that SQLite errors are translated into.
        synchronous: SQLite's ``synchronous`` pragma (see :data:`SYNCHRONOUS`).
    """

    def __init__(
        self, path: str, schema: str, error: type[Exception], *, synchronous: str = "NORMAL"
    ) -> None:
        if synchronous.upper() not in SYNCHRONOUS:
            raise ConfigurationError(
                f"synchronous={synchronous!r}: expected one of {', '.join(SYNCHRONOUS)}"
            )
        self.path = path
        self.synchronous = synchronous.upper()
        self._schema = schema
        self._error = error
        self._conn: sqlite3.Connection | None = None
        self._executor: ThreadPoolExecutor | None = None

    @property
    def is_open(self) -> bool:
        return self._conn is not None

    async def open(self) -> None:
        if self._conn is not None:
            return
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="nerve-sqlite")
        self._conn = await self.run(self._connect)

    def _connect(self) -> sqlite3.Connection:
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        # Processes that open a new file together race to switch it to WAL and create the
        # tables, and SQLite answers the loser "database is locked" at once, without its
        # busy handler: try again until the busy timeout would have run out.
        deadline = time.monotonic() + BUSY_TIMEOUT_MS / 1000
        while True:
            try:
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute(f"PRAGMA synchronous={self.synchronous}")
                conn.executescript(self._schema)
                return conn
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() > deadline:
                    conn.close()
                    raise
                time.sleep(random.uniform(0.005, 0.05))

    async def close(self) -> None:
        if self._conn is not None:
            await self.run(self._conn.close)
            self._conn = None
        if self._executor is not None:
            self._executor.shutdown(wait=True)
            self._executor = None

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(*args)`` on the connection's thread; SQLite errors become ``error``."""
        if self._executor is None:
            raise self._error(f"the SQLite database {self.path} is not open")
        try:
            return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)
        except sqlite3.Error as exc:
            raise self._error(f"SQLite {self.path}: {exc}") from exc

    @property
    def conn(self) -> sqlite3.Connection:
        """The connection (only on the database's thread, from inside :meth:`run`)."""
        if self._conn is None:
            raise self._error(f"the SQLite database {self.path} is not open")
        return self._conn

    def execute(self, sql: str, params: tuple[Any, ...] = ()) -> list[Any]:
        """Run one statement and fetch its rows (on the database's thread)."""
        return self.conn.execute(sql, params).fetchall()

    @contextmanager
    def transaction(self, mode: str = "IMMEDIATE") -> Iterator[sqlite3.Connection]:
        """``BEGIN <mode>`` ... ``COMMIT``, rolled back on any error (on the thread)."""
        conn = self.conn
        conn.execute(f"BEGIN {mode}")
        try:
            yield conn
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
