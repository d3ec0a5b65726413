"""The MySQL/MariaDB family: what every MySQL driver and database class shares.

``KILL QUERY`` for ``query_timeout`` and PyMySQL-style connect arguments live
here; a driver module (``aiomysql.py``) adds how its driver connects, runs one
statement and streams an unbuffered result.
"""

from __future__ import annotations

from abc import abstractmethod
from typing import Any

from .base import AsyncDatabase
from .driver import ConnectionHolder, Driver


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
