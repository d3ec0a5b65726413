"""The small protocol each driver module implements, and the shared pool logic.

A driver module (``postgres.py`` on aiopg, ``mysql.py`` on aiomysql) subclasses
:class:`Pool` and fills in the few hooks that differ between drivers: how to
open the driver's own pool, run one statement, and tell whether a connection is
still inside a transaction. Acquire timeouts, rollback of dirty connections and
cleanup under cancellation live here, once.
"""

from __future__ import annotations

import asyncio
import logging
from abc import ABC, abstractmethod
from collections.abc import Coroutine, Sequence
from typing import TYPE_CHECKING, Any

import peewee

from ..cursor import FetchedCursor
from ..errors import PoolTimeout, translate_driver_errors

if TYPE_CHECKING:
    from .base import AsyncDatabase

logger = logging.getLogger("peewee.async")


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
        try:
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
            if isinstance(exc, TimeoutError):
                raise self._timeout_error() from None
            raise

    def _timeout_error(self) -> PoolTimeout:
        return PoolTimeout(
            f"No connection of {self.database.describe()} became free within "
            f"acquire_timeout={self.acquire_timeout}s: all max_connections={self.max_size} "
            "are in use. Raise max_connections, shorten transactions, or raise "
            "acquire_timeout. A task spawned inside a transaction needs a connection of "
            "its own, so with every connection held it waits until this timeout."
        )

    def _wake_next_waiter(self) -> None:  # noqa: B027 - an optional hook
        """Wake a task waiting in ``_acquire_raw`` if a connection is free or may open; a driver hook."""

    async def execute(self, conn: Any, sql: str, params: Sequence[Any]) -> FetchedCursor:
        if conn in self._interrupted:
            # Only a transaction's connection outlives an interrupted statement
            # (until its block ends); its protocol state is unknown and the
            # server rolls the transaction back when it is closed. Writing to it
            # again could read the old statement's answer as the new one's.
            self.raise_interrupted()
        self._interrupted.add(conn)
        try:
            with translate_driver_errors:
                result = await self._execute_raw(conn, sql, params)
        except Exception:
            # The server answered with an error: the connection is in a known state.
            self._interrupted.discard(conn)
            raise
        except BaseException:
            # Cut off (cancelled) before the answer was read. Close at once rather
            # than at release: inside a transaction the server then rolls back and
            # frees its locks now, not when the task gets round to leaving the block.
            self._close_quietly(conn)
            raise
        self._interrupted.discard(conn)
        return result

    def is_interrupted(self, conn: Any) -> bool:
        """Whether a statement on ``conn`` was cut off before the server's answer was read."""
        return conn in self._interrupted

    def raise_interrupted(self) -> None:
        """Raise the error for using a transaction whose statement was cut off."""
        raise peewee.InterfaceError(
            "A statement of this transaction was cancelled before the server answered, so "
            "its connection was closed and the transaction rolled back. Let the cancellation "
            "(or timeout) leave the transaction block, and run the whole transaction again "
            "if its work must be done."
        )

    def release(self, conn: Any) -> None:
        """Give ``conn`` back; a connection left inside a transaction is rolled back first.

        Never awaits on the clean path, so a cancelled task cannot skip it; the
        rollback of a dirty connection runs in a task of its own that a
        cancellation of the caller does not reach.
        """
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
