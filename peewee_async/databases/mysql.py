"""The MySQL/MariaDB family: what every MySQL driver and database class shares.

``KILL QUERY`` for ``query_timeout``, PyMySQL-style connect arguments and the
stream over an unbuffered cursor live here; a driver module (``aiomysql.py``,
``asyncmy.py``) adds how its driver connects and runs one statement.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Sequence
from typing import Any

from .base import AsyncDatabase
from .driver import ConnectionHolder, Driver, RawStream


class MySQLFamily(AsyncDatabase):
    """What the MySQL/MariaDB classes share, whatever the driver."""

    family = "mysql"


class MySQLDriver(Driver):
    """A MySQL/MariaDB driver: stops statements with ``KILL QUERY`` from a side connection."""

    @abstractmethod
    def session_id(self, conn: ConnectionHolder) -> int:
        """The server's thread id of ``conn`` (``CONNECTION_ID()``), known without a round trip."""

    async def cancel(self, database: AsyncDatabase, conn: ConnectionHolder, timeout: float) -> None:
        await self.execute_aside(database, timeout, f"KILL QUERY {int(self.session_id(conn))}", ())


def connect_arguments(database: AsyncDatabase, timeout: float | None) -> dict[str, Any]:
    """PyMySQL-style connect arguments for ``database``, in autocommit mode."""
    params = dict(database.connect_params)
    params["database"] = database.database
    params["autocommit"] = True
    if timeout:
        params.setdefault("connect_timeout", timeout)
    return params


def quote_sql_mode(params: dict[str, Any]) -> None:
    """Quote ``params["sql_mode"]`` (in place) for drivers that send it as ``SET sql_mode=<value>``.

    aiomysql and asyncmy put the value into that statement as it is, which
    fails for a list of modes ("STRICT_TRANS_TABLES,PIPES_AS_CONCAT"); PyMySQL,
    for the sync side, passes it as a parameter. Quote it as PyMySQL would.
    """
    if params.get("sql_mode") is not None:
        params["sql_mode"] = "'" + str(params["sql_mode"]).replace("'", "''") + "'"


class UnbufferedResult(RawStream):
    """The rows of an unbuffered cursor (``SSCursor``): the server sends them as they are read.

    The connection takes no other statement until every row was read. Closed
    early, the stream reads the rest and drops it when the connection is inside
    a transaction (which must go on); otherwise it closes the connection, which
    stops the server at once, and the pool opens a new one when needed.
    """

    def __init__(self, raw: Any, cursor: Any, chunk_size: int) -> None:
        self.raw = raw
        self.cursor = cursor
        self.chunk_size = chunk_size
        self.description = cursor.description
        self.exhausted = False

    async def fetch(self) -> Sequence[Sequence[Any]]:
        rows: Sequence[Sequence[Any]] = await self.cursor.fetchmany(self.chunk_size)
        if not rows:
            self.exhausted = True
        return rows

    async def close(self) -> None:
        if not self.exhausted and not self.raw.get_transaction_status():
            self.raw.close()
            return
        await self.cursor.close()  # reads what is left of the result
