"""The aiosqlite driver: each connection runs in a thread of its own.

The connection is made by peewee's own ``_connect()`` in that thread, so
pragmas, user functions (``@db.func()``), aggregates, collations and attached
databases are set up exactly as for sync peewee.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import Awaitable, Sequence
from typing import TYPE_CHECKING, Any

from ..cursor import FetchedCursor
from .driver import ConnectionHolder, ErrorMap, RawStream, TransactionStatus, dbapi_errors, optional_import
from .sqlite import SqliteDriver

if TYPE_CHECKING:
    from .base import AsyncDatabase

aiosqlite = optional_import("aiosqlite")


class AiosqliteDriver(SqliteDriver):
    """aiosqlite connections, with a worker thread of ours (see :meth:`connect`)."""

    name = "aiosqlite"
    extra = "sqlite"
    errors = ErrorMap(dbapi_errors(sqlite3))

    def installed(self) -> bool:
        return aiosqlite is not None

    async def connect(self, database: AsyncDatabase, timeout: float | None, plain: bool = False) -> Any:
        conn = aiosqlite.Connection(database._connect, iter_chunk_size=64)
        # aiosqlite's own worker thread is not a daemon, so one connection left
        # open (a database never closed, a loop stopped mid-query) would keep
        # the interpreter from exiting; and it dies with "Event loop is closed"
        # when a statement cut off by a cancellation finishes after its loop
        # has closed (e.g. after asyncio.run() returned). Ours runs the same
        # queue without either. SQLite's journal makes dropping the thread at
        # exit safe: an unfinished transaction is rolled back on the next open.
        conn._thread = threading.Thread(target=_run_worker, args=(conn._tx,), daemon=True)
        return await conn

    def close(self, conn: ConnectionHolder) -> Awaitable[None]:
        # aiosqlite closes in its thread; closing rolls back an open transaction.
        closing: Awaitable[None] = conn.raw.close()
        return closing

    def terminate(self, conn: ConnectionHolder) -> None:
        # aiosqlite's thread closes the sqlite3 connection when told to stop.
        conn.raw.stop()

    def is_closed(self, conn: ConnectionHolder) -> bool:
        # aiosqlite forgets its sqlite3 connection once closed, by us or by anyone.
        return conn.raw._connection is None

    def transaction_status(self, conn: ConnectionHolder) -> TransactionStatus:
        raw = conn.raw
        if raw._connection is None:
            return TransactionStatus.CLOSED
        return TransactionStatus.OPEN if raw.in_transaction else TransactionStatus.IDLE

    async def cancel(self, database: AsyncDatabase, conn: ConnectionHolder, timeout: float) -> None:
        # sqlite3's interrupt() may be called from any thread; the statement
        # then fails with "interrupted" in aiosqlite's thread.
        await conn.raw.interrupt()

    def version_source(self, conn: ConnectionHolder) -> Any:
        return conn.raw._connection

    async def execute(self, conn: ConnectionHolder, sql: str, params: Sequence[Any]) -> FetchedCursor:
        # One trip to the connection's thread, not three (execute, fetchall,
        # close): each trip costs more than the statement itself. aiosqlite's
        # own execute_fetchall() goes through _execute() the same way. A task
        # cancelled meanwhile leaves the statement to finish in the thread; the
        # pool closes the whole connection.
        raw = conn.raw
        result: FetchedCursor = await raw._execute(_execute_in_thread, raw, sql, params)
        return result

    async def open_stream(
        self, conn: ConnectionHolder, sql: str, params: Sequence[Any], chunk_size: int
    ) -> RawStream:
        return SqliteRows(await conn.raw.execute(sql, params), chunk_size)


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
