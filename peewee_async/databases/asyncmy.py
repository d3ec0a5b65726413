"""The asyncmy driver (aiomysql's API over a compiled protocol parser), for the MySQL/MariaDB family.

asyncmy reads the same protocol as PyMySQL and decodes values with the same
converters, so rows come back as aiomysql gives them. Where asyncmy behaves
otherwise (its character set for "utf8", how it sends some parameters, how it
reports server warnings, how it notices a connection the server closed, how
fast it reads from the socket), the code below adapts it, so that the two
drivers behave alike.

It needs asyncmy 0.2.18 or later. Earlier versions wait for ever when a
stream that the server ended with an error is closed (0.2.17), read the rest
of an unbuffered result dropped unfinished (as a cancelled stream drops it)
with a coroutine they never await (0.2.16 and before), and before 0.2.13 read
through asyncio's streams, which the code below does not look at.
"""

from __future__ import annotations

import importlib.metadata
import re
import warnings
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import peewee

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

asyncmy = optional_import("asyncmy")
asyncmy_errors = optional_import("asyncmy.errors")
asyncmy_cursors = optional_import("asyncmy.cursors")
asyncmy_converters = optional_import("asyncmy.converters")
asyncmy_connection = optional_import("asyncmy.connection")

# peewee passes PyMySQL-style connect arguments; asyncmy has no `passwd`.
_RENAMED_PARAMS = {"passwd": "password"}

# The longest connect timeout asyncmy takes (a year); it refuses longer ones.
_MAX_CONNECT_TIMEOUT = 31536000

# The oldest asyncmy that the driver runs on (see the module's docstring).
_OLDEST = (0, 2, 18)


def _asyncmy_version() -> tuple[int, ...]:
    try:
        version = importlib.metadata.version("asyncmy")
    except importlib.metadata.PackageNotFoundError:
        return ()
    return tuple(int(part) for part in re.findall(r"\d+", version)[:3])


_SUPPORTED = asyncmy is not None and _asyncmy_version() >= _OLDEST


# Unread bytes above which a connection stops reading from its socket (see
# _FlowControlledProtocol): what asyncio's StreamReader, under aiomysql, holds at most.
_PAUSE_READING_ABOVE = 2 * 2**16


def _escape_collection(value: Any, mapping: Any = None) -> str:
    # asyncmy's escape_sequence takes tuples only, and its encoders send it
    # lists, sets and frozensets, which then fail with a TypeError; PyMySQL
    # writes each of them as a parenthesised list, as for a tuple. The
    # character set argument is only handed on to nested values, unused.
    return str(asyncmy_converters.escape_sequence(tuple(value), "", mapping))


def _refuse_dict(value: Any, mapping: Any = None) -> str:
    # asyncmy would send a dict's repr as a string; PyMySQL refuses it.
    raise TypeError("dict can not be used as parameter")


def _conversions() -> dict[Any, Any]:
    conversions: dict[Any, Any] = dict(asyncmy_converters.conversions)
    for kind in (list, set, frozenset):
        conversions[kind] = _escape_collection
    conversions[dict] = _refuse_dict
    return conversions


if _SUPPORTED:

    class _FlowControlledProtocol(asyncmy_connection._MySQLProtocol):  # type: ignore[name-defined,misc]
        """asyncmy's protocol, reading from the socket only as fast as the rows are read.

        asyncmy's protocol takes in everything the server sends, whether the
        rows are read or not: a stream whose consumer awaits something else
        between chunks would hold the whole result in memory. As asyncio's
        StreamReader does for aiomysql, it stops reading from the socket above
        a bound (the server then waits, as TCP fills up), and starts again as
        soon as the connection waits for more bytes than it has.
        """

        def buffer_updated(self, nbytes: int) -> None:
            super().buffer_updated(nbytes)
            transport = self.transport
            if transport is not None and self.length - self.pos > _PAUSE_READING_ABOVE:
                transport.pause_reading()

        def wait_for_data(self, need: int) -> Any:
            transport = self.transport
            if transport is not None:
                transport.resume_reading()
            return super().wait_for_data(need)

    class _Cursor(asyncmy_cursors.Cursor):  # type: ignore[name-defined,misc]
        """asyncmy's cursor, reporting the server's warnings as aiomysql does.

        asyncmy logs them (logger ``asyncmy``); aiomysql issues each as a
        Python ``Warning``, which applications filter, record or turn into
        errors with the ``warnings`` module.
        """

        async def _show_warnings(self, conn: Any) -> None:
            if self._result and self._result.has_next:
                return
            for warning in await conn.show_warnings() or ():
                # stacklevel 2: the driver module's call of execute() (asyncmy's
                # compiled frames are not on the stack), as aiomysql's point into its cursor.
                warnings.warn(str(warning[-1]), Warning, 2)


def _resume_reading(raw: Any) -> None:
    # Reading may have stayed paused after the end of the last answer (see
    # _FlowControlledProtocol), and not every read of asyncmy's waits through
    # wait_for_data() (its prepared statements' fast path does not): read again
    # before each statement.
    transport = raw._transport
    if transport is not None:
        transport.resume_reading()


if asyncmy is not None:

    class _Connection(RefusePlaintext, asyncmy_connection.Connection):  # type: ignore[misc,name-defined]
        """asyncmy's connection, refusing plaintext when TLS was required (see RefusePlaintext)."""

        operational_error = asyncmy_errors.OperationalError

        def _transport_now(self) -> Any:
            return self._transport


class AsyncmyDriver(MySQLDriver):
    """asyncmy connections in autocommit mode."""

    name = "asyncmy"
    extra = "asyncmy"
    errors = ErrorMap(dbapi_errors(asyncmy_errors) if asyncmy_errors is not None else {})

    def installed(self) -> bool:
        return asyncmy is not None

    def require(self) -> None:
        super().require()
        if not _SUPPORTED:
            found = ".".join(map(str, _asyncmy_version())) or "of an unknown version"
            raise peewee.ImproperlyConfigured(
                f"asyncmy {found} is installed; peewee-async needs asyncmy "
                f"{'.'.join(map(str, _OLDEST))} or later: pip install 'peewee-async[{self.extra}]'"
            )

    async def connect(self, database: AsyncDatabase, timeout: float | None, plain: bool = False) -> Any:
        params = {_RENAMED_PARAMS.get(k, k): v for k, v in connect_arguments(database, timeout).items()}
        quote_sql_mode(params)
        if str(params.get("charset", "")).lower() == "utf8":
            # PyMySQL (for aiomysql and for peewee's sync side) takes "utf8", which
            # peewee 3 passes by default, as utf8mb4; asyncmy would ask the server
            # for utf8mb3, which cannot store characters beyond the BMP (emoji).
            params["charset"] = "utf8mb4"
        if "connect_timeout" in params:
            params["connect_timeout"] = min(params["connect_timeout"], _MAX_CONNECT_TIMEOUT)
        params.setdefault("conv", _conversions())
        # What asyncmy.connect() does, with our connection class.
        raw = new_connection(_Connection, params, database)
        await raw.connect()
        if type(raw._proto) is asyncmy_connection._MySQLProtocol:
            raw._proto.__class__ = _FlowControlledProtocol
        return raw

    def close(self, conn: ConnectionHolder) -> None:
        conn.raw.close()

    def terminate(self, conn: ConnectionHolder) -> None:
        raw = conn.raw
        # close() needs the connection's (stopped) loop: close the socket directly.
        transport = raw._transport
        sock = getattr(transport, "_sock", None)
        if sock is not None:
            sock.close()
            # Mark the transport closed, or its finalizer would warn of an
            # unclosed transport and close the socket again.
            transport._sock = None
        raw._transport = None
        raw._connected = False

    def is_closed(self, conn: ConnectionHolder) -> bool:
        raw = conn.raw
        if not raw.connected:
            return True
        # asyncmy keeps `connected` set when the server closed the connection
        # (aiomysql closes its side at the read that finds the end of the
        # stream): the transport and the protocol's end of stream tell.
        transport = raw._transport
        proto = raw._proto
        return bool(
            transport is None or transport.is_closing() or proto is None or proto.eof or proto.exc is not None
        )

    def transaction_status(self, conn: ConnectionHolder) -> TransactionStatus:
        if self.is_closed(conn):
            return TransactionStatus.CLOSED
        # MySQL has no failed-transaction state: an error leaves the transaction open.
        return TransactionStatus.OPEN if conn.raw.get_transaction_status() else TransactionStatus.IDLE

    def connection_lost(self, conn: ConnectionHolder) -> bool:
        if self.is_closed(conn):
            return True
        raw = conn.raw
        proto = raw._proto
        # The server never speaks first on an idle connection, except to say
        # goodbye (an error packet, or the end of the stream). asyncmy's
        # protocol takes in what arrives whenever the loop runs: bytes left
        # unread in its buffer are such a goodbye, as is a readable socket.
        if proto.length > proto.pos:
            return True
        sock = raw._transport.get_extra_info("socket")
        return sock is None or socket_readable(sock.fileno())

    def session_id(self, conn: ConnectionHolder) -> int:
        return int(conn.raw.thread_id())

    def version_source(self, conn: ConnectionHolder) -> Any:
        return conn.raw  # its server_version is the handshake's version string, as PyMySQL's

    async def execute(self, conn: ConnectionHolder, sql: str, params: Sequence[Any]) -> FetchedCursor:
        # A connection keeps its cursor while results are small, as with
        # aiomysql: one cursor less to make and close per statement.
        raw = conn.raw
        cursor = conn.kept
        conn.kept = None
        if cursor is None:
            cursor = raw.cursor(_Cursor)  # on a closed connection, execute() raises the driver's error
        _resume_reading(raw)
        try:
            await cursor.execute(sql, params or None)
            description = cursor.description
            if description is not None:
                rows = await cursor.fetchall()
                # asyncmy reports 0 for a result set; PyMySQL reports None.
                result = FetchedCursor(rows, description, cursor.rowcount, None)
            else:
                rows = ()
                result = FetchedCursor(rows, None, cursor.rowcount, cursor.lastrowid)
        except Exception:
            await cursor.close()
            raise
        except BaseException:
            # Cancelled mid-statement. asyncmy closes the connection itself when
            # a read is cancelled; close it here too, for a cancellation at any
            # other await, so that the statement's answer is never waited for.
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
        cursor = conn.raw.cursor(asyncmy_cursors.SSCursor)
        _resume_reading(conn.raw)
        try:
            await cursor.execute(sql, params or None)
        except BaseException:
            await cursor.close()
            raise
        return UnbufferedResult(conn.raw, cursor, chunk_size)
