"""The connections of one database on one event loop, over any driver.

One pool for every driver: a free list and a semaphore of ``max_size`` slots,
with each connection opened, run and closed through the driver contract
(:mod:`.driver`). Acquire timeouts, statement timeouts, the rollback of
connections given back inside a transaction and cleanup under cancellation
live here, once. We do not use the drivers' own pools: each has its own
rules for timeouts, dead connections and dirty returns, and reaching into
them for what we need (is a connection free without waiting? wake the next
waiter) meant reading their private attributes. Which connections are lent
to a row stream is kept by :mod:`.leases`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Coroutine, Sequence
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

import peewee

from ..cursor import FetchedCursor
from ..errors import ConnectionLost, PoolTimeout, QueryTimeout
from .driver import ConnectionHolder, Driver, RawStream, TransactionStatus, driver_message
from .leases import StreamLease, StreamLeases
from .replicas import mark_unreachable

if TYPE_CHECKING:
    from .base import AsyncDatabase

logger = logging.getLogger("peewee.async")

T = TypeVar("T")

_IDLE = TransactionStatus.IDLE
_CLOSED = TransactionStatus.CLOSED


class ConnectionSource(Protocol):
    """What statements and transactions use of the place a connection came from.

    :class:`Pool` is one; the shared transaction of
    :func:`peewee_async.testing.rollback` is another, which every task's
    statements go through while it is active.
    """

    loop: asyncio.AbstractEventLoop
    begin_statement: str

    @property
    def streams(self) -> StreamLeases:
        """The connections lent to row streams."""

    def execute(
        self, conn: ConnectionHolder | None, sql: str, params: Sequence[Any], timeout: float | None = None
    ) -> Awaitable[FetchedCursor]:
        """Run one statement on ``conn``, a transaction's, or with ``None`` on one lent for it."""

    async def acquire(self) -> ConnectionHolder:
        """A connection for work that spans several statements; give it back with :meth:`release`."""

    def release(self, conn: ConnectionHolder) -> None:
        """Give back a connection this source handed out."""

    def is_closed(self, conn: ConnectionHolder) -> bool:
        """Whether ``conn`` is known to be closed."""

    def connection_lost(self, conn: ConnectionHolder) -> bool:
        """Whether an idle ``conn`` is known dead, found without a round trip."""

    def is_interrupted(self, conn: ConnectionHolder) -> bool:
        """Whether a statement on ``conn`` was cut off before its answer was read."""

    async def open_stream(
        self, conn: ConnectionHolder, sql: str, params: Sequence[Any], chunk_size: int
    ) -> RawStream:
        """Start streaming the rows of one select on ``conn``."""

    async def fetch_stream(self, conn: ConnectionHolder, stream: RawStream) -> Sequence[Sequence[Any]]:
        """The next chunk of a stream's rows."""

    async def close_stream(self, conn: ConnectionHolder, stream: RawStream) -> None:
        """Leave ``conn`` ready for its next statement."""

    def end_lease(self, conn: ConnectionHolder, lease: StreamLease) -> None:
        """The stream on ``conn`` is over."""

    def in_background(self, work: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        """Run ``work`` in a task that closing the source waits for."""


class Pool:
    """Up to ``max_size`` connections of one database, opened on the running event loop."""

    #: Seconds a timed-out statement's connection may take, after the server was
    #: told to stop the statement, to answer; after that the connection is closed.
    cancel_grace: float = 2.0

    def __init__(
        self,
        database: AsyncDatabase,
        driver: Driver,
        min_size: int,
        max_size: int,
        acquire_timeout: float | None,
    ) -> None:
        self.database = database
        self.driver = driver
        self.min_size = min_size
        self.max_size = max_size
        self.acquire_timeout = acquire_timeout
        self.begin_statement = driver.begin_statement
        self.loop = asyncio.get_running_loop()
        self._cleanups: set[asyncio.Task[Any]] = set()
        self._free: list[ConnectionHolder] = []
        # Every open connection, free or handed out (to close them all at the end).
        self._open: set[ConnectionHolder] = set()
        # A slot is held by each connection handed out, and by each being opened.
        self._slots = asyncio.Semaphore(max_size)
        # The tasks waiting in acquire() now, and the one timer that ends the
        # waits whose acquire_timeout has run out (see _start_wait).
        self._waits: set[_Wait] = set()
        self._expiry: asyncio.TimerHandle | None = None
        self._expiry_due = 0.0
        self._opening = 0
        self._closing = False
        self._all_back = asyncio.Event()
        # Connections lent to a row stream (peewee_async.streaming) until it ends.
        self.streams = StreamLeases(database)

    # -- size --------------------------------------------------------------

    @property
    def size(self) -> int:
        """Connections open or being opened now, in use or free."""
        return len(self._open) + self._opening

    @property
    def freesize(self) -> int:
        """Connections open and free now."""
        return len(self._free)

    @property
    def used(self) -> int:
        """Connections handed out and not yet given back."""
        return self.size - self.freesize

    def connections(self) -> list[ConnectionHolder]:
        """Every open connection, free or handed out."""
        return list(self._open)

    # -- opening and acquiring ---------------------------------------------

    async def open(self) -> None:
        """Connect ``min_size`` connections."""
        self.driver.require()
        for _ in range(self.min_size):
            self._free.append(await self._connect())

    async def _connect(self) -> ConnectionHolder:
        self._opening += 1
        try:
            try:
                raw = await self.driver.connect(self.database, self.database.connect_timeout)
            except Exception as exc:
                translated = self.driver.errors.translate(exc)
                if isinstance(exc, TypeError) or isinstance(translated, peewee.ProgrammingError):
                    # A keyword the driver does not take (psycopg2 reports it as a
                    # ProgrammingError, "invalid connection option").
                    raise self.database.options_error(exc) from exc
                if translated is None:
                    raise
                raise translated.with_traceback(exc.__traceback__)  # noqa: B904 - as peewee chains them
        finally:
            self._opening -= 1
        conn = ConnectionHolder(raw)
        self._open.add(conn)
        return conn

    async def acquire(self) -> ConnectionHolder:
        """A live connection of our own, or :class:`PoolTimeout` after ``acquire_timeout``.

        An idle connection that the server closed (killed, restarted, timed
        out) is noticed here, without a round trip, and replaced.
        """
        if self.streams:
            self.streams.check_not_all_held(asyncio.current_task(), self.max_size)
        while True:
            if self._free and not self._slots.locked() and not self._closing:
                # Nothing will be waited for: no timeout to arm, no coroutine more.
                await self._slots.acquire()
                conn = self._free.pop()
            else:
                conn = await self._acquire_waiting()
            if not self.driver.connection_lost(conn):
                return conn
            logger.info("Replacing a connection of %s that the server closed", self.database.describe())
            self._discard(conn)

    async def _acquire_waiting(self) -> ConnectionHolder:
        if self._closing:
            raise peewee.InterfaceError(
                f"The pool of {self.database.describe()} is closing; no connections are handed out."
            )
        slots = self._slots
        connecting = False
        wait = self._start_wait()
        try:
            await slots.acquire()
            try:
                if self._free:
                    return self._free.pop()
                connecting = True
                return await self._connect()
            except BaseException:
                slots.release()
                raise
        except BaseException as exc:
            # A driver's own connect timeout (asyncpg's) counts as the pool's.
            expired = wait is not None and wait.expired and wait.timed_out(exc)
            if expired or isinstance(exc, TimeoutError):
                if connecting:
                    # The pool had room for a new connection: the wait was for it to open.
                    raise mark_unreachable(self._connect_timeout_error()) from None
                raise self._timeout_error() from None
            if connecting and isinstance(exc, peewee.OperationalError):
                raise mark_unreachable(type(exc)(self.database.connect_error_message(exc))) from exc
            raise
        finally:
            if wait is not None:
                self._waits.discard(wait)

    # -- the acquire timeout -----------------------------------------------
    #
    # Under load most acquires wait, and an ``asyncio.timeout`` per wait (a
    # timer armed, rescheduled and cancelled) cost more than the rest of the
    # wait. Every wait of a pool has the same timeout, so one timer does for
    # all of them: it fires at the earliest deadline of the tasks waiting then,
    # cancels those whose time is up, as ``asyncio.timeout`` would, and is armed
    # again for the next earliest. A wait that ends in time only leaves the set.
    # The cancellation comes out of the same ``await`` as ``asyncio.timeout``'s
    # would, so a slot given to a task cancelled meanwhile goes to the next one
    # (``asyncio.Semaphore`` sees to that) and no connection is lost.

    def _start_wait(self) -> _Wait | None:
        """Note that the running task waits for a connection, until ``acquire_timeout`` from now."""
        if self.acquire_timeout is None:
            return None
        task = asyncio.current_task()
        if task is None:  # pragma: no cover - acquire() always runs in a task
            raise RuntimeError("acquire() must run in an asyncio task")
        wait = _Wait(task, self.loop.time() + self.acquire_timeout)
        self._waits.add(wait)
        if self._expiry is None or wait.deadline < self._expiry_due:
            self._arm_expiry(wait.deadline)
        return wait

    def _arm_expiry(self, due: float) -> None:
        if self._expiry is not None:
            self._expiry.cancel()
        self._expiry_due = due
        self._expiry = self.loop.call_at(due, self._expire, due)

    def _expire(self, due: float) -> None:
        """End the waits whose deadline is ``due`` or earlier; arm the timer for the next one."""
        self._expiry = None
        for wait in [wait for wait in self._waits if wait.deadline <= due]:
            self._waits.discard(wait)
            wait.expire()
        if self._waits:
            self._arm_expiry(min(wait.deadline for wait in self._waits))

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

    # -- what the driver knows of a connection -----------------------------

    def is_closed(self, conn: ConnectionHolder) -> bool:
        """Whether ``conn`` is known to be closed (by us, the driver or the server)."""
        return conn.closed or self.driver.is_closed(conn)

    def connection_lost(self, conn: ConnectionHolder) -> bool:
        """Whether an idle ``conn`` is known dead, found without a round trip to the server."""
        return conn.closed or self.driver.connection_lost(conn)

    def in_transaction(self, conn: ConnectionHolder) -> bool:
        """Whether the server sees ``conn`` inside a transaction block."""
        return self.driver.transaction_status(conn) not in (_IDLE, _CLOSED)

    def is_interrupted(self, conn: ConnectionHolder) -> bool:
        """Whether a statement on ``conn`` was cut off before the server's answer was read."""
        return conn.interrupted

    # -- statements ------------------------------------------------------

    def execute(
        self, conn: ConnectionHolder | None, sql: str, params: Sequence[Any], timeout: float | None = None
    ) -> Awaitable[FetchedCursor]:
        """Run one statement; with ``timeout``, stop it on the server after that long.

        ``conn`` is a transaction's connection; ``None`` runs the statement on
        a connection borrowed for it alone. Not a coroutine itself: the caller
        awaits the driver's statement with one coroutine of ours in between.
        """
        if conn is not None:
            self._check_transaction_connection(conn, sql)
            if self.streams and conn in self.streams:
                return self._execute_after_stream(conn, sql, params, timeout)
        return self._guarded(conn, None, timeout, sql, params)

    async def _execute_after_stream(
        self, conn: ConnectionHolder, sql: str, params: Sequence[Any], timeout: float | None
    ) -> FetchedCursor:
        await self.streams.wait_closed(conn)  # refuses while a stream is open on it
        result: FetchedCursor = await self._guarded(conn, None, timeout, sql, params)
        return result

    def _check_transaction_connection(self, conn: ConnectionHolder, sql: str) -> None:
        """Raise :class:`ConnectionLost` if the transaction's connection is known lost."""
        if conn.interrupted:
            # Only a transaction can come back to a connection whose statement
            # was cut off; its protocol state is unknown, so nothing more is sent.
            raise ConnectionLost(
                f"The connection of this transaction on {self.database.describe()} was lost "
                "earlier: a statement on it was cut off before its answer came, so the "
                "connection was closed, which rolled the transaction back. Leave the "
                "`async with` block and run the whole transaction again."
            )
        # Before COMMIT, look (without a round trip) whether the server already
        # closed the connection: then the outcome is known, not "may or may not".
        if self.is_closed(conn) or (sql[:6].upper() == "COMMIT" and self.driver.connection_lost(conn)):
            # Never continue a transaction on another connection: its work so
            # far is gone with the old one.
            raise ConnectionLost(
                f"The connection of this transaction on {self.database.describe()} was lost "
                "earlier; the server rolled the transaction back. Leave the `async with` block "
                "and run the whole transaction again."
            )

    async def _guarded(
        self,
        conn: ConnectionHolder | None,
        step: Awaitable[Any] | None,
        timeout: float | None,
        sql: str,
        params: Sequence[Any] = (),
    ) -> Any:
        """Run ``sql`` (or await ``step``, a stream's exchange) on ``conn``; with ``timeout``, stop it then.

        ``conn`` ``None``: on a connection borrowed for the statement and given
        back after. A step cut off by a cancellation leaves the protocol in an
        unknown state, so the connection is then closed, never reused.
        """
        borrowed = conn is None
        if conn is None:
            conn = await self.acquire()
        try:
            if step is None:
                conn.stop_sent = False  # a stop asked for an earlier statement is no longer news
                step = self.driver.execute(conn, sql, params)
                statement = True
            else:
                statement = False
            conn.interrupted = True
            try:
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
                conn.interrupted = False
                raise self._stopped_error(timeout, sql) from timed_out.__cause__
            except Exception as exc:
                # The server answered with an error: the connection is in a known state.
                conn.interrupted = False
                translated = self.driver.errors.translate(exc)
                if conn.stop_sent and isinstance(translated or exc, peewee.OperationalError):
                    # A stream stopped by an earlier step's query_timeout (MySQL and
                    # SQLite end its statement with an error at the next read).
                    raise self._stopped_error(timeout, sql) from exc
                error = exc if translated is None else translated
                if statement:
                    lost = self._connection_lost_error(conn, sql, error, borrowed)
                    if lost is not None:
                        raise lost from error
                if translated is None:
                    raise
                raise translated.with_traceback(exc.__traceback__)  # noqa: B904 - as peewee chains them
            except BaseException:
                # Cut off (cancelled) before the answer was read: the connection is
                # never used again. Stopped and closed now rather than at release:
                # inside a transaction the server then rolls back and frees its locks
                # now, not when the task gets round to leaving the block.
                self._stop_cut_off(conn)
                raise
            conn.interrupted = False
            return result
        finally:
            if borrowed:
                self.release(conn)

    def _connection_lost_error(
        self, conn: ConnectionHolder, sql: str, exc: BaseException, borrowed: bool
    ) -> ConnectionLost | None:
        """The :class:`ConnectionLost` that ``exc`` from a statement on ``conn`` stands for, if any."""
        if not isinstance(exc, peewee.OperationalError | peewee.InterfaceError):
            return None
        if isinstance(exc, ConnectionLost | QueryTimeout) or not self.is_closed(conn):
            return None
        if borrowed:
            what = "the statement may or may not have run. The next query takes another connection"
        elif sql[:6].upper() == "COMMIT":
            what = (
                "it broke during COMMIT, so the transaction may or may not have been committed. "
                "Check the data before running the transaction again"
            )
        else:
            what = (
                "the server rolled the transaction back, nothing of it was committed. Leave "
                "the `async with` block and run the whole transaction again"
            )
        return ConnectionLost(
            f"The connection to {self.database.describe()} was lost ({driver_message(exc)}): {what}."
        )

    async def _run_timed(self, conn: ConnectionHolder, step: Awaitable[T], timeout: float) -> T:
        # At the deadline the server is asked, from another connection, to stop
        # the statement; the statement's own answer (an error, usually) still
        # comes back here, so the connection stays usable. Only when no answer
        # comes within cancel_grace is the await cut off.
        cancelling: asyncio.Task[None] | None = None

        def cancel() -> None:
            nonlocal cancelling
            conn.stop_sent = True
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
            # error, or the CancelledError a driver makes of a cancelled statement).
            raise _TimedOut() from exc
        finally:
            deadline.cancel()
            if cancelling is not None:
                # Never give the connection back while a stop request for it is
                # on its way: it would stop the connection's next statement.
                await asyncio.shield(cancelling)
        return result

    async def _cancel_with_grace(
        self, conn: ConnectionHolder, what: str = "a timed-out statement", level: int = logging.WARNING
    ) -> None:
        try:
            async with asyncio.timeout(self.cancel_grace):
                await self.driver.cancel(self.database, conn, self.cancel_grace)
        except Exception:
            logger.log(level, "Could not stop %s on %s", what, self.database.describe(), exc_info=True)

    def _stop_cut_off(self, conn: ConnectionHolder) -> None:
        """Stop the statement a cancellation cut off on ``conn``, then close ``conn``, in a task of its own.

        Closing alone would not stop it: a server notices a closed client only
        when it next writes to it, once the statement is over, so a cancelled
        query would hold its session, and inside a transaction its locks, for
        as long as it runs. The stop request goes out before the close, so
        that the server session it names is still the statement's.
        """
        if conn.closed:
            return
        if getattr(self.database, "transaction_pooling", False):
            # Behind PgBouncer the stop would be a cancel request, and PgBouncer
            # before 1.20 can crash on one whose client leaves early (its issue
            # 801): the statement is left to end as it would have, as before.
            self._close_quietly(conn)
            return
        # Marked closed now, so that nothing closes it before the stop is out
        # (release, the database's close) and nothing hands it out again.
        conn.closed = True
        self.in_background(self._stop_then_close(conn))

    async def _stop_then_close(self, conn: ConnectionHolder) -> None:
        try:
            # At DEBUG: a stop that fails found the server out of reach within
            # cancel_grace, or the statement ended meanwhile; the close is what is left.
            await self._cancel_with_grace(conn, "a statement cut off by a cancellation", logging.DEBUG)
        finally:
            self._close_now(conn)

    def _stopped_error(self, timeout: float | None, sql: str) -> QueryTimeout:
        return QueryTimeout(
            f"The statement ran longer than query_timeout={timeout}s on "
            f"{self.database.describe()} and was stopped on the server. Raise query_timeout, "
            f"or make the statement faster. Statement: {_shorten(sql)}"
        )

    # -- row streams -----------------------------------------------------
    # A stream's steps are bounded by the database's query_timeout as statements
    # are: without it a network gone silent mid-loop would hang the loop.

    async def open_stream(
        self, conn: ConnectionHolder, sql: str, params: Sequence[Any], chunk_size: int
    ) -> RawStream:
        conn.stop_sent = False
        step = self.driver.open_stream(conn, sql, params, chunk_size)
        stream: RawStream = await self._guarded(conn, step, self.database.query_timeout, sql)
        return stream

    async def fetch_stream(self, conn: ConnectionHolder, stream: RawStream) -> Sequence[Sequence[Any]]:
        rows: Sequence[Sequence[Any]] = await self._guarded(
            conn, stream.fetch(), self.database.query_timeout, "(iterate() reading rows)"
        )
        return rows

    async def close_stream(self, conn: ConnectionHolder, stream: RawStream) -> None:
        await self._guarded(conn, stream.close(), self.database.query_timeout, "(iterate() closing its rows)")

    def end_lease(self, conn: ConnectionHolder, lease: StreamLease) -> None:
        """The stream is over: ``conn`` takes statements again."""
        if self.streams.end(conn, lease):
            conn.stop_sent = False

    # -- giving back -------------------------------------------------------

    def release(self, conn: ConnectionHolder) -> None:
        """Give ``conn`` back; a connection left inside a transaction is rolled back first.

        Never awaits on the clean path, so a cancelled task cannot skip it; the
        rollback of a dirty connection (the driver's :meth:`~.Driver.reset`)
        runs in a task of its own that a cancellation of the caller does not reach.
        """
        conn.stop_sent = False
        if self.streams:
            lease = self.streams.of_transaction(conn)
            if lease is not None:
                # A transaction's connection given back while a stream still closes
                # on it (the transaction's end was cancelled): give it back after that.
                if lease.closing is not None:
                    lease.closing.add_done_callback(lambda _: self.release(conn))
                    return
                self.streams.revoke(conn, lease, "its connection was given back to the pool")
                conn.interrupted = True
        if conn.interrupted:
            self._discard(conn)
            return
        try:
            status = _CLOSED if conn.closed else self.driver.transaction_status(conn)
        except Exception:  # a broken connection cannot tell: do not reuse it
            self._discard(conn)
            return
        if status is _IDLE and not self._closing:
            self._free.append(conn)
            self._slots.release()
        elif status is _IDLE:
            self._discard(conn)
        elif status is _CLOSED:
            self._drop(conn)
        else:
            self.in_background(self._reset_and_put_back(conn))

    async def _reset_and_put_back(self, conn: ConnectionHolder) -> None:
        try:
            await self.driver.reset(conn)
        except BaseException:
            logger.warning("Rollback of a returned connection failed; closing it", exc_info=True)
            self._discard(conn)
            return
        self._put_back(conn)

    def _put_back(self, conn: ConnectionHolder) -> None:
        if self._closing:
            self._discard(conn)
            return
        self._free.append(conn)
        self._slots.release()

    def _discard(self, conn: ConnectionHolder) -> None:
        """Close a handed-out connection that cannot be reused, and free its slot."""
        try:
            self._close_quietly(conn)
        finally:
            self._drop(conn)

    def _drop(self, conn: ConnectionHolder) -> None:
        self._open.discard(conn)
        self._slots.release()
        if self._closing and not self._open:
            self._all_back.set()

    def _close_quietly(self, conn: ConnectionHolder) -> None:
        if conn.closed:
            return
        conn.closed = True
        self._close_now(conn)

    def _close_now(self, conn: ConnectionHolder) -> None:
        try:
            closing = self.driver.close(conn)
        except Exception:
            logger.debug("Closing a broken connection failed", exc_info=True)
            return
        if closing is not None:
            self.in_background(_quietly(closing))

    def cut(self, conn: ConnectionHolder) -> None:
        """Close a handed-out connection now, and stop waiting for it to come back.

        For a transaction cut off by the database's close: the server rolls
        it back, and the transaction's next statement finds the connection
        closed. Its holder still gives it back, which then only frees its slot.
        """
        self._close_quietly(conn)
        self._open.discard(conn)
        if self._closing and not self._open:
            self._all_back.set()

    def in_background(self, work: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        """Run ``work`` in a task that :meth:`settle` (and so :meth:`close`) waits for."""
        task = self.loop.create_task(work)
        self._cleanups.add(task)
        task.add_done_callback(self._cleanups.discard)
        return task

    async def settle(self) -> None:
        """Wait until the rollbacks of connections given back dirty (and other cleanups) have finished."""
        while self._cleanups:
            await asyncio.gather(*list(self._cleanups), return_exceptions=True)

    # -- closing -----------------------------------------------------------

    async def close(self, timeout: float | None) -> None:
        """Close every connection: the free ones now, the others once given back (or after ``timeout``)."""
        await self.settle()
        self._closing = True
        free, self._free = self._free, []
        for conn in free:
            self._open.discard(conn)
            self._close_quietly(conn)
        if self._open:
            try:
                async with asyncio.timeout(timeout):
                    await self._all_back.wait()
            except TimeoutError:
                for conn in list(self._open):
                    self._open.discard(conn)
                    self._close_quietly(conn)
        await self.settle()

    def abandon(self) -> None:
        """Close the sockets of a pool whose event loop has stopped; nothing is awaited."""
        self._closing = True
        self._free = []
        for conn in list(self._open):
            try:
                conn.closed = True
                self.driver.terminate(conn)
            except Exception:
                logger.debug("Closing the connections of a stopped event loop failed", exc_info=True)
        self._open.clear()


async def _quietly(closing: Awaitable[None]) -> None:
    try:
        await closing
    except Exception:
        logger.debug("Closing a connection failed", exc_info=True)


class _Wait:
    """One task waiting in :meth:`Pool.acquire`, and its deadline."""

    __slots__ = ("task", "deadline", "cancelling", "expired")

    def __init__(self, task: asyncio.Task[Any], deadline: float) -> None:
        self.task = task
        self.deadline = deadline
        # Cancellations already asked of the task: told apart from the pool's.
        self.cancelling = task.cancelling()
        self.expired = False

    def expire(self) -> None:
        """The deadline has come: cancel the task, in the ``await`` it waits at."""
        self.expired = True
        self.task.cancel()

    def timed_out(self, exc: BaseException) -> bool:
        """Whether the wait ended by :meth:`expire` and nothing else (``asyncio.timeout``'s rule).

        The task's cancellation is taken back; a cancellation asked by anyone
        else meanwhile stays, and ``exc`` goes on as it is.
        """
        self.expired = False
        return self.task.uncancel() <= self.cancelling and isinstance(exc, asyncio.CancelledError)


class _TimedOut(Exception):
    """The statement ended with an error after the server was told to stop it."""


class _Unanswered(Exception):
    """The statement gave no answer, even after the server was told to stop it."""


def _shorten(sql: str, limit: int = 200) -> str:
    return sql if len(sql) <= limit else sql[: limit - 3] + "..."
