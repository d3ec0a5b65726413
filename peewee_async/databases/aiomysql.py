"""The aiomysql driver (PyMySQL's protocol on asyncio), for the MySQL/MariaDB family."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from ..cursor import FetchedCursor
from .driver import (
    KEPT_RESULT_ROWS,
    ConnectionHolder,
    ErrorMap,
    RawStream,
    TransactionStatus,
    dbapi_errors,
    optional_import,
    socket_readable,
)
from .mysql import (
    MySQLDriver,
    RefusePlaintext,
    UnbufferedResult,
    connect_arguments,
    new_connection,
    quote_sql_mode,
)

if TYPE_CHECKING:
    from .base import AsyncDatabase

aiomysql = optional_import("aiomysql")
pymysql = optional_import("pymysql")

if aiomysql is not None:

    class _Connection(RefusePlaintext, aiomysql.Connection):  # type: ignore[misc,name-defined]
        """aiomysql's connection, refusing plaintext when TLS was required (see RefusePlaintext)."""

        operational_error = pymysql.err.OperationalError

        def _transport_now(self) -> Any:
            writer = self._writer
            return writer.transport if writer is not None else None


# peewee passes PyMySQL-style connect arguments; aiomysql names two of them otherwise.
_RENAMED_PARAMS = {"passwd": "password", "database": "db"}


class AiomysqlDriver(MySQLDriver):
    """aiomysql connections in autocommit mode."""

    name = "aiomysql"
    extra = "mysql"
    errors = ErrorMap(dbapi_errors(pymysql) if pymysql is not None else {})

    def installed(self) -> bool:
        return aiomysql is not None

    async def connect(self, database: AsyncDatabase, timeout: float | None, plain: bool = False) -> Any:
        params = {_RENAMED_PARAMS.get(k, k): v for k, v in connect_arguments(database, timeout).items()}
        quote_sql_mode(params)
        # What aiomysql.connect() does, with our connection class.
        raw = new_connection(_Connection, params, database)
        await raw._connect()
        return raw

    def close(self, conn: ConnectionHolder) -> None:
        conn.raw.close()

    def terminate(self, conn: ConnectionHolder) -> None:
        raw = conn.raw
        # close() needs the connection's (stopped) loop: close the socket directly.
        transport = getattr(getattr(raw, "_writer", None), "transport", None)
        sock = getattr(transport, "_sock", None)
        if transport is not None and sock is not None:
            sock.close()
            # Mark both as closed, or their finalizers would try to close them
            # again through the stopped loop.
            transport._sock = None
            raw._writer = None

    def is_closed(self, conn: ConnectionHolder) -> bool:
        return bool(conn.raw.closed)

    def transaction_status(self, conn: ConnectionHolder) -> TransactionStatus:
        raw = conn.raw
        if raw.closed:
            return TransactionStatus.CLOSED
        # MySQL has no failed-transaction state: an error leaves the transaction open.
        return TransactionStatus.OPEN if raw.get_transaction_status() else TransactionStatus.IDLE

    def connection_lost(self, conn: ConnectionHolder) -> bool:
        raw = conn.raw
        if raw.closed or raw._reader.at_eof() or raw._reader.eof_received:
            return True
        sock = raw._writer.transport.get_extra_info("socket")
        # The server never speaks first on an idle connection, except to say
        # goodbye (an error packet, or the end of the stream).
        return sock is None or socket_readable(sock.fileno())

    def session_id(self, conn: ConnectionHolder) -> int:
        return int(conn.raw.thread_id())

    def version_source(self, conn: ConnectionHolder) -> Any:
        return conn.raw

    async def execute(self, conn: ConnectionHolder, sql: str, params: Sequence[Any]) -> FetchedCursor:
        # A connection keeps its cursor while results are small: making and
        # closing one costs a few microseconds a statement, a transaction's four
        # statements more than a tenth of our time.
        raw = conn.raw
        cursor = conn.kept
        conn.kept = None
        if cursor is None or raw.closed:
            cursor = await raw.cursor()  # on a closed connection: the driver's own error
        try:
            await cursor.execute(sql, params or None)
            description = cursor.description
            rows = await cursor.fetchall() if description is not None else ()
            result = FetchedCursor(rows, description, cursor.rowcount, cursor.lastrowid)
        except Exception:
            await cursor.close()
            raise
        except BaseException:
            # Cancelled mid-statement. Closing the cursor would read the rest of
            # the answer, i.e. wait until the server finishes the statement:
            # close the connection instead, so the cancellation takes effect now.
            raw.close()
            raise
        if len(rows) <= KEPT_RESULT_ROWS:
            conn.kept = cursor
        else:
            await cursor.close()
        return result

    async def open_stream(
        self, conn: ConnectionHolder, sql: str, params: Sequence[Any], chunk_size: int
    ) -> RawStream:
        cursor = await conn.raw.cursor(aiomysql.SSCursor)
        try:
            await cursor.execute(sql, params or None)
        except BaseException:
            await cursor.close()
            raise
        return UnbufferedResult(conn.raw, cursor, chunk_size)
