"""Task-local transactions: ``atomic()``, ``transaction()`` and ``savepoint()``.

The task that enters the outermost block takes a connection from the pool and
keeps it until the block ends; every query that task runs meanwhile goes to
that connection. The running task's state lives in a ``ContextVar`` of the
database. A task spawned inside the block copies the context, but the state
names its owner task, so the child sees no transaction and runs its queries on
a connection of its own, outside the parent's transaction:

=====================================  ===========================================
who runs the query                     where it runs
=====================================  ===========================================
the task that entered ``atomic()``     the transaction's connection
a task it spawned (``gather``,         its own connection, autocommit; it may open
``create_task``, ``wait_for`` on 3.11)  its own transaction
any other task                         its own connection, autocommit
=====================================  ===========================================

Each block is a small state machine (new, active, finished): a block object is
entered once, and an exit that does not match the innermost open block raises
:class:`~peewee_async.errors.TransactionError` instead of corrupting the stack.
"""

from __future__ import annotations

import asyncio
import enum
import functools
import uuid
from collections.abc import Coroutine
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal, TypeVar

from .errors import TransactionError
from .intent import Intent

if TYPE_CHECKING:
    import contextvars

    from .databases.base import AsyncDatabase
    from .databases.driver import ConnectionHolder
    from .databases.pool import ConnectionSource

Kind = Literal["atomic", "transaction", "savepoint"]
T = TypeVar("T")


class TaskTransactions:
    """The connection one task holds for its open transaction, and the blocks open on it."""

    __slots__ = ("task", "pool", "connection", "blocks", "begun")

    def __init__(self, task: asyncio.Task[Any], pool: ConnectionSource, connection: ConnectionHolder) -> None:
        self.task = task
        self.pool = pool
        self.connection = connection
        self.blocks: list[Transaction] = []
        # False after commit(begin=False)/rollback(begin=False): nothing is left to end.
        self.begun = True


class _Status(enum.Enum):
    NEW = "new"
    ACTIVE = "active"
    FINISHED = "finished"


class _Role(enum.Enum):
    ROOT = "root"  # BEGIN ... COMMIT/ROLLBACK on a connection of its own
    SAVEPOINT = "savepoint"  # SAVEPOINT ... RELEASE/ROLLBACK TO inside a transaction
    JOINED = "joined"  # transaction() inside a transaction: part of the outer one


class Transaction:
    """One ``async with`` block of ``atomic()``, ``transaction()`` or ``savepoint()``.

    ``atomic()`` is a transaction when no transaction is open in the running
    task, and a savepoint inside one. ``transaction()`` inside a transaction
    joins the outer one, as in peewee. ``savepoint()`` needs an open
    transaction. Inside the block, ``await block.commit()`` and ``await
    block.rollback()`` end the work so far and start anew, as peewee's do.
    """

    def __init__(self, database: AsyncDatabase, kind: Kind, sid: str | None = None) -> None:
        self.database = database
        self.kind = kind
        self.sid = sid
        self._status = _Status.NEW
        self._role: _Role | None = None
        self._held: TaskTransactions | None = None
        self._savepoint_set = False
        self._token: contextvars.Token[TaskTransactions | None] | None = None

    def __repr__(self) -> str:
        return f"<{self.kind}() on {self.database.describe()}: {self._status.value}>"

    # -- entering ----------------------------------------------------------

    async def __aenter__(self) -> Transaction:
        if self._status is not _Status.NEW:
            raise TransactionError(
                f"This {self.kind}() block was entered already; create a new one for each "
                "`async with`, e.g. `async with objects.atomic():`."
            )
        held = self.database._current_transactions()
        # Only inside peewee_async.testing.rollback() is a task's first block
        # entered with a transaction already held: it becomes a savepoint there.
        outermost = held is None or not held.blocks
        if outermost and self.kind == "savepoint":
            raise TransactionError(
                "savepoint() needs an open transaction in the running task; use atomic(), "
                "which opens a transaction, or a savepoint when nested."
            )
        if held is None:
            held = await self._begin_root()
        elif self.kind == "transaction" and not outermost:
            self._role = _Role.JOINED
        else:
            self._role = _Role.SAVEPOINT
            self.sid = self.sid or "s" + uuid.uuid4().hex
            await self._run(held, f"SAVEPOINT {self._quoted_sid()}")
            self._savepoint_set = True
        self._held = held
        held.blocks.append(self)
        self._status = _Status.ACTIVE
        return self

    async def _begin_root(self) -> TaskTransactions:
        db = self.database
        pool, conn, _ = await db._hold(Intent.TRANSACTION)
        try:
            await pool.execute(conn, pool.begin_statement, ())
        except BaseException:
            pool.release(conn)  # rolls back if BEGIN got through
            raise
        task = asyncio.current_task()
        assert task is not None  # we are awaited, so a task runs us
        held = TaskTransactions(task, pool, conn)
        self._token = db._task_transactions.set(held)
        db._root_transactions.add(held)
        self._role = _Role.ROOT
        return held

    # -- leaving -----------------------------------------------------------

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        held = self._active_blocks("leave")
        held.blocks.pop()
        self._status = _Status.FINISHED
        if self._role is _Role.ROOT:
            await self._end_root(held, failed=exc_type is not None)
        elif self._role is _Role.SAVEPOINT and self._savepoint_set:
            if exc_type is not None:
                if not self._connection_broken(held):
                    await self._run(held, f"ROLLBACK TO SAVEPOINT {self._quoted_sid()}")
            else:
                try:
                    await self._run(held, f"RELEASE SAVEPOINT {self._quoted_sid()}")
                except Exception:
                    await self._run(held, f"ROLLBACK TO SAVEPOINT {self._quoted_sid()}")
                    raise

    async def _end_root(self, held: TaskTransactions, failed: bool) -> None:
        # Whatever happens here, including a cancellation, the finally gives the
        # connection back and forgets the transaction. The pool rolls back a
        # connection that is still inside a transaction and drops one whose
        # statement was interrupted, so nothing half-done is ever reused.
        # A connection that broke or was cut off mid-statement gets no ROLLBACK:
        # closing it is the rollback, and a broken protocol is never written to.
        # Leaving the block normally on such a connection raises ConnectionLost
        # (from the COMMIT), so a lost transaction never looks committed.
        try:
            # A row stream still open on the connection ends with its transaction.
            if held.pool.streams:
                await held.pool.streams.close_on(held.connection, "its transaction ended")
            if not held.begun:
                return  # ended inside the block with commit/rollback(begin=False)
            if failed:
                if not self._connection_broken(held):
                    await self._run(held, "ROLLBACK")
            else:
                try:
                    await self._commit(held)
                except Exception:
                    if not self._connection_broken(held):
                        await self._run(held, "ROLLBACK")
                    raise
        finally:
            db = self.database
            db._root_transactions.discard(held)
            if self._token is not None:
                db._task_transactions.reset(self._token)
                self._token = None
            held.pool.release(held.connection)

    async def _commit(self, held: TaskTransactions) -> None:
        """COMMIT, seen through to its answer even when the task is cancelled meanwhile.

        Once COMMIT is sent, cutting it off leaves its outcome unknown (the
        server commits anyway, most of the time). So it runs shielded (see
        :func:`run_to_end`): a cancellation that arrives meanwhile is asked for
        again once the answer is in, to be raised at the task's next await.
        That keeps one rule for users: a block that raised wrote nothing, a
        block that exited normally committed.
        """
        await run_to_end(self.database._execute(Intent.TRANSACTION, "COMMIT", (), held=held))

    # -- ending early, starting anew --------------------------------------

    async def commit(self, begin: bool = True) -> None:
        """Commit the work so far; with ``begin`` (the default) a new one starts at once."""
        held = self._active_blocks("commit")
        if self._role is _Role.SAVEPOINT:
            await self._run(held, f"RELEASE SAVEPOINT {self._quoted_sid()}")
            self._savepoint_set = False
            if begin:
                await self._run(held, f"SAVEPOINT {self._quoted_sid()}")
                self._savepoint_set = True
        else:
            await self._run(held, "COMMIT")
            held.begun = False
            if begin:
                await self._run(held, held.pool.begin_statement)
                held.begun = True

    async def rollback(self, begin: bool = True) -> None:
        """Roll back the work so far; with ``begin`` (the default) a new one starts at once."""
        held = self._active_blocks("rollback")
        if self._role is _Role.SAVEPOINT:
            # The savepoint stays set: a later exit releases or rolls back to it.
            await self._run(held, f"ROLLBACK TO SAVEPOINT {self._quoted_sid()}")
        else:
            await self._run(held, "ROLLBACK")
            held.begun = False
            if begin:
                await self._run(held, held.pool.begin_statement)
                held.begun = True

    # -- helpers -----------------------------------------------------------

    def _active_blocks(self, action: str) -> TaskTransactions:
        held = self._held
        if self._status is not _Status.ACTIVE or held is None:
            raise TransactionError(
                f"Cannot {action} {self!r}: the block is not open. Call commit()/rollback() "
                "inside its `async with`."
            )
        if self.database._current_transactions() is not held:
            raise TransactionError(
                f"Cannot {action} {self!r} from another task: a transaction belongs to the "
                "task that opened it."
            )
        if not held.blocks or held.blocks[-1] is not self:
            raise TransactionError(
                f"Cannot {action} {self!r} while an inner block is still open; leave the "
                "inner `async with` first."
            )
        return held

    @staticmethod
    def _connection_broken(held: TaskTransactions) -> bool:
        # connection_lost: the server has closed its end (it went down), which
        # the driver may not have read yet; a ROLLBACK written there would meet
        # a protocol still busy with the server's goodbye.
        conn = held.connection
        return held.pool.is_interrupted(conn) or held.pool.is_closed(conn) or held.pool.connection_lost(conn)

    def _quoted_sid(self) -> str:
        assert self.sid is not None
        quote = self.database.quote
        return self.sid.join(quote) if len(quote) == 2 else f'"{self.sid}"'

    async def _run(self, held: TaskTransactions, sql: str) -> None:
        await self.database._execute(Intent.TRANSACTION, sql, (), held=held)


async def run_to_end(coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` in the running task to its end, whatever cancels the task meanwhile.

    This does what ``asyncio.Task`` does with a coroutine (send it on; while it
    waits for a future, wait for that future), but the task itself waits for a
    future of ours. A cancellation of the task reaches that future, never the
    one ``coro`` awaits (the driver's): it is noted, and asked for again once
    ``coro`` has ended, so ``cancelling()`` counts it once and the task's next
    await raises it. ``asyncio.shield`` does the same with a task of its own;
    here no task is made and no step goes round the event loop twice, which
    is most of the cost of a transaction's end.
    """
    loop = asyncio.get_running_loop()
    cancelled: asyncio.CancelledError | None = None
    error: BaseException | None = None
    try:
        while True:
            try:
                yielded = coro.send(None) if error is None else coro.throw(error)
            except StopIteration as stop:
                return stop.value  # type: ignore[no-any-return]
            error = None
            if yielded is None:  # a bare yield (asyncio.sleep(0)): go round the loop once
                try:
                    await asyncio.sleep(0)
                except asyncio.CancelledError as exc:
                    cancelled = exc
                continue
            if getattr(yielded, "_asyncio_future_blocking", None) is None:
                error = RuntimeError(f"Task got bad yield: {yielded!r}")
                continue
            yielded._asyncio_future_blocking = False
            while not yielded.done():
                waiter = loop.create_future()
                wake = functools.partial(_wake, waiter)
                yielded.add_done_callback(wake)
                try:
                    await waiter
                except asyncio.CancelledError as exc:
                    yielded.remove_done_callback(wake)
                    cancelled = exc
            try:
                yielded.result()
            except BaseException as exc:  # passed into coro, as a task passes it
                error = exc
    finally:
        if cancelled is not None:
            task = asyncio.current_task()
            if task is not None:
                # cancel() then uncancel(): the request is pending again, and
                # cancelling() counts it once, as before.
                task.cancel(cancelled.args[0] if cancelled.args else None)
                task.uncancel()


def _wake(waiter: asyncio.Future[None], _: object) -> None:
    if not waiter.done():
        waiter.set_result(None)
