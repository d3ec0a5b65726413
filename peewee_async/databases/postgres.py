"""The PostgreSQL family: what every PostgreSQL driver and database class shares.

Server-side cursors for ``iterate()``, ``pg_cancel_backend`` for
``query_timeout``, libpq's connect arguments and the ``register_hstore``
option live here; a driver module (``aiopg.py``) adds only how its driver
connects and runs one statement.
"""

from __future__ import annotations

import itertools
import socket
from abc import abstractmethod
from collections.abc import Sequence
from typing import Any

import peewee

from .base import AsyncDatabase
from .driver import ConnectionHolder, Driver, RawStream, TransactionStatus, socket_readable


class PostgresqlFamily(AsyncDatabase):
    """What the PostgreSQL classes of ``peewee_async`` and ``peewee_asyncext`` share, whatever the driver."""

    family = "postgresql"

    @property
    def register_hstore(self) -> bool:
        """Whether connections decode hstore columns to dicts (the ext classes' option)."""
        return bool(getattr(self, "_register_hstore", False))


class PostgresqlDriver(Driver):
    """A PostgreSQL driver: server-side cursors for streams, ``pg_cancel_backend`` to stop a statement."""

    @abstractmethod
    def session_id(self, conn: ConnectionHolder) -> int:
        """The server process id of ``conn`` (``pg_backend_pid()``), known without a round trip."""

    async def open_stream(
        self, conn: ConnectionHolder, sql: str, params: Sequence[Any], chunk_size: int
    ) -> RawStream:
        stream = ServerCursor(self, conn, chunk_size)
        await stream.declare(sql, params)
        return stream

    async def cancel(self, database: AsyncDatabase, conn: ConnectionHolder, timeout: float) -> None:
        sql = self.driver_sql("SELECT pg_cancel_backend(%s)")
        await self.execute_aside(database, timeout, sql, (self.session_id(conn),))


_cursor_names = itertools.count(1)


class ServerCursor(RawStream):
    """A server-side cursor: ``DECLARE ... CURSOR``, then ``FETCH n`` until the rows run out.

    A cursor lives inside a transaction: the task's open one, or else one that
    the stream begins at DECLARE and commits at its close.
    """

    def __init__(self, driver: Driver, conn: ConnectionHolder, chunk_size: int) -> None:
        self.driver = driver
        self.conn = conn
        self.name = f"peewee_async_cursor_{next(_cursor_names)}"
        self.fetch_sql = f"FETCH FORWARD {int(chunk_size)} FROM {self.name}"
        self.began = False
        self.declared = False

    async def declare(self, sql: str, params: Sequence[Any]) -> None:
        if self.driver.transaction_status(self.conn) is TransactionStatus.IDLE:
            await self.driver.execute(self.conn, "BEGIN", ())
            self.began = True
        await self.driver.execute(self.conn, f"DECLARE {self.name} NO SCROLL CURSOR FOR {sql}", params)
        self.declared = True

    async def fetch(self) -> Sequence[Sequence[Any]]:
        result = await self.driver.execute(self.conn, self.fetch_sql, ())
        self.description = result.description
        return result.rows

    async def close(self) -> None:
        if self.began:
            # Ending the transaction closes the cursor with it.
            self.began = self.declared = False
            await self.driver.execute(self.conn, "COMMIT", ())
        elif self.declared:
            self.declared = False
            if self.driver.transaction_status(self.conn) is TransactionStatus.FAILED:
                return  # a failed transaction takes no CLOSE; its ROLLBACK drops the cursor
            await self.driver.execute(self.conn, f"CLOSE {self.name}", ())


def connect_arguments(database: AsyncDatabase, timeout: float | None) -> tuple[str | None, dict[str, Any]]:
    """libpq's connect arguments for ``database``: a DSN (when the name is a URL) and keywords."""
    params = dict(database.connect_params)
    name = database.database
    dsn = None
    if name and name.startswith(("postgres://", "postgresql://")):
        dsn = name
    else:
        params["database"] = name
    # libpq takes whole seconds; 0 would mean "wait for ever".
    params.setdefault("connect_timeout", max(1, round(timeout)) if timeout else 0)
    return dsn, params


def server_said_goodbye(fd: int) -> bool:
    """Whether the server closed the idle connection on socket ``fd``, seen without reading from it.

    An idle connection has nothing to read but a notification, or the server's
    goodbye: an ErrorResponse ('E', e.g. "terminating connection due to
    administrator command") and the end of the stream.
    """
    if not socket_readable(fd):
        return False
    with socket.fromfd(fd, socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            first = sock.recv(1, socket.MSG_PEEK)
        except BlockingIOError:
            return False
        except OSError:
            return True
    return first in (b"", b"E")


#: peewee 4 takes ``prefer_psycopg3``: its sync side then connects with psycopg 3,
#: and it compiles for a driver that binds values on the server.
PEEWEE_TAKES_PSYCOPG3 = hasattr(peewee, "Psycopg3Adapter")


def prefer_psycopg3(options: dict[str, Any], installed: bool) -> None:
    """Have peewee's sync side run on psycopg 3 (peewee 4, psycopg 3 ``installed``) unless told otherwise."""
    if PEEWEE_TAKES_PSYCOPG3 and installed:
        options.setdefault("prefer_psycopg3", True)


def nul_in_text_error(message: str) -> peewee.DataError:
    """The error for a NUL character in a text parameter, which PostgreSQL refuses; ``message`` first."""
    return peewee.DataError(
        f"{message} PostgreSQL text cannot contain NUL (0x00) characters: store binary data in a "
        "BlobField (bytea), or remove the NUL characters from the text."
    )
