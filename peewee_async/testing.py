"""Tests that leave no rows behind: each test runs inside a transaction rolled back at its end.

::

    import pytest
    import peewee_async
    from peewee_async.testing import rollback

    @pytest.fixture
    async def objects():
        async with rollback(database):
            yield peewee_async.Manager(database)

While :func:`rollback` is active, the database has one *pinned* transaction,
on one connection, that serves every task: the fixture that entered it, the
test body (pytest-asyncio runs setup, test and teardown as separate tasks) and
any task they spawn. Each statement takes its turn on that connection, so
concurrent tasks never interleave on the driver. Inside it:

- ``atomic()``, ``transaction()`` and ``savepoint()`` are savepoints; leaving
  one with an error rolls back that savepoint only, as in production.
- A statement run outside any block gets a savepoint of its own, so a failing
  statement (an expected ``IntegrityError``) undoes only itself and the test
  goes on, as with autocommit.
- While a task is inside a block, other tasks wait for it to end, except the
  tasks it spawned (``gather``, ``create_task``), which run inside that block.
  This keeps the savepoints of concurrent tasks properly nested.
- A statement that would end the transaction (``COMMIT``, ``ROLLBACK``,
  ``BEGIN``) raises :class:`~peewee_async.TransactionError`.

Leaving :func:`rollback` rolls everything back and gives the connection to the
pool, also when the test failed or was cancelled.
"""

from __future__ import annotations

import asyncio
import contextvars
import re
from collections.abc import Coroutine, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any

from .cursor import FetchedCursor
from .databases.base import AsyncDatabase
from .errors import PoolTimeout, TransactionError
from .intent import Intent
from .transactions import TaskTransactions

if TYPE_CHECKING:
    from .databases.driver import ConnectionHolder, RawStream
    from .databases.leases import StreamLease, StreamLeases
    from .databases.pool import ConnectionSource
    from .manager import Manager
    from .transactions import Transaction

__all__ = ["PinnedTransaction", "rollback"]

# Statements that end or start the whole transaction; the savepoint ones pass.
_ENDS_TRANSACTION = re.compile(r"\s*(BEGIN|START\s+TRANSACTION|COMMIT|END|ROLLBACK(?!\s+TO\b))\b", re.I)
_CONTROLS_SAVEPOINT = re.compile(r"\s*(SAVEPOINT|RELEASE|ROLLBACK\s+TO)\b", re.I)
_STATEMENT_SAVEPOINT = "peewee_async_statement"


def rollback(target: AsyncDatabase | Manager) -> Rollback:
    """``async with rollback(database):`` everything written inside is rolled back at the end.

    ``target`` is an async database or a :class:`~peewee_async.Manager`. Enter
    it where no transaction is open on the database, e.g. in a pytest-asyncio
    fixture; it may end in another task than the one that entered it.
    """
    # A database's own ``database`` attribute is its name: look at managers only.
    database = target if isinstance(target, AsyncDatabase) else getattr(target, "database", None)
    if not isinstance(database, AsyncDatabase):
        raise TypeError(
            f"rollback() takes an async database or a Manager, got {target!r}; "
            "pass e.g. a peewee_async.PostgresqlDatabase."
        )
    return Rollback(database)


class Rollback:
    """The async context manager of :func:`rollback`; enter each one once."""

    def __init__(self, database: AsyncDatabase) -> None:
        self.database = database
        self.pinned: PinnedTransaction | None = None
        self._entered = False

    async def __aenter__(self) -> PinnedTransaction:
        db = self.database
        if self._entered:
            raise TransactionError(
                "This rollback() block was entered already; call rollback(database) again "
                "for each `async with`."
            )
        self._entered = True
        self._check_free()
        pool, conn, _ = await db._hold(Intent.TRANSACTION)
        try:
            self._check_free()  # another task may have pinned it while we waited
            await pool.execute(conn, pool.begin_statement, ())
        except BaseException:
            pool.release(conn)  # rolls back if BEGIN got through
            raise
        pinned = self.pinned = PinnedTransaction(db, pool, conn)
        db._pinned = pinned
        return pinned

    def _check_free(self) -> None:
        db = self.database
        if db._pinned is not None:
            raise TransactionError(
                f"rollback() is already active on {db.describe()}; it cannot be nested. "
                "Use `async with objects.atomic():` inside it for a block of its own that "
                "can fail and roll back alone."
            )
        if db._open_transactions:
            raise TransactionError(
                f"rollback() on {db.describe()} must be entered outside transactions, but "
                f"{db._open_transactions} transaction(s) are open. Enter it first (e.g. in a "
                "fixture) and open atomic() blocks inside it."
            )

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        pinned = self.pinned
        if pinned is None:
            raise TransactionError("rollback() was left without being entered; use `async with`.")
        self.pinned = None
        await pinned._end()


class _Blocks(list["Transaction"]):
    """A task's open blocks; its first one makes the task the innermost *holder*."""

    def __init__(self, view: _TaskView) -> None:
        super().__init__()
        self.view = view

    def append(self, block: Transaction) -> None:
        if not self:
            # Registered in the same step that ran the SAVEPOINT (no await in
            # between), so no other task's statement can slip in unordered.
            self.view.pinned._holders.append(self.view)
        super().append(block)


class _TaskView(TaskTransactions):
    """What one task sees of the pinned transaction: the shared connection, its own blocks."""

    __slots__ = ("pinned", "parent")

    def __init__(self, task: asyncio.Task[Any], pinned: PinnedTransaction, parent: _TaskView | None):
        # The pinned transaction is the connection source of every task's view:
        # their statements run through PinnedTransaction.execute.
        super().__init__(task, pinned, pinned.connection)
        self.pinned = pinned
        self.parent = parent
        self.blocks = _Blocks(self)

    def descends_from(self, other: _TaskView) -> bool:
        view = self.parent
        while view is not None:
            if view is other:
                return True
            view = view.parent
        return False


class PinnedTransaction:
    """The transaction of an active :func:`rollback`: one connection shared by every task.

    It is the connection source (:class:`~peewee_async.databases.pool.ConnectionSource`)
    of every task's statements meanwhile, in front of the pool that lent the connection.
    """

    def __init__(self, database: AsyncDatabase, pool: ConnectionSource, connection: ConnectionHolder) -> None:
        self.database = database
        self.pool = pool
        self.connection = connection
        self.loop = pool.loop
        self.begin_statement = pool.begin_statement
        self.active = True
        # Its lock lets one statement at a time run on the connection.
        self._turn = asyncio.Condition()
        # Tasks inside a block, outermost first; only the innermost one and the
        # tasks it spawned may run statements.
        self._holders: list[_TaskView] = []
        # A task's view, inherited by the tasks it spawns (as their parent).
        self._views: contextvars.ContextVar[_TaskView | None] = contextvars.ContextVar(
            f"peewee_async_pinned_{id(self)}", default=None
        )

    def __repr__(self) -> str:
        state = "active" if self.active else "ended"
        return f"<rollback() on {self.database.describe()}: {state}>"

    def current(self) -> TaskTransactions | None:
        """The running task's view of this transaction (created at its first query)."""
        try:
            task = asyncio.current_task()
        except RuntimeError:
            return None
        if task is None:
            return None
        view = self._views.get()
        if view is None or view.task is not task:
            view = _TaskView(task, self, parent=view)
            self._views.set(view)
        return view

    # -- the connection source of the task views ---------------------------

    @property
    def streams(self) -> StreamLeases:
        return self.pool.streams

    def is_interrupted(self, conn: ConnectionHolder) -> bool:
        return self.pool.is_interrupted(conn)

    def is_closed(self, conn: ConnectionHolder) -> bool:
        return self.pool.is_closed(conn)

    def connection_lost(self, conn: ConnectionHolder) -> bool:
        return self.pool.connection_lost(conn)

    async def acquire(self) -> ConnectionHolder:
        """The shared connection: every task's work runs on it."""
        return self.connection

    def release(self, conn: ConnectionHolder) -> None:
        """Nothing to give back: the shared connection stays until :func:`rollback` ends."""

    def in_background(self, work: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        return self.pool.in_background(work)

    # An iterate() loop inside rollback() holds the shared connection, as a
    # loop inside a transaction holds the transaction's.

    async def open_stream(
        self, conn: ConnectionHolder, sql: str, params: Sequence[Any], chunk_size: int
    ) -> RawStream:
        return await self.pool.open_stream(conn, sql, params, chunk_size)

    async def fetch_stream(self, conn: ConnectionHolder, stream: RawStream) -> Sequence[Sequence[Any]]:
        return await self.pool.fetch_stream(conn, stream)

    async def close_stream(self, conn: ConnectionHolder, stream: RawStream) -> None:
        await self.pool.close_stream(conn, stream)

    def end_lease(self, conn: ConnectionHolder, lease: StreamLease) -> None:
        self.pool.end_lease(conn, lease)

    async def execute(
        self, conn: ConnectionHolder | None, sql: str, params: Sequence[Any], timeout: float | None = None
    ) -> FetchedCursor:
        view = self.current()
        assert isinstance(view, _TaskView)  # execute_sql_async runs in a task
        if _ENDS_TRANSACTION.match(sql):
            raise TransactionError(
                f"{sql.strip().split()[0].upper()} would end the transaction of rollback() on "
                f"{self.database.describe()}, and with it the isolation of the test. Inside "
                "rollback(), use atomic() blocks (savepoints), or leave rollback() first."
            )
        async with self._turn:
            # (The pool counts a statement in flight as interrupted until it
            # ends: look only while holding the lock, when none is.)
            if _CONTROLS_SAVEPOINT.match(sql) and self.pool.is_interrupted(self.connection):
                # A block leaving after a cancelled query: nothing can be undone on
                # this connection any more, and the exit of rollback() discards it.
                return FetchedCursor([], None, 0, None)
            try:
                await self._wait_for_turn(view)
                if view.blocks or _CONTROLS_SAVEPOINT.match(sql):
                    return await self._run(sql, params, timeout)
                return await self._run_alone(sql, params, timeout)
            finally:
                if not view.blocks and view in self._holders:
                    self._holders.remove(view)
                self._turn.notify_all()

    async def _wait_for_turn(self, view: _TaskView) -> None:
        def may_run() -> bool:
            if not self.active or not self._holders:
                return True
            holder = self._holders[-1]
            return holder is view or view.descends_from(holder)

        timeout = self.database.acquire_timeout
        try:
            async with asyncio.timeout(timeout):
                await self._turn.wait_for(may_run)
        except TimeoutError:
            raise PoolTimeout(
                f"A task waited acquire_timeout={timeout}s for its turn in rollback() on "
                f"{self.database.describe()}: another task stayed inside an atomic() block all "
                "that time. Inside rollback() every task shares one connection, and while a "
                "task is inside a block only it and the tasks it spawned may use it. Let the "
                "block end before waiting for other tasks, or spawn them from inside it."
            ) from None
        if not self.active:
            raise TransactionError(
                f"rollback() on {self.database.describe()} has ended; a task ran a query after "
                "it. Await every task a test starts before the test ends."
            )

    async def _run(self, sql: str, params: Sequence[Any], timeout: float | None = None) -> FetchedCursor:
        if self.pool.is_interrupted(self.connection):
            raise TransactionError(
                f"The connection of rollback() on {self.database.describe()} is lost: a query on "
                "it was cancelled while it ran. Nothing more can run inside this rollback(); "
                "leave it (its exit still cleans up) and start a new one."
            )
        return await self.pool.execute(self.connection, sql, params, timeout)

    async def _run_alone(self, sql: str, params: Sequence[Any], timeout: float | None) -> FetchedCursor:
        """Run a statement in a savepoint of its own: on error it alone is undone, as in autocommit."""
        name = self._quoted(_STATEMENT_SAVEPOINT)
        await self._run(f"SAVEPOINT {name}", ())
        try:
            result = await self._run(sql, params, timeout)
        except Exception:
            if not self.pool.is_interrupted(self.connection):
                await self._run(f"ROLLBACK TO SAVEPOINT {name}", ())
                await self._run(f"RELEASE SAVEPOINT {name}", ())
            raise
        await self._run(f"RELEASE SAVEPOINT {name}", ())
        return result

    def _quoted(self, name: str) -> str:
        quote = self.database.quote
        return name.join(quote) if len(quote) == 2 else f'"{name}"'

    # -- ending ------------------------------------------------------------

    async def _end(self) -> None:
        db, pool, conn = self.database, self.pool, self.connection
        try:
            # Taking the lock lets a statement still running finish first.
            async with self._turn:
                self.active = False
                self._turn.notify_all()
                if not pool.is_interrupted(conn):
                    await pool.execute(conn, "ROLLBACK", ())
        finally:
            # Whatever happened above, even a cancellation: unpin, and give the
            # connection back (the pool rolls it back or closes it if needed).
            self.active = False
            if db._pinned is self:
                db._pinned = None
            self._holders.clear()
            self._views.set(None)
            pool.release(conn)
