"""The aiopg driver: psycopg2 in asynchronous mode (always autocommit), for the PostgreSQL family."""

from __future__ import annotations

import asyncio
import ctypes
import errno
import functools
import os
import select
import selectors
import weakref
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, cast

import peewee

from ..cursor import FetchedCursor
from .driver import (
    KEPT_RESULT_ROWS,
    ConnectionHolder,
    ErrorMap,
    TransactionStatus,
    dbapi_errors,
    optional_import,
)
from .postgres import PostgresqlDriver, connect_arguments, nul_in_text_error, server_said_goodbye

if TYPE_CHECKING:
    from .base import AsyncDatabase

aiopg = optional_import("aiopg")
psycopg2 = optional_import("psycopg2")
extensions = optional_import("psycopg2.extensions")


@functools.cache
def _libpq() -> ctypes.CDLL:
    """The libpq that psycopg2 runs on (its own copy in psycopg2-binary): symbols found through its module."""
    library = ctypes.CDLL(psycopg2._psycopg.__file__)
    library.PQgetCancel.restype = ctypes.c_void_p
    library.PQgetCancel.argtypes = [ctypes.c_void_p]
    library.PQcancel.restype = ctypes.c_int
    library.PQcancel.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int]
    library.PQfreeCancel.restype = None
    library.PQfreeCancel.argtypes = [ctypes.c_void_p]
    return library


def _send_cancel(cancel: int) -> str | None:
    """PQcancel, then PQfreeCancel of ``cancel``; libpq's error message, or ``None`` once sent."""
    libpq = _libpq()
    try:
        errors = ctypes.create_string_buffer(256)
        if libpq.PQcancel(cancel, errors, len(errors)):
            return None
        return errors.value.decode(errors="replace")
    finally:
        libpq.PQfreeCancel(cancel)


def _forget_closed_sockets(loop: asyncio.AbstractEventLoop) -> None:
    """Drop the event loop's entries of sockets closed under them, aiopg's dead connections first.

    When the server goes away, libpq closes a connection's socket at once,
    and the number is free before aiopg removes its reader from the event
    loop (it does so the next time it reads). A connection opened in between
    gets the same number, and aiopg's ``add_reader`` finds the dead one's
    entry: asyncio then only swaps the callback, and epoll, which dropped the
    old socket with it, never reports the new one readable (the connection
    hangs), or, where the dead one was writing, fails with
    ``FileNotFoundError``. So before each new connection the dead ones' entries
    go, and each dead connection is told it has no socket any more (else
    closing it later would remove its successor's reader).

    Entries of any owner whose socket epoll itself no longer watches (asked
    of epoll, :func:`_missing_from_epoll`) go too: the checks of psycopg2 and
    of the file table miss some, and such an entry would meet the new
    connection's socket under the same number all the same.

    Only asyncio's selector loops keep such entries (``loop._selector``).
    """
    selector = getattr(loop, "_selector", None)
    if selector is None:
        return
    for fileno, key in list(selector.get_map().items()):
        dropped = _missing_from_epoll(selector, key)
        for handle in key.data or ():
            args = getattr(handle, "_args", None) or ()
            if not args or not isinstance(args[0], weakref.ref):
                continue
            owner: Any = args[0]()
            if owner is None and getattr(handle, "_callback", None) is aiopg.Connection._ready:
                # A connection collected without closing: its entry is stale whatever the number is now.
                dropped = True
                break
            owns = isinstance(owner, aiopg.Connection) and owner._fileno == fileno
            if owns and (dropped or _socket_gone(owner, fileno)):
                owner._fileno = None
                owner._writing = False
                dropped = True
                break
        if dropped:
            loop.remove_reader(fileno)
            loop.remove_writer(fileno)


def _missing_from_epoll(selector: Any, key: selectors.SelectorKey) -> bool:
    """Whether epoll has dropped ``key``'s socket: re-arming it with the same events fails."""
    epoll = getattr(selector, "_selector", None)
    if not isinstance(selector, selectors.EpollSelector) or epoll is None:
        return False
    events = (select.EPOLLIN if key.events & selectors.EVENT_READ else 0) | (
        select.EPOLLOUT if key.events & selectors.EVENT_WRITE else 0
    )
    try:
        epoll.modify(key.fd, events)
    except OSError as exc:
        return exc.errno in (errno.ENOENT, errno.EBADF)
    return False


def _socket_gone(connection: Any, fileno: int) -> bool:
    """Whether libpq no longer has socket ``fileno`` open for ``connection``.

    psycopg2 marks a connection closed only once a call of its own fails; a
    connection whose server went away while it was being opened, or before
    anything read from it, may still look open with its socket already closed
    by libpq: its ``fileno()`` is then -1 (or raises), or the number is no
    longer an open file.
    """
    raw = connection._conn
    if raw.closed:
        return True
    try:
        if raw.fileno() != fileno:
            return True
        os.fstat(fileno)
    except Exception:
        return True
    return False


def _connect_failure(exc: OSError) -> BaseException:
    """What a connect that failed with ``exc``, an error of the event loop's bookkeeping, really met.

    libpq may replace its socket while connecting: with ``sslmode=prefer`` a
    failed TLS attempt is retried without TLS on a new socket, which usually
    gets the number of the one just closed. epoll dropped the old socket and
    does not know the new one, so aiopg's next change to the loop's entry
    fails with ``FileNotFoundError``, raised over what happened: libpq's own
    error (aiopg chains it as the cause), or our connect timeout's
    cancellation (the context, met while aiopg closed the connection).
    """
    for met in (exc.__cause__, exc.__context__):
        if isinstance(met, asyncio.CancelledError | TimeoutError):
            return met
        if psycopg2 is not None and isinstance(met, psycopg2.Error):
            return cast(BaseException, met)
    if psycopg2 is None:
        return exc
    failed = f"the event loop failed on the connection's socket while connecting ({exc})"
    error: BaseException = psycopg2.OperationalError(failed)
    error.__cause__ = exc
    return error


if aiopg is not None:

    class _Connection(aiopg.Connection):  # type: ignore[name-defined,misc]
        """aiopg's connection, except that a statement cut off by a cancellation leaves it open.

        aiopg closes the connection there, before its caller can run again,
        and a closed psycopg2 connection no longer tells its server session.
        Our pool first asks the server to stop the statement of that session,
        then closes the connection (``Pool._stop_cut_off``). While connecting
        (``statements`` false), aiopg's own way stands: a half-open connection
        is closed at once.
        """

        statements = False
        _waiter: asyncio.Future[None] | None  # aiopg's: the statement's answer

        async def _poll(self, waiter: asyncio.Future[None], timeout: float | None) -> None:
            if not self.statements:
                await super()._poll(waiter, timeout)
                return
            # aiopg's _poll, but for closing the connection when cancelled.
            assert waiter is self._waiter, (waiter, self._waiter)
            self._ready(self._weakref)
            try:
                await asyncio.wait_for(self._waiter, timeout)
            except extensions.QueryCanceledError as exc:
                handler_context = {"message": exc.pgerror, "exception": exc, "future": self._waiter}
                self._loop.call_exception_handler(handler_context)
                raise asyncio.CancelledError  # noqa: B904 - as aiopg raises it
            finally:
                self._waiter = None


class AiopgDriver(PostgresqlDriver):
    """aiopg connections; hstore, JSON and UUID values are adapted as psycopg2 adapts them."""

    name = "aiopg"
    extra = "postgresql"
    errors = ErrorMap(dbapi_errors(psycopg2) if psycopg2 is not None else {})

    def installed(self) -> bool:
        return aiopg is not None

    def init_options(self, options: dict[str, Any]) -> None:
        # aiopg speaks psycopg2 only, so peewee's sync side must adapt values for psycopg2.
        options.pop("prefer_psycopg3", None)

    async def connect(self, database: AsyncDatabase, timeout: float | None, plain: bool = False) -> Any:
        dsn, params = connect_arguments(database, timeout)
        loop = asyncio.get_running_loop()
        _forget_closed_sockets(loop)
        try:
            raw = await _Connection(
                dsn,
                # aiopg applies this one timeout to every statement; we bound
                # statements ourselves and leave them unbounded, as psycopg2 does.
                None,
                False,
                enable_json=not plain,
                enable_hstore=not plain and bool(getattr(database, "register_hstore", False)),
                enable_uuid=not plain,
                **params,
            )
        except OSError as exc:
            _forget_closed_sockets(loop)
            raise _connect_failure(exc) from None
        raw.statements = True
        return raw

    def close(self, conn: ConnectionHolder) -> None:
        conn.raw.close()

    def terminate(self, conn: ConnectionHolder) -> None:
        conn.raw.close()

    def is_closed(self, conn: ConnectionHolder) -> bool:
        return bool(conn.raw.closed)

    def transaction_status(self, conn: ConnectionHolder) -> TransactionStatus:
        raw = conn.raw
        if raw.closed:
            return TransactionStatus.CLOSED
        status = raw.raw.get_transaction_status()
        if status == extensions.TRANSACTION_STATUS_IDLE:
            return TransactionStatus.IDLE
        if status == extensions.TRANSACTION_STATUS_INERROR:
            return TransactionStatus.FAILED
        return TransactionStatus.OPEN

    def connection_lost(self, conn: ConnectionHolder) -> bool:
        raw = conn.raw
        return bool(raw.closed) or server_said_goodbye(raw.raw.fileno())

    async def cancel_request(self, conn: ConnectionHolder, timeout: float) -> None:
        # aiopg's cancel() refuses async connections, and psycopg2's holds the
        # GIL while libpq sends the request: a pooler that does not answer would
        # stop the whole process. libpq's own functions through ctypes release it.
        libpq = _libpq()
        cancel = libpq.PQgetCancel(conn.raw.raw.pgconn_ptr)
        if not cancel:
            raise peewee.OperationalError("libpq gave no cancel handle for the connection")
        # A thread of its own, which frees the handle itself: awaiting it is
        # bounded by the pool's cancel_grace, and the thread may outlive the wait.
        error = await asyncio.to_thread(_send_cancel, cancel)
        if error is not None:
            raise peewee.OperationalError(f"libpq could not send the cancel request: {error}")

    def session_id(self, conn: ConnectionHolder) -> int:
        return int(conn.raw.raw.get_backend_pid())

    def version_source(self, conn: ConnectionHolder) -> Any:
        return conn.raw.raw

    async def execute(self, conn: ConnectionHolder, sql: str, params: Sequence[Any]) -> FetchedCursor:
        # Making an aiopg cursor costs about a tenth of a short statement, so a
        # connection keeps one while its results are small (a cursor holds its
        # last result until the next statement).
        cursor = conn.kept
        conn.kept = None
        if cursor is None or cursor.closed:
            cursor = await conn.raw.cursor()
        try:
            try:
                await cursor.execute(sql, params or None)
            except asyncio.CancelledError:
                task = asyncio.current_task()
                if task is not None and task.cancelling():
                    raise
                # Nobody cancelled this task: aiopg turned the server's
                # cancellation of the statement into a CancelledError.
                raise extensions.QueryCanceledError(
                    "canceling statement: the server stopped it (statement_timeout, "
                    "pg_cancel_backend or query_timeout)"
                ) from None
            except ValueError as exc:
                if "NUL" not in str(exc):
                    raise
                # psycopg2 refuses a NUL character while quoting, before sending
                # anything: the connection and its transaction are unharmed.
                raise nul_in_text_error(str(exc)) from exc
            description = cursor.description
            rows = await cursor.fetchall() if description is not None else []
            result = FetchedCursor(rows, description, cursor.rowcount, cursor.lastrowid)
        except BaseException:
            cursor.close()
            raise
        if len(rows) <= KEPT_RESULT_ROWS:
            conn.kept = cursor
        else:
            cursor.close()
        return result
