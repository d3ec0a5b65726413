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
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from ..cursor import FetchedCursor
from ..errors import PoolTimeout, translate_driver_errors

if TYPE_CHECKING:
    from .base import AsyncDatabase

logger = logging.getLogger("peewee.async")


class Pool(ABC):
    """Connections of one database on one event loop."""

    #: The statement that opens a transaction on this driver.
    begin_statement: ClassVar[str] = "BEGIN"

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

    def _free_now(self) -> bool:
        """Whether the driver hands over a connection without waiting for one (then no timer is set)."""
        return False

    async def acquire(self) -> Any:
        """A connection of our own, or :class:`PoolTimeout` after ``acquire_timeout``."""
        if self._free_now():
            # Arming the timeout costs more than the rest of the acquire: skip it
            # when nothing will be waited for.
            with translate_driver_errors:
                return await self._acquire_raw()
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

    async def execute(self, conn: Any, sql: str, params: Sequence[Any]) -> FetchedCursor:
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

    def is_interrupted(self, conn: Any) -> bool:
        """Whether a statement on ``conn`` was cut off before the server's answer was read."""
        return conn in self._interrupted

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
