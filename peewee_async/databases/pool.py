"""The small protocol each driver module implements, and the shared pool logic.

A driver module (``postgres.py`` on aiopg, ``mysql.py`` on aiomysql) subclasses
:class:`Pool` and fills in the few hooks that differ between drivers: how to
open the driver's own pool, run one statement, stream the rows of one select, and
tell whether a connection is still inside a transaction. Acquire timeouts,
statement timeouts, rollback of dirty connections and cleanup under
cancellation live here, once; which connections are lent to a row stream is
kept by :mod:`.leases`.
"""

from __future__ import annotations

import asyncio
import logging
import select
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Coroutine, Sequence
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

import peewee

from ..cursor import FetchedCursor
from ..errors import ConnectionLost, PoolTimeout, QueryTimeout, translate_driver_errors
from .leases import StreamLease, StreamLeases

if TYPE_CHECKING:
    from .base import AsyncDatabase

logger = logging.getLogger("peewee.async")

T = TypeVar("T")


class RawStream(ABC):
    """The rows of one select, read from the server a chunk at a time.

    A driver module returns one from :meth:`Pool._open_stream_raw`. It keeps its
    connection busy until :meth:`close` (or the end of the rows) has left the
    connection ready for the next statement.
    """

    #: The DB-API description of the result; known once the first chunk was fetched.
    description: Sequence[Sequence[Any]] | None = None

    @abstractmethod
    async def fetch(self) -> Sequence[Sequence[Any]]:
        """The next rows (at most the chunk size); empty once every row was read."""

    @abstractmethod
    async def close(self) -> None:
        """Leave the connection ready for the next statement, even if rows are left unread."""


class Pool(ABC):
    """Connections of one database on one event loop."""

    #: The statement that opens a transaction on this driver.
    begin_statement: ClassVar[str] = "BEGIN"

    #: Seconds a timed-out statement's connection may take, after the server was
    #: told to stop the statement, to answer; after that the connection is closed.
    cancel_grace: float = 2.0

    def __init__(
        self,
        database: AsyncDatabase,
        min_size: int,
        max_size: int,
        acquire_timeout: float | None,
    ) -> None:
        self.database = database
        self.min_size = min_size
        self.max_size = max_size
        self.acquire_timeout = acquire_timeout
        self.loop = asyncio.get_running_loop()
        self._cleanups: set[asyncio.Task[None]] = set()
        # Connections whose statement was cut off (cancelled mid-flight): the
        # protocol state is unknown, so they are closed, never reused.
        self._interrupted: set[Any] = set()
        # Connections lent to a row stream (peewee_async.streaming) until it ends.
        self.streams = StreamLeases(database)
        # Connections whose statement the server was told to stop (query_timeout).
        # A stream's statement outlives the step that timed out: the stop may
        # show only in a later step's error, which then is a QueryTimeout too.
        self._stop_sent: set[Any] = set()

    # -- the hooks a driver fills in -------------------------------------

    @abstractmethod
    async def open(self, timeout: float | None) -> None:
        """Create the driver's pool; connect ``min_size`` connections."""

    def driver_connection(self, conn: Any) -> Any:
        """The DB-API connection under ``conn``, as peewee's sync code knows it."""
        return conn

    @abstractmethod
    async def _acquire_raw(self) -> Any:
        """Take a connection from the driver's pool, waiting for one."""

    @abstractmethod
    def _release_raw(self, conn: Any) -> None:
        """Give an idle connection back to the driver's pool."""

    @abstractmethod
    def _close_raw(self, conn: Any) -> None:
        """Close a connection that cannot be reused."""

    @abstractmethod
    def is_closed(self, conn: Any) -> bool:
        """Whether ``conn`` is known to be closed (by us, the driver or the server)."""

    @abstractmethod
    def in_transaction(self, conn: Any) -> bool:
        """Whether the server sees ``conn`` inside a transaction block."""

    @abstractmethod
    async def _execute_raw(self, conn: Any, sql: str, params: Sequence[Any]) -> FetchedCursor:
        """Run one statement on ``conn`` and read its whole result."""

    @abstractmethod
    async def _cancel_on_server(self, conn: Any) -> None:
        """Tell the server to stop the statement running on ``conn`` (from another connection)."""

    def connection_lost(self, conn: Any) -> bool:
        """Whether an idle ``conn`` is known dead, found without a round trip to the server."""
        return self.is_closed(conn)

    @abstractmethod
    async def _open_stream_raw(
        self, conn: Any, sql: str, params: Sequence[Any], chunk_size: int
    ) -> RawStream:
        """Start streaming the rows of one select on ``conn``, ``chunk_size`` rows per fetch.

        Outside a transaction the server may need one for the time of the
        stream (PostgreSQL's cursors do); the stream then opens and ends it itself.
        """

    @abstractmethod
    async def _close_all(self, timeout: float | None) -> None:
        """Close the driver's pool and every connection in it."""

    @abstractmethod
    def _terminate_raw(self) -> None:
        """Close every connection at once, without awaiting (their loop may be gone)."""

    @property
    @abstractmethod
    def size(self) -> int:
        """Connections open now, in use or free."""

    @property
    @abstractmethod
    def freesize(self) -> int:
        """Connections open and free now."""

    # -- shared behaviour ------------------------------------------------

    @property
    def used(self) -> int:
        """Connections handed out and not yet given back."""
        return self.size - self.freesize

    def _free_now(self) -> bool:
        """Whether the driver hands over a connection without waiting for one (then no timer is set)."""
        return False

    async def acquire(self) -> Any:
        """A live connection of our own, or :class:`PoolTimeout` after ``acquire_timeout``.

        An idle connection that the server closed (killed, restarted, timed
        out) is noticed here, without a round trip, and replaced.
        """
        if self.streams:
            self.streams.check_not_all_held(asyncio.current_task(), self.max_size)
        try:
            while True:
                conn = await self._acquire_one()
                if not self.connection_lost(conn):
                    return conn
                logger.info("Replacing a connection of %s that the server closed", self.database.describe())
                self._discard(conn)
        except TimeoutError:
            raise self._timeout_error() from None

    async def _acquire_one(self) -> Any:
        could_open = False
        try:
            if self._free_now():
                # Arming the timeout costs more than the rest of the acquire: skip
                # it when nothing will be waited for.
                with translate_driver_errors:
                    return await self._acquire_raw()
            could_open = self.size < self.max_size
            # asyncio.timeout adds no task in between: once the driver has
            # handed us a connection, no cancellation can lose it.
            async with asyncio.timeout(self.acquire_timeout):
                with translate_driver_errors:
                    return await self._acquire_raw()
        except BaseException as exc:
            # A waiter the driver's pool had just woken for a freed connection,
            # cancelled (or timed out) before it ran, swallows that wake-up
            # (asyncio.Condition before Python 3.13): pass it on to the next
            # waiter, or it would sleep beside a free connection.
            self._wake_next_waiter()
            if isinstance(exc, peewee.OperationalError):
                message = f"Could not connect to {self.database.describe()}: {driver_message(exc)}"
                raise type(exc)(message) from exc
            if isinstance(exc, TimeoutError) and could_open and self.size < self.max_size:
                # The pool had room for a new connection all along: the wait was
                # for one to open (the drivers' pools open them inside acquire).
                raise self._connect_timeout_error() from None
            raise

    def _timeout_error(self) -> PoolTimeout:
        return PoolTimeout(
            f"No connection of {self.database.describe()} became free within "
            f"acquire_timeout={self.acquire_timeout}s: all max_connections={self.max_size} "
            "are in use. Raise max_connections, shorten transactions, or raise "
            "acquire_timeout. A task spawned inside a transaction needs a connection of "
            "its own, so with every connection held it waits until this timeout."
        )

    def _connect_timeout_error(self) -> peewee.OperationalError:
        return peewee.OperationalError(
            f"Could not connect to {self.database.describe()} within "
            f"acquire_timeout={self.acquire_timeout}s: a new connection was being opened "
            f"({self.used} of max_connections={self.max_size} in use) and the server did not "
            "answer. Check that the server is up and the network between reaches it."
        )

    def _wake_next_waiter(self) -> None:  # noqa: B027 - an optional hook
        """Wake a task waiting in ``_acquire_raw`` if a connection is free or may open; a driver hook."""

    async def execute(
        self, conn: Any, sql: str, params: Sequence[Any], timeout: float | None = None
    ) -> FetchedCursor:
        """Run one statement on ``conn``; with ``timeout``, stop it on the server after that long."""
        if conn in self._interrupted:
            # Only a transaction can come back to a connection whose statement
            # was cut off; its protocol state is unknown, so nothing more is sent.
            raise ConnectionLost(
                f"The connection of this transaction on {self.database.describe()} was lost "
                "earlier: a statement on it was cut off before its answer came, so the "
                "connection was closed, which rolled the transaction back. Leave the "
                "`async with` block and run the whole transaction again."
            )
        if self.streams:
            await self.streams.wait_closed(conn)  # refuses while a stream is open on it
        try:
            return await self._guarded(conn, self._execute_raw(conn, sql, params), timeout, sql)
        finally:
            self._stop_sent.discard(conn)

    async def _run_timed(self, conn: Any, step: Awaitable[T], timeout: float) -> T:
        # At the deadline the server is asked, from another connection, to stop
        # the statement; the statement's own answer (an error, usually) still
        # comes back here, so the connection stays usable. Only when no answer
        # comes within cancel_grace is the await cut off.
        cancelling: asyncio.Task[None] | None = None

        def cancel() -> None:
            nonlocal cancelling
            self._stop_sent.add(conn)
            cancelling = self.loop.create_task(self._cancel_with_grace(conn))

        deadline = self.loop.call_later(timeout, cancel)
        try:
            async with asyncio.timeout(timeout + self.cancel_grace):
                result = await step
        except TimeoutError:
            raise _Unanswered() from None
        except BaseException as exc:
            task = asyncio.current_task()
            if cancelling is None or (task is not None and task.cancelling()):
                raise
            # Whatever the statement raised once it was told to stop (a driver
            # error, or the CancelledError aiopg makes of a cancelled statement).
            raise _TimedOut() from exc
        finally:
            deadline.cancel()
            if cancelling is not None:
                # Never give the connection back while a stop request for it is
                # on its way: it would stop the connection's next statement.
                await asyncio.shield(cancelling)
        return result

    async def _cancel_with_grace(self, conn: Any) -> None:
        try:
            async with asyncio.timeout(self.cancel_grace):
                await self._cancel_on_server(conn)
        except Exception:
            logger.warning(
                "Could not stop a timed-out statement on %s", self.database.describe(), exc_info=True
            )

    # -- row streams -----------------------------------------------------

    def end_lease(self, conn: Any, lease: StreamLease) -> None:
        """The stream is over: ``conn`` takes statements again."""
        if self.streams.end(conn, lease):
            self._stop_sent.discard(conn)

    # A stream's steps are bounded by the database's query_timeout as statements
    # are: without it a network gone silent mid-loop would hang the loop.

    async def open_stream(self, conn: Any, sql: str, params: Sequence[Any], chunk_size: int) -> RawStream:
        step = self._open_stream_raw(conn, sql, params, chunk_size)
        return await self._guarded(conn, step, self.database.query_timeout, sql)

    async def fetch_stream(self, conn: Any, stream: RawStream) -> Sequence[Sequence[Any]]:
        return await self._guarded(
            conn, stream.fetch(), self.database.query_timeout, "(iterate() reading rows)"
        )

    async def close_stream(self, conn: Any, stream: RawStream) -> None:
        await self._guarded(conn, stream.close(), self.database.query_timeout, "(iterate() closing its rows)")

    async def _guarded(self, conn: Any, step: Awaitable[T], timeout: float | None, sql: str) -> T:
        """Await ``step``, one exchange with the server on ``conn``; with ``timeout``, stop it then.

        A step cut off by a cancellation leaves the protocol in an unknown state,
        so the connection is then closed, never reused.
        """
        self._interrupted.add(conn)
        try:
            with translate_driver_errors:
                if timeout is None:
                    result = await step
                else:
                    result = await self._run_timed(conn, step, timeout)
        except _Unanswered:
            # The statement's answer never came: the connection stays marked
            # interrupted, so it is closed on release and never reused.
            raise QueryTimeout(
                f"The statement ran longer than query_timeout={timeout}s on "
                f"{self.database.describe()}, and the server did not answer the request to stop "
                f"it within {self.cancel_grace}s (is the network down?). Its connection was "
                f"closed; whether the statement ran is unknown. Statement: {_shorten(sql)}"
            ) from None
        except _TimedOut as timed_out:
            self._interrupted.discard(conn)
            raise self._stopped_error(timeout, sql) from timed_out.__cause__
        except Exception as exc:
            # The server answered with an error: the connection is in a known state.
            self._interrupted.discard(conn)
            if conn in self._stop_sent and isinstance(exc, peewee.OperationalError):
                # A stream stopped by an earlier step's query_timeout (MySQL and
                # SQLite end its statement with an error at the next read).
                raise self._stopped_error(timeout, sql) from exc
            raise
        except BaseException:
            # Cut off (cancelled) before the answer was read. Close at once rather
            # than at release: inside a transaction the server then rolls back and
            # frees its locks now, not when the task gets round to leaving the block.
            self._close_quietly(conn)
            raise
        self._interrupted.discard(conn)
        return result

    def _stopped_error(self, timeout: float | None, sql: str) -> QueryTimeout:
        return QueryTimeout(
            f"The statement ran longer than query_timeout={timeout}s on "
            f"{self.database.describe()} and was stopped on the server. Raise query_timeout, "
            f"or make the statement faster. Statement: {_shorten(sql)}"
        )

    def is_interrupted(self, conn: Any) -> bool:
        """Whether a statement on ``conn`` was cut off before the server's answer was read."""
        return conn in self._interrupted

    def release(self, conn: Any) -> None:
        """Give ``conn`` back; a connection left inside a transaction is rolled back first.

        Never awaits on the clean path, so a cancelled task cannot skip it; the
        rollback of a dirty connection runs in a task of its own that a
        cancellation of the caller does not reach.
        """
        self._stop_sent.discard(conn)
        lease = self.streams.of_transaction(conn)
        if lease is not None:
            # A transaction's connection given back while a stream still closes on
            # it (the transaction's end was cancelled): give it back after that.
            if lease.closing is not None:
                lease.closing.add_done_callback(lambda _: self.release(conn))
                return
            self.streams.revoke(conn, lease, "its connection was given back to the pool")
            self._interrupted.add(conn)
        if conn in self._interrupted:
            self._interrupted.discard(conn)
            self._discard(conn)
            return
        try:
            closed = self.is_closed(conn)
            dirty = not closed and self.in_transaction(conn)
        except Exception:  # a broken connection cannot tell: do not reuse it
            self._discard(conn)
            return
        if not dirty:  # the driver's pool drops a closed connection itself
            self._release_raw(conn)
            return
        task = self.loop.create_task(self._rollback_and_release(conn))
        self._cleanups.add(task)
        task.add_done_callback(self._cleanups.discard)

    async def settle(self) -> None:
        """Wait until the rollbacks of connections given back dirty have finished."""
        while self._cleanups:
            await asyncio.gather(*list(self._cleanups), return_exceptions=True)

    async def _rollback_and_release(self, conn: Any) -> None:
        try:
            await self._execute_raw(conn, "ROLLBACK", ())
        except BaseException:
            logger.warning("Rollback of a returned connection failed; closing it", exc_info=True)
            self._discard(conn)
            return
        self._release_raw(conn)

    def _discard(self, conn: Any) -> None:
        try:
            self._close_quietly(conn)
        finally:
            self._release_raw(conn)
            # The drivers' pools wake a waiter when a connection comes back
            # free, not when one is dropped: without this a task waiting for a
            # connection would wait out acquire_timeout, though one could open.
            self._wake_next_waiter()

    def _close_quietly(self, conn: Any) -> None:
        try:
            if not self.is_closed(conn):
                self._close_raw(conn)
        except Exception:
            logger.debug("Closing a broken connection failed", exc_info=True)

    def _in_background(self, work: Coroutine[Any, Any, None]) -> None:
        """Run ``work`` in a task that :meth:`settle` (and so :meth:`close`) waits for."""
        task = self.loop.create_task(work)
        self._cleanups.add(task)
        task.add_done_callback(self._cleanups.discard)

    def abandon(self) -> None:
        """Close the sockets of a pool whose event loop has stopped; nothing is awaited."""
        try:
            self._terminate_raw()
        except Exception:
            logger.debug("Closing the connections of a stopped event loop failed", exc_info=True)

    async def close(self, timeout: float | None) -> None:
        await self.settle()
        await self._close_all(timeout)


def idle_without_waiting(driver_pool: Any) -> bool:
    """Whether an aiopg/aiomysql pool's acquire takes an idle connection without waiting.

    It does when a connection is idle and no other acquire holds or waits for
    the pool's lock; at worst it replaces an idle connection found dead, which
    connect_timeout bounds.
    """
    if driver_pool is None or not driver_pool._free:
        return False
    condition = driver_pool._cond
    return not condition.locked() and not condition._lock._waiters


class _TimedOut(Exception):
    """The statement ended with an error after the server was told to stop it."""


class _Unanswered(Exception):
    """The statement gave no answer, even after the server was told to stop it."""


def driver_message(exc: BaseException) -> str:
    """The driver's own message in a peewee exception made by ``translate_driver_errors``."""
    inner = getattr(exc, "orig", None) or exc
    text = str(inner).strip()
    cause = inner.__cause__  # e.g. the OSError under PyMySQL's "Can't connect to MySQL server"
    if cause is not None and str(cause) not in text:
        text += f" ({cause})"
    return text


def _shorten(sql: str, limit: int = 200) -> str:
    return sql if len(sql) <= limit else sql[: limit - 3] + "..."


def socket_readable(fd: int) -> bool:
    """Whether ``fd`` has data or an end-of-file waiting (an idle connection should have neither)."""
    if hasattr(select, "poll"):
        poller = select.poll()
        poller.register(fd, select.POLLIN)
        return bool(poller.poll(0))
    readable, _, _ = select.select([fd], [], [], 0)
    return bool(readable)
