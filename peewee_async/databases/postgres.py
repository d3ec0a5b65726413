"""PostgreSQL on aiopg: the pool hooks and the database classes."""

from __future__ import annotations

import asyncio
import itertools
import socket
from collections.abc import Sequence
from typing import Any

import peewee

from ..cursor import FetchedCursor
from .base import AsyncDatabase
from .pool import Pool, RawStream, idle_without_waiting, socket_readable

try:
    import aiopg
    import psycopg2.extensions
except ImportError:  # pragma: no cover - reported when a pool opens
    aiopg = None  # type: ignore[assignment]


# The most rows a connection's kept cursor may hold on to (see AiopgPool._execute_raw).
_KEPT_RESULT_ROWS = 100


class AiopgPool(Pool):
    """A pool of aiopg connections (psycopg2 in asynchronous mode, always autocommit)."""

    _pool: Any = None

    async def open(self, timeout: float | None) -> None:
        if aiopg is None:
            raise peewee.ImproperlyConfigured(
                "PostgreSQL support needs aiopg: pip install 'peewee-async[postgresql]'"
            )
        db = self.database
        params = dict(db.connect_params)  # type: ignore[attr-defined]
        name = db.database  # type: ignore[attr-defined]
        dsn = None
        if name and name.startswith(("postgres://", "postgresql://")):
            dsn = name
        else:
            params["database"] = name
        params.setdefault("connect_timeout", _whole_seconds(timeout))
        self._connect_args = (dsn, params)
        self._pool = await aiopg.create_pool(
            dsn,
            minsize=self.min_size,
            maxsize=self.max_size,
            # aiopg applies this one timeout to every statement and acquire; we
            # bound acquire ourselves and leave statements unbounded, as psycopg2 does.
            timeout=None,  # type: ignore[arg-type]
            enable_json=True,
            enable_hstore=db.register_hstore,  # type: ignore[attr-defined]
            enable_uuid=True,
            **params,
        )

    def driver_connection(self, conn: Any) -> Any:
        return conn.raw

    async def _acquire_raw(self) -> Any:
        return await self._pool.acquire()

    def _free_now(self) -> bool:
        return idle_without_waiting(self._pool)

    def _release_raw(self, conn: Any) -> None:
        self._pool.release(conn)

    def _wake_next_waiter(self) -> None:
        pool = self._pool
        if pool is not None and (pool._free or pool.size < pool.maxsize):
            self._in_background(pool._wakeup())

    def _close_raw(self, conn: Any) -> None:
        conn.close()

    def is_closed(self, conn: Any) -> bool:
        return bool(conn.closed)

    def in_transaction(self, conn: Any) -> bool:
        status = conn.raw.get_transaction_status()
        return bool(status != psycopg2.extensions.TRANSACTION_STATUS_IDLE)

    def connection_lost(self, conn: Any) -> bool:
        if conn.closed:
            return True
        fd = conn.raw.fileno()
        if not socket_readable(fd):
            return False
        # An idle connection has nothing to read but a notification, or the
        # server's goodbye: an ErrorResponse ('E', e.g. "terminating connection
        # due to administrator command") and the end of the stream.
        with socket.fromfd(fd, socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                first = sock.recv(1, socket.MSG_PEEK)
            except BlockingIOError:
                return False
            except OSError:
                return True
        return first in (b"", b"E")

    async def _cancel_on_server(self, conn: Any) -> None:
        pid = conn.raw.get_backend_pid()
        dsn, params = self._connect_args
        connecting = aiopg.connect(
            dsn,
            timeout=self.cancel_grace,
            enable_json=False,
            enable_hstore=False,
            enable_uuid=False,
            **params,
        )
        async with connecting as side:
            async with side.cursor() as cursor:
                await cursor.execute("SELECT pg_cancel_backend(%s)", (pid,))

    async def _execute_raw(self, conn: Any, sql: str, params: Sequence[Any]) -> FetchedCursor:
        # Making an aiopg cursor costs about a tenth of a short statement, so a
        # connection keeps one while its results are small (a cursor holds its
        # last result until the next statement).
        cursor = conn.__dict__.pop("_peewee_async_cursor", None)
        if cursor is None or cursor.closed:
            cursor = await conn.cursor()
        try:
            try:
                await cursor.execute(sql, params or None)
            except asyncio.CancelledError:
                task = asyncio.current_task()
                if task is not None and task.cancelling():
                    raise
                # Nobody cancelled this task: aiopg turned the server's
                # cancellation of the statement into a CancelledError.
                raise psycopg2.extensions.QueryCanceledError(
                    "canceling statement: the server stopped it (statement_timeout, "
                    "pg_cancel_backend or query_timeout)"
                ) from None
            except ValueError as exc:
                if "NUL" not in str(exc):
                    raise
                # psycopg2 refuses a NUL character while quoting, before sending
                # anything: the connection and its transaction are unharmed.
                raise peewee.DataError(
                    f"{exc} PostgreSQL text cannot contain NUL (0x00) characters: store binary "
                    "data in a BlobField (bytea), or remove the NUL characters from the text."
                ) from exc
            description = cursor.description
            rows = await cursor.fetchall() if description is not None else []
            result = FetchedCursor(rows, description, cursor.rowcount, cursor.lastrowid)
        except BaseException:
            cursor.close()
            raise
        if len(rows) <= _KEPT_RESULT_ROWS:
            conn._peewee_async_cursor = cursor
        else:
            cursor.close()
        return result

    async def _open_stream_raw(
        self, conn: Any, sql: str, params: Sequence[Any], chunk_size: int
    ) -> RawStream:
        stream = ServerCursor(self, conn, chunk_size)
        await stream.declare(sql, params)
        return stream

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
            # terminate() closes the connections in use; the idle ones are ours to close.
            while self._pool._free:
                self._pool._free.pop().close()
            self._pool.terminate()

    @property
    def size(self) -> int:
        return int(self._pool.size) if self._pool is not None else 0

    @property
    def freesize(self) -> int:
        return int(self._pool.freesize) if self._pool is not None else 0


_cursor_names = itertools.count(1)


class ServerCursor(RawStream):
    """A server-side cursor: ``DECLARE ... CURSOR``, then ``FETCH n`` until the rows run out.

    A cursor lives inside a transaction: the task's open one, or else one that
    the stream begins at DECLARE and commits at its close.
    """

    def __init__(self, pool: AiopgPool, conn: Any, chunk_size: int) -> None:
        self.pool = pool
        self.conn = conn
        self.name = f"peewee_async_cursor_{next(_cursor_names)}"
        self.fetch_sql = f"FETCH FORWARD {int(chunk_size)} FROM {self.name}"
        self.began = False
        self.declared = False

    async def declare(self, sql: str, params: Sequence[Any]) -> None:
        if not self.pool.in_transaction(self.conn):
            await self.pool._execute_raw(self.conn, "BEGIN", ())
            self.began = True
        await self.pool._execute_raw(self.conn, f"DECLARE {self.name} NO SCROLL CURSOR FOR {sql}", params)
        self.declared = True

    async def fetch(self) -> Sequence[Sequence[Any]]:
        result = await self.pool._execute_raw(self.conn, self.fetch_sql, ())
        self.description = result.description
        return result._rows

    async def close(self) -> None:
        if self.began:
            # Ending the transaction closes the cursor with it.
            self.began = self.declared = False
            await self.pool._execute_raw(self.conn, "COMMIT", ())
        elif self.declared:
            self.declared = False
            if self.conn.raw.get_transaction_status() == psycopg2.extensions.TRANSACTION_STATUS_INERROR:
                return  # a failed transaction takes no CLOSE; its ROLLBACK drops the cursor
            await self.pool._execute_raw(self.conn, f"CLOSE {self.name}", ())


def _whole_seconds(timeout: float | None) -> int:
    # libpq takes whole seconds; 0 would mean "wait for ever".
    return max(1, round(timeout)) if timeout else 0


class AiopgDatabase(AsyncDatabase):
    """What the PostgreSQL classes of ``peewee_async`` and ``peewee_asyncext`` share."""

    pool_class = AiopgPool

    @property
    def register_hstore(self) -> bool:
        """Whether connections decode hstore columns to dicts (the ext classes' option)."""
        return bool(getattr(self, "_register_hstore", False))

    def init(self, database: str | None, **kwargs: Any) -> None:
        # aiopg speaks psycopg2 only, so peewee must adapt values for psycopg2.
        kwargs.pop("prefer_psycopg3", None)
        super().init(database, **kwargs)


class PostgresqlDatabase(AiopgDatabase, peewee.PostgresqlDatabase):  # type: ignore[misc]
    """PostgreSQL for sync peewee and for async code on one aiopg connection.

    Concurrent tasks take turns on the one connection; use
    :class:`PooledPostgresqlDatabase` to run them side by side. Example::

        database = PostgresqlDatabase('test', user='postgres', host='127.0.0.1')
    """


class PooledPostgresqlDatabase(PostgresqlDatabase):
    """PostgreSQL with a pool of up to ``max_connections`` (default 20) async connections.

    Example::

        database = PooledPostgresqlDatabase('test', max_connections=20)
    """

    default_max_connections = 20
