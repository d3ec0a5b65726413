"""SQLite on aiosqlite: the pool hooks and the database class.

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

aiosqlite runs each connection in a thread of its own. The connection is made
by peewee's own ``_connect()`` in that thread, so pragmas, user functions
(``@db.func()``), aggregates, collations and attached databases are set up
exactly as for sync peewee.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence
from typing import Any

import peewee

from ..cursor import FetchedCursor
from .base import AsyncDatabase
from .pool import Pool, RawStream

try:
    import aiosqlite
except ImportError:  # pragma: no cover - reported when a pool opens
    aiosqlite = None  # type: ignore[assignment]


def _run_worker(requests: Any) -> None:
    """aiosqlite's connection thread: run each queued call, hand its outcome to the waiting future."""
    while True:
        future, function = requests.get()
        try:
            result = function()
        except BaseException as exc:
            _deliver(future, _set_exception, exc)
            continue
        _deliver(future, _set_result, result)
        if result is aiosqlite.core._STOP_RUNNING_SENTINEL:
            return


def _deliver(future: asyncio.Future[Any] | None, setter: Any, value: Any) -> None:
    if future is None:
        return
    try:
        future.get_loop().call_soon_threadsafe(setter, future, value)
    except RuntimeError:
        pass  # the future's loop has closed: nobody waits for this outcome any more


def _set_result(future: asyncio.Future[Any], result: Any) -> None:
    if not future.done():
        future.set_result(result)


def _set_exception(future: asyncio.Future[Any], exc: BaseException) -> None:
    if not future.done():
        future.set_exception(exc)


class AiosqlitePool(Pool):
    """Up to ``max_size`` aiosqlite connections (one by default), handed out in turn."""

    begin_statement = "BEGIN IMMEDIATE"

    async def open(self, timeout: float | None) -> None:
        if aiosqlite is None:
            raise peewee.ImproperlyConfigured("SQLite support needs aiosqlite: pip install aiosqlite")
        self._free: list[Any] = []
        self._size = 0
        self._slots = asyncio.Semaphore(self.max_size)
        self._closing = False
        for _ in range(self.min_size):
            self._free.append(await self._connect())
            self._size += 1

    async def _connect(self) -> Any:
        conn = aiosqlite.Connection(self.database._connect, iter_chunk_size=64)  # type: ignore[attr-defined]
        # aiosqlite's own worker thread is not a daemon, so one connection left
        # open (a database never closed, a loop stopped mid-query) would keep
        # the interpreter from exiting; and it dies with "Event loop is closed"
        # when a statement cut off by a cancellation finishes after its loop
        # has closed (e.g. after asyncio.run() returned). Ours runs the same
        # queue without either. SQLite's journal makes dropping the thread at
        # exit safe: an unfinished transaction is rolled back on the next open.
        conn._thread = threading.Thread(target=_run_worker, args=(conn._tx,), daemon=True)
        return await conn

    async def _acquire_raw(self) -> Any:
        if self._closing:
            raise peewee.InterfaceError("The SQLite pool is closing; no new connections are handed out.")
        await self._slots.acquire()
        try:
            if self._free:
                return self._free.pop()
            conn = await self._connect()
            self._size += 1
            return conn
        except BaseException:
            self._slots.release()
            raise

    def _release_raw(self, conn: Any) -> None:
        if self.is_closed(conn):
            self._size -= 1
        elif self._closing:
            self._size -= 1
            self._close_raw(conn)
        else:
            self._free.append(conn)
        self._slots.release()

    def _close_raw(self, conn: Any) -> None:
        # aiosqlite closes in its thread; closing rolls back an open transaction.
        task = self.loop.create_task(conn.close())
        self._cleanups.add(task)
        task.add_done_callback(self._cleanups.discard)
        conn._peewee_async_closed = True

    def is_closed(self, conn: Any) -> bool:
        # aiosqlite forgets its sqlite3 connection once closed, by us or by anyone.
        return bool(getattr(conn, "_peewee_async_closed", False)) or conn._connection is None

    def in_transaction(self, conn: Any) -> bool:
        return bool(conn.in_transaction)

    async def _cancel_on_server(self, conn: Any) -> None:
        # sqlite3's interrupt() may be called from any thread; the statement
        # then fails with "interrupted" in aiosqlite's thread.
        await conn.interrupt()

    async def _execute_raw(self, conn: Any, sql: str, params: Sequence[Any]) -> FetchedCursor:
        # One trip to the connection's thread, not three (execute, fetchall,
        # close): each trip costs more than the statement itself. aiosqlite's
        # own execute_fetchall() goes through _execute() the same way. A task
        # cancelled meanwhile leaves the statement to finish in the thread; the
        # pool closes the whole connection.
        result: FetchedCursor = await conn._execute(_execute_in_thread, conn, sql, params)
        return result

    async def _open_stream_raw(
        self, conn: Any, sql: str, params: Sequence[Any], chunk_size: int
    ) -> RawStream:
        return SqliteRows(await conn.execute(sql, params), chunk_size)

    async def _close_all(self, timeout: float | None) -> None:
        self._closing = True
        free, self._free = self._free, []
        self._size -= len(free)
        await asyncio.gather(*(conn.close() for conn in free), return_exceptions=True)

    def _terminate_raw(self) -> None:
        # aiosqlite's thread closes the sqlite3 connection when told to stop.
        for conn in self._free:
            conn.stop()
        self._free = []

    @property
    def size(self) -> int:
        return self._size

    @property
    def freesize(self) -> int:
        return len(self._free)


def _execute_in_thread(conn: Any, sql: str, params: Sequence[Any]) -> FetchedCursor:
    """Run one statement and read its result, in ``conn``'s thread."""
    cursor = conn._conn.execute(sql, params)
    try:
        description = cursor.description
        rows = cursor.fetchall() if description is not None else []
        return FetchedCursor(rows, description, cursor.rowcount, cursor.lastrowid)
    finally:
        cursor.close()


class SqliteRows(RawStream):
    """An aiosqlite cursor read with ``fetchmany``; SQLite steps the statement as rows are asked for."""

    def __init__(self, cursor: Any, chunk_size: int) -> None:
        self.cursor = cursor
        self.chunk_size = chunk_size
        self.description = cursor.description

    async def fetch(self) -> Sequence[Sequence[Any]]:
        rows: Sequence[Sequence[Any]] = await self.cursor.fetchmany(self.chunk_size)
        return rows

    async def close(self) -> None:
        await self.cursor.close()


class SqliteDatabase(AsyncDatabase, peewee.SqliteDatabase):
    """SQLite for sync peewee and for async code, on aiosqlite.

    Async tasks share one connection and take turns (``max_connections=1``),
    which is what keeps concurrent writers from ever seeing "database is
    locked". With ``journal_mode=wal``, ``max_connections`` above one lets
    readers run beside the writer. Transactions begin with ``BEGIN IMMEDIATE``
    and wait up to ``timeout`` seconds for the write lock. An in-memory
    database (``':memory:'``) is a different database for each connection, so
    sync code and async code would not see each other's tables (use a file),
    and ``max_connections`` above one raises ``ValueError`` for it. Example::

        database = SqliteDatabase('app.db', pragmas={'journal_mode': 'wal'})
    """

    pool_class = AiosqlitePool

    def init(self, database: Any, *args: Any, **kwargs: Any) -> None:
        if _in_memory(database) and self.max_connections > 1:
            raise ValueError(
                f"SqliteDatabase({database!r}, max_connections={self.max_connections}): an in-memory "
                "database is a different, empty database on each connection. Use max_connections=1 "
                "(the default) or a database file."
            )
        super().init(database, *args, **kwargs)


def _in_memory(database: Any) -> bool:
    name = str(database or "")  # peewee also takes a pathlib.Path
    return name == ":memory:" or name.startswith("file::memory:")
