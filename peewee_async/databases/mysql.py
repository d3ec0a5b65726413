"""MySQL and MariaDB on aiomysql: the pool hooks and the database classes."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import peewee

from ..cursor import FetchedCursor
from .base import AsyncDatabase
from .pool import Pool, RawStream, idle_without_waiting, socket_readable

try:
    import aiomysql
except ImportError:  # pragma: no cover - reported when a pool opens
    aiomysql = None

# peewee passes pymysql-style connect arguments; aiomysql names two of them otherwise.
_RENAMED_PARAMS = {"passwd": "password", "database": "db"}

# The most rows a connection's kept cursor may hold on to (see AiomysqlPool._execute_raw).
_KEPT_RESULT_ROWS = 100


class AiomysqlPool(Pool):
    """A pool of aiomysql connections in autocommit mode."""

    _pool: Any = None

    async def open(self, timeout: float | None) -> None:
        if aiomysql is None:
            raise peewee.ImproperlyConfigured(
                "MySQL support needs aiomysql: pip install 'peewee-async[mysql]'"
            )
        db = self.database
        params = {_RENAMED_PARAMS.get(k, k): v for k, v in db.connect_params.items()}  # type: ignore[attr-defined]
        params["db"] = db.database  # type: ignore[attr-defined]
        params["autocommit"] = True
        if timeout:
            params.setdefault("connect_timeout", timeout)
        if params.get("sql_mode") is not None:
            # aiomysql sends `SET sql_mode=<value>` unquoted, which fails for a
            # list of modes ("STRICT_TRANS_TABLES,PIPES_AS_CONCAT"); PyMySQL,
            # for the sync side, passes it as a parameter. Quote it as PyMySQL would.
            params["sql_mode"] = "'" + str(params["sql_mode"]).replace("'", "''") + "'"
        self._params = params
        self._pool = await aiomysql.create_pool(minsize=self.min_size, maxsize=self.max_size, **params)

    async def _acquire_raw(self) -> Any:
        return await self._pool.acquire()

    def _free_now(self) -> bool:
        return idle_without_waiting(self._pool)

    def _release_raw(self, conn: Any) -> None:
        closed = conn.closed
        self._pool.release(conn)
        if closed:
            # aiomysql wakes no waiting acquire() when a closed connection comes
            # back, though its place in the pool is free now: wake one ourselves.
            self._wake_next_waiter()

    def _wake_next_waiter(self) -> None:
        pool = self._pool
        if pool is not None and (pool._free or pool.size < pool.maxsize):
            self._in_background(pool._wakeup())

    def _close_raw(self, conn: Any) -> None:
        conn.close()

    def is_closed(self, conn: Any) -> bool:
        return bool(conn.closed)

    def in_transaction(self, conn: Any) -> bool:
        return bool(conn.get_transaction_status())

    def connection_lost(self, conn: Any) -> bool:
        if conn.closed or conn._reader.at_eof() or conn._reader.eof_received:
            return True
        sock = conn._writer.transport.get_extra_info("socket")
        # The server never speaks first on an idle connection, except to say
        # goodbye (an error packet, or the end of the stream).
        return sock is None or socket_readable(sock.fileno())

    async def _cancel_on_server(self, conn: Any) -> None:
        side = aiomysql.Connection(**self._params)
        try:
            await side._connect()
            async with side.cursor() as cursor:
                await cursor.execute(f"KILL QUERY {int(conn.thread_id())}")
        finally:
            side.close()

    async def _execute_raw(self, conn: Any, sql: str, params: Sequence[Any]) -> FetchedCursor:
        # As on aiopg (see AiopgPool._execute_raw), a connection keeps its cursor
        # while results are small: making and closing one costs a few microseconds
        # a statement, a transaction's four statements more than a tenth of our time.
        cursor = conn.__dict__.pop("_peewee_async_cursor", None)
        if cursor is None or conn.closed:
            cursor = await conn.cursor()  # on a closed connection: the driver's own error
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
            conn.close()
            raise
        if len(rows) <= _KEPT_RESULT_ROWS:
            conn._peewee_async_cursor = cursor
        else:
            await cursor.close()
        return result

    async def _open_stream_raw(
        self, conn: Any, sql: str, params: Sequence[Any], chunk_size: int
    ) -> RawStream:
        cursor = await conn.cursor(aiomysql.SSCursor)
        try:
            await cursor.execute(sql, params or None)
        except BaseException:
            await cursor.close()
            raise
        return UnbufferedResult(conn, cursor, chunk_size)

    async def _close_all(self, timeout: float | None) -> None:
        if self._pool is None:
            return
        self._pool.close()
        try:
            async with asyncio.timeout(timeout):
                await self._pool.wait_closed()
        except TimeoutError:
            self._pool.terminate()
            await self._pool.wait_closed()

    def _terminate_raw(self) -> None:
        if self._pool is not None:
            # terminate() closes the connections in use. The idle ones' close()
            # needs their (stopped) loop, so close their sockets directly.
            while self._pool._free:
                conn = self._pool._free.pop()
                transport = getattr(getattr(conn, "_writer", None), "transport", None)
                sock = getattr(transport, "_sock", None)
                if transport is not None and sock is not None:
                    sock.close()
                    # Mark both as closed, or their finalizers would try to
                    # close them again through the stopped loop.
                    transport._sock = None
                    conn._writer = None
            self._pool.terminate()

    @property
    def size(self) -> int:
        return int(self._pool.size) if self._pool is not None else 0

    @property
    def freesize(self) -> int:
        return int(self._pool.freesize) if self._pool is not None else 0


class UnbufferedResult(RawStream):
    """aiomysql's ``SSCursor``: the server sends the rows as they are read.

    The connection takes no other statement until every row was read. Closed
    early, the stream reads the rest and drops it when the connection is inside
    a transaction (which must go on); otherwise it closes the connection, which
    stops the server at once, and the pool opens a new one when needed.
    """

    def __init__(self, conn: Any, cursor: Any, chunk_size: int) -> None:
        self.conn = conn
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
        if not self.exhausted and not self.conn.get_transaction_status():
            self.conn.close()
            return
        await self.cursor.close()  # reads what is left of the result


class MySQLDatabase(AsyncDatabase, peewee.MySQLDatabase):
    """MySQL/MariaDB for sync peewee and for async code on one aiomysql connection.

    Concurrent tasks take turns on the one connection; use
    :class:`PooledMySQLDatabase` to run them side by side. Example::

        database = MySQLDatabase('test', user='root', host='127.0.0.1')
    """

    pool_class = AiomysqlPool


class PooledMySQLDatabase(MySQLDatabase):
    """MySQL/MariaDB with a pool of up to ``max_connections`` (default 20) async connections.

    Example::

        database = PooledMySQLDatabase('test', max_connections=10)
    """

    default_max_connections = 20
