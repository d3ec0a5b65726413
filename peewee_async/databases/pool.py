"""The small protocol each driver module implements, and the shared pool logic.

A driver module (``postgres.py`` on aiopg, ``mysql.py`` on aiomysql) subclasses
:class:`Pool` and fills in the few hooks that differ between drivers: how to
open the driver's own pool, run one statement, stream the rows of one select, and
tell whether a connection is still inside a transaction. Acquire timeouts,
rollback of dirty connections, the bookkeeping of connections lent to a row
stream and cleanup under cancellation live here, once.
"""

from __future__ import annotations

import asyncio
import logging
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

import peewee

from ..cursor import FetchedCursor
from ..errors import PoolTimeout, translate_driver_errors

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


class StreamLease:
    """A connection lent to one row stream, from its first row until it is closed.

    :attr:`closing` is the task that ends the stream once that has begun: a
    statement sent to the connection meanwhile waits for it, while a statement
    sent before it has begun is refused (see :meth:`Pool.execute`).
    """

    __slots__ = ("task", "owned", "closing", "ended", "begin_close")

    def __init__(
        self, task: asyncio.Task[Any] | None, owned: bool, begin_close: Callable[[], object]
    ) -> None:
        self.task = task
        # True: the stream took the connection from the pool and gives it back;
        # False: the connection belongs to the task's open transaction.
        self.owned = owned
        self.closing: asyncio.Task[None] | None = None
        # Why the stream was ended from outside (its transaction ended), if it was.
        self.ended: str | None = None
        # Starts the stream's closing task (and sets ``closing``).
        self.begin_close = begin_close


class Pool(ABC):
    """Connections of one database on one event loop."""

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
        self._streams: dict[Any, StreamLease] = {}

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

    async def acquire(self) -> Any:
        """A connection of our own, or :class:`PoolTimeout` after ``acquire_timeout``."""
        if self._streams:
            self._check_not_held_by_own_streams()
        try:
            # asyncio.timeout adds no task in between: once the driver has
            # handed us a connection, no cancellation can lose it.
            async with asyncio.timeout(self.acquire_timeout):
                with translate_driver_errors:
                    return await self._acquire_raw()
        except TimeoutError:
            raise PoolTimeout(
                f"No connection of {self.database.describe()} became free within "
                f"acquire_timeout={self.acquire_timeout}s: all max_connections={self.max_size} "
                "are in use. Raise max_connections, shorten transactions, or raise "
                "acquire_timeout. A task spawned inside a transaction needs a connection of "
                "its own, so with every connection held it waits until this timeout."
            ) from None

    def _check_not_held_by_own_streams(self) -> None:
        # A task whose own row streams hold every connection would wait for
        # one of them for ever: they cannot end while the task waits.
        task = asyncio.current_task()
        mine = sum(
            1
            for lease in self._streams.values()
            # A stream that is closing gives its connection back by itself.
            if lease.owned and lease.task is task and lease.closing is None
        )
        if mine >= self.max_size:
            raise peewee.InterfaceError(
                f"Every connection of {self.database.describe()} (max_connections={self.max_size}) "
                "is held by an iterate() loop of this task, so this query would wait for ever. "
                "Run the query after the loop, fetch the rows with `await objects.execute(query)` "
                "instead of iterating, or raise max_connections."
            )

    async def execute(self, conn: Any, sql: str, params: Sequence[Any]) -> FetchedCursor:
        if self._streams:
            await self.wait_stream_closed(conn)
        self._interrupted.add(conn)
        try:
            with translate_driver_errors:
                result = await self._execute_raw(conn, sql, params)
        except Exception:
            # The server answered with an error: the connection is in a known state.
            self._interrupted.discard(conn)
            raise
        self._interrupted.discard(conn)
        return result

    # -- row streams -----------------------------------------------------

    def lend_to_stream(self, conn: Any, owned: bool, begin_close: Callable[[], object]) -> StreamLease:
        """Mark ``conn`` as busy with a row stream of the running task."""
        if conn in self._streams:
            raise self._busy_error()
        lease = self._streams[conn] = StreamLease(asyncio.current_task(), owned, begin_close)
        return lease

    def end_lease(self, conn: Any, lease: StreamLease) -> None:
        """The stream is over: ``conn`` takes statements again."""
        if self._streams.get(conn) is lease:
            del self._streams[conn]

    async def wait_stream_closed(self, conn: Any) -> None:
        """Wait until a stream that is closing on ``conn`` has closed; refuse while one is open."""
        lease = self._streams.get(conn)
        if lease is None:
            return
        if lease.closing is None:
            raise self._busy_error()
        # A stream let go of (its loop left with `break`) is closing: wait for it.
        await asyncio.shield(lease.closing)

    def _busy_error(self) -> peewee.InterfaceError:
        return peewee.InterfaceError(
            f"The connection of {self.database.describe()} is streaming the rows of an iterate() "
            "loop that is still open, and takes no other statement until the loop ends. Finish "
            "or close the loop first (`async with objects.iterate(query) as rows:` closes it at "
            "the end of the block), or fetch the rows with `await objects.execute(query)` to "
            "run queries while going through them."
        )

    async def end_streams(self, conn: Any, reason: str) -> None:
        """Close the stream still open on ``conn`` (its transaction is ending), if any."""
        lease = self._streams.get(conn)
        if lease is None:
            return
        if lease.closing is None:
            lease.ended = reason
            lease.begin_close()
        if lease.closing is not None:
            await asyncio.shield(lease.closing)

    async def open_stream(self, conn: Any, sql: str, params: Sequence[Any], chunk_size: int) -> RawStream:
        return await self._guarded(conn, self._open_stream_raw(conn, sql, params, chunk_size))

    async def fetch_stream(self, conn: Any, stream: RawStream) -> Sequence[Sequence[Any]]:
        return await self._guarded(conn, stream.fetch())

    async def close_stream(self, conn: Any, stream: RawStream) -> None:
        await self._guarded(conn, stream.close())

    async def _guarded(self, conn: Any, step: Awaitable[T]) -> T:
        # As execute(): a step cut off by a cancellation leaves the protocol in
        # an unknown state, so the connection is then closed, never reused.
        self._interrupted.add(conn)
        try:
            with translate_driver_errors:
                result = await step
        except Exception:
            self._interrupted.discard(conn)
            raise
        self._interrupted.discard(conn)
        return result

    def is_interrupted(self, conn: Any) -> bool:
        """Whether a statement on ``conn`` was cut off before the server's answer was read."""
        return conn in self._interrupted

    def release(self, conn: Any) -> None:
        """Give ``conn`` back; a connection left inside a transaction is rolled back first.

        Never awaits on the clean path, so a cancelled task cannot skip it; the
        rollback of a dirty connection runs in a task of its own that a
        cancellation of the caller does not reach.
        """
        lease = self._streams.get(conn)
        if lease is not None and not lease.owned:
            # A transaction's connection given back while a stream still closes on
            # it (the transaction's end was cancelled): give it back after that.
            if lease.closing is not None:
                lease.closing.add_done_callback(lambda _: self.release(conn))
                return
            del self._streams[conn]
            lease.ended = "its connection was given back to the pool"
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
            self._close_raw(conn)
        finally:
            self._release_raw(conn)

    def abandon(self) -> None:
        """Close the sockets of a pool whose event loop has stopped; nothing is awaited."""
        try:
            self._terminate_raw()
        except Exception:
            logger.debug("Closing the connections of a stopped event loop failed", exc_info=True)

    async def close(self, timeout: float | None) -> None:
        await self.settle()
        await self._close_all(timeout)
