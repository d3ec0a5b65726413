"""The SQLite family: one writer at a time, and transactions that take the write lock at once.

SQLite lets one connection write at a time; a second writer waits on the file
lock and fails with "database is locked" once its timeout runs out. So by
default the async side keeps ONE connection and queues the tasks for it: no
task ever waits on the file lock, however many write at once. A transaction
holds that connection for its whole block, as on the other backends.

Transactions open with ``BEGIN IMMEDIATE``: they take the write lock at once.
That matters with ``max_connections`` above one (useful with
``journal_mode=wal``, where readers run beside the writer) and beside other
processes: a transaction waits up to the database's ``timeout`` for the lock,
instead of starting as a reader and failing with "database is locked" when it
tries to write while another transaction holds the lock.
"""

from __future__ import annotations

from typing import Any

from .base import AsyncDatabase
from .driver import Driver


class SqliteFamily(AsyncDatabase):
    """What the SQLite classes share, whatever the driver."""

    family = "sqlite"

    def _check_options(self, database: Any) -> None:
        if _in_memory(database) and self.max_connections > 1:
            raise ValueError(
                f"{type(self).__name__}({database!r}, max_connections={self.max_connections}): an "
                "in-memory database is a different, empty database on each connection. Use "
                "max_connections=1 (the default) or a database file."
            )


class SqliteDriver(Driver):
    """A SQLite driver: transactions begin with ``BEGIN IMMEDIATE``."""

    begin_statement = "BEGIN IMMEDIATE"


def _in_memory(database: Any) -> bool:
    name = str(database or "")  # peewee also takes a pathlib.Path
    return name == ":memory:" or name.startswith("file::memory:")
