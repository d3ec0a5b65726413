"""What every async database shares, whatever its family and driver.

:class:`AsyncDatabase` is mixed in front of one of peewee's database classes.
The peewee half keeps serving synchronous code exactly as before ("sync will
remain sync"), guarded by ``allow_sync``; the async half owns a pool of
driver connections (:mod:`peewee_async.databases.pool`) and the task-local
transaction state (:mod:`peewee_async.transactions`).

Two methods here are the seams every statement passes:
:meth:`AsyncDatabase._connection` is the one place that picks where a
statement runs (told what the statement means to do), and
:meth:`AsyncDatabase._execute` runs one statement there, compiling its query
first if it has one (:mod:`peewee_async.compiler`).
"""

from __future__ import annotations

import asyncio
import contextvars
import difflib
import logging
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, ClassVar

import peewee

from ..compiler import DEFAULT_STATEMENT_CACHE_SIZE, NumbersContext, StatementCache, compile_query
from ..cursor import FetchedCursor
from ..errors import SyncQueryError, TransactionError, WrongLoopError
from ..intent import Intent
from ..redact import redact_url
from ..transactions import TaskTransactions, Transaction
from .driver import ConnectionHolder, Driver, driver_message
from .pool import ConnectionSource, Pool
from .replicas import (
    DEFAULT_RETRY_AFTER,
    UNREACHABLE_ERRORS,
    ReplicaSet,
    check_replicas,
    mark_unreachable,
    unreachable,
)

if TYPE_CHECKING:
    from ..testing import PinnedTransaction

query_logger = logging.getLogger("peewee")
logger = logging.getLogger("peewee.async")

AllowSync = bool | int

# The options of the async half, with their defaults; the constructor and init() take them.
_OPTIONS: dict[str, Any] = {
    "max_connections": None,  # None: the class's default_max_connections
    "min_connections": 1,
    "acquire_timeout": 30.0,
    "connect_timeout": 30.0,
    "query_timeout": None,
    "statement_cache_size": DEFAULT_STATEMENT_CACHE_SIZE,
    "replica_retry_after": DEFAULT_RETRY_AFTER,
}


class AsyncDatabase:
    """Mixin giving a peewee database an async connection pool and the sync guard.

    :param max_connections: most connections the async pool opens (1 for the
        non-pooled classes, where concurrent tasks take turns on one connection).
    :param min_connections: connections opened when the pool starts.
    :param acquire_timeout: seconds a query waits for a free connection before
        :class:`~peewee_async.PoolTimeout`; ``None`` waits for ever.
    :param connect_timeout: seconds opening the pool may take; the PostgreSQL
        and MySQL drivers also bound each new connection with it.
    :param query_timeout: seconds one statement (or one step of an
        ``iterate()`` loop) may run before the server is told to stop it and
        the call raises :class:`~peewee_async.QueryTimeout`; ``None`` (the
        default) lets statements run for ever.
    :param statement_cache_size: most compiled statements of the Manager's
        shortcuts kept (least recently used pruned first); 0 keeps none.
    :param replicas: database objects of the same class (pooled or not) for
        read replicas of this database: each read outside a transaction and
        outside :meth:`reads_on_primary` runs on one of them, in turn, and
        everything else on this database (see :doc:`/scaling`). Not for SQLite.
    :param replica_retry_after: seconds a replica that could not be reached
        is skipped before a read tries it again.
    """

    #: The driver the async side runs on (see :mod:`peewee_async.databases.driver`).
    driver: ClassVar[Driver]
    #: The database family: ``"postgresql"``, ``"mysql"`` or ``"sqlite"``.
    family: ClassVar[str]
    default_max_connections: ClassVar[int] = 1
    #: peewee's SQL context, writing LIMIT as a number (see :class:`~peewee_async.compiler.NumbersContext`).
    context_class: ClassVar[type[peewee.Context]] = NumbersContext

    # The options, set by init() (the constructor's run of it included).
    max_connections: int
    min_connections: int
    acquire_timeout: float | None
    connect_timeout: float | None
    query_timeout: float | None
    statement_cache_size: int
    replica_retry_after: float

    if TYPE_CHECKING:
        # What the async half reads of peewee's half.
        database: Any
        connect_params: dict[str, Any]
        server_version: Any
        quote: str
        deferred: bool
        returning_clause: bool

        def get_sql_context(self, **context_options: Any) -> Any: ...
        def _notify_hooks(self, sql: str, params: Any, start: float, exc: Exception | None) -> None: ...
        def _set_server_version(self, conn: Any) -> None: ...
        def _connect(self) -> Any: ...
        def last_insert_id(self, cursor: Any, query_type: Any = None) -> Any: ...
        def rows_affected(self, cursor: Any) -> int: ...
        def is_closed(self) -> bool: ...
        def in_transaction(self) -> bool: ...
        def close(self) -> bool: ...

    def __init__(
        self,
        database: str | None,
        *args: Any,
        max_connections: int | None = None,
        min_connections: int = 1,
        acquire_timeout: float | None = 30.0,
        connect_timeout: float | None = 30.0,
        query_timeout: float | None = None,
        statement_cache_size: int = DEFAULT_STATEMENT_CACHE_SIZE,
        replicas: Sequence[AsyncDatabase] | None = None,
        replica_retry_after: float = DEFAULT_RETRY_AFTER,
        **kwargs: Any,
    ) -> None:
        self._allow_sync: AllowSync = True
        self._replicas: ReplicaSet | None = None
        # Set by reads_on_primary(): this task's reads (and its child tasks') stay on the primary.
        self._primary_reads: contextvars.ContextVar[bool] = contextvars.ContextVar(
            f"peewee_async_primary_reads_{id(self)}", default=False
        )
        self._pool: Pool | None = None
        self._pool_opening: asyncio.Task[Pool] | None = None
        # Which transaction, if any, the running task has open on this database.
        # A child task inherits the value but not the transaction: the value
        # names its owner task (see transactions.TaskTransactions).
        self._task_transactions: contextvars.ContextVar[TaskTransactions | None] = contextvars.ContextVar(
            f"peewee_async_transactions_{id(self)}", default=None
        )
        # The root transactions open now, in any task: close_async() cuts them off.
        self._root_transactions: set[TaskTransactions] = set()
        # Set by peewee_async.testing.rollback(): one transaction that every task shares.
        self._pinned: PinnedTransaction | None = None
        options = {
            "max_connections": max_connections,
            "min_connections": min_connections,
            "acquire_timeout": acquire_timeout,
            "connect_timeout": connect_timeout,
            "query_timeout": query_timeout,
            "statement_cache_size": statement_cache_size,
            "replica_retry_after": replica_retry_after,
            "replicas": replicas,
        }
        if "connection_timeout" in kwargs:  # connect_timeout's name in 0.x: init() reads it
            if connect_timeout != _OPTIONS["connect_timeout"]:
                raise _both_timeouts()
            del options["connect_timeout"]
        # peewee's __init__ hands every option on to init(), which sets them.
        super().__init__(database, *args, **options, **kwargs)  # type: ignore[call-arg]

    def init(self, database: str | None, *args: Any, **kwargs: Any) -> None:
        """Set the database up anew, as peewee's ``init()``; it takes the options of the constructor too.

        An option left out keeps its value (its default, the first time).
        Changed pool options take effect when the pool next opens (after
        :meth:`close_async`, or at the first query).
        """
        options = {name: kwargs.pop(name) for name in _OPTIONS if name in kwargs}
        if "connection_timeout" in kwargs:  # its name in 0.x
            if "connect_timeout" in options:
                raise _both_timeouts()
            options["connect_timeout"] = kwargs.pop("connection_timeout")
        replicas = kwargs.pop("replicas", _KEEP)
        if replicas is not _KEEP and replicas:
            check_replicas(self, replicas)
        self._set_options(**options)
        self._check_options(database)
        if replicas is not _KEEP:
            self._replicas = ReplicaSet(replicas, self.replica_retry_after) if replicas else None
        elif self._replicas is not None:
            self._replicas.retry_after = self.replica_retry_after
        self.driver.init_options(kwargs)
        super().init(database, *args, **kwargs)  # type: ignore[misc]
        # Compiled statements (peewee_async.shapes) may depend on anything init() sets.
        self.statement_cache = StatementCache(self.describe(), self.statement_cache_size)

    def options_error(self, exc: BaseException) -> TypeError:
        """The error for connect arguments that the driver refused: its message, and our options."""
        ours = ", ".join(_OPTIONS)
        passed = sorted(getattr(self, "connect_params", {}))
        hints = [
            f"{name!r} (did you mean {match[0]!r}?)"
            for name in passed
            if (match := difflib.get_close_matches(name, [*_OPTIONS, "connection_timeout"], n=1))
        ]
        hint = f" Misspelt: {', '.join(hints)}." if hints else ""
        return TypeError(
            f"{self.driver.name} refused the connect arguments of {self.describe()}: "
            f"{driver_message(exc)}.{hint} The options of {type(self).__name__} itself are {ours}; "
            f"everything else ({', '.join(passed) or 'nothing'}) goes to {self.driver.name} and to "
            "peewee's sync connection."
        )

    def _check_options(self, database: Any) -> None:
        """Raise ``ValueError`` for options that cannot work together for this family."""

    def _set_options(self, **options: Any) -> None:
        current = {name: getattr(self, name, default) for name, default in _OPTIONS.items()}
        new = {**current, **options}
        max_connections = new["max_connections"]
        max_connections = self.default_max_connections if max_connections is None else max_connections
        if max_connections < 1:
            raise ValueError(f"max_connections must be at least 1, got {max_connections!r}")
        min_connections = new["min_connections"]
        if not 0 <= min_connections <= max_connections:
            raise ValueError(
                f"min_connections must be between 0 and max_connections={max_connections}, "
                f"got {min_connections!r}"
            )
        retry_after = new["replica_retry_after"]
        if retry_after is None or retry_after < 0:
            raise ValueError(f"replica_retry_after must be 0 or more seconds, got {retry_after!r}")
        if new["statement_cache_size"] < 0:
            raise ValueError(f"statement_cache_size must be 0 or more, got {new['statement_cache_size']!r}")
        self.max_connections = max_connections
        self.min_connections = min_connections
        self.acquire_timeout = new["acquire_timeout"]
        self.connect_timeout = new["connect_timeout"]
        self.query_timeout = new["query_timeout"]
        self.statement_cache_size = new["statement_cache_size"]
        self.replica_retry_after = new["replica_retry_after"]

    @property
    def _open_transactions(self) -> int:
        """Transactions open on this database: every task's roots, and rollback()'s shared one."""
        return len(self._root_transactions) + (self._pinned is not None)

    # -- description -----------------------------------------------------

    def describe(self) -> str:
        """``ClassName('name' on host:port)``, for error messages."""
        params = getattr(self, "connect_params", {})
        where = ""
        if "host" in params or "port" in params:
            port = params.get("port")
            where = f" on {params.get('host', 'localhost')}" + (f":{port}" if port else "")
        name = getattr(self, "database", None)
        if isinstance(name, str):
            name = redact_url(name)  # a libpq URL or connection string may hold the password
        return f"{type(self).__name__}({name!r}{where})"

    def __repr__(self) -> str:
        return f"<{self.describe()}>"

    def connect_error_message(self, exc: BaseException) -> str:
        """The message of a connection that failed with ``exc``: the driver's reason and how to fix it."""
        reason = driver_message(exc)
        advice = self.connect_advice(reason)
        if advice:
            reason = f"{reason.rstrip('.')}. {advice}"
        return f"Could not connect to {self.describe()}: {reason}"

    def connect_advice(self, message: str) -> str:
        """What to add to the ``message`` of a connection that failed: how to fix the settings that
        caused it (the family's TLS settings), or ``""``."""
        return ""

    # -- the sync guard --------------------------------------------------

    @property
    def allow_sync(self) -> AllowSync:
        """``True`` (sync queries run), ``False`` (they raise) or a logging level (they log)."""
        return self._allow_sync

    @allow_sync.setter
    def allow_sync(self, value: AllowSync) -> None:
        if not isinstance(value, int):
            raise TypeError(
                f"allow_sync takes True, False or a logging level such as logging.WARNING, got {value!r}"
            )
        # 0 and 1 are False and True, not logging levels (those start at DEBUG = 10).
        self._allow_sync = bool(value) if value in (0, 1) else value

    def set_allow_sync(self, value: AllowSync) -> None:
        """Same as assigning :attr:`allow_sync`."""
        self.allow_sync = value

    def _check_sync(self, sql: str) -> None:
        allowed = self._allow_sync
        if allowed is True:
            return
        if allowed is False:
            raise SyncQueryError(
                f"Synchronous query on {self.describe()} while allow_sync is False: {sql}\n"
                "Run it through the async API instead (e.g. `await objects.execute(query)`, "
                "`await objects.get(Model, ...)`, `async with objects.atomic():`), or allow it "
                "for a block with `with objects.allow_sync():`."
            )
        logger.log(allowed, "Synchronous query on %s: %s", self.describe(), sql)

    def execute_sql(self, sql: str, *args: Any, **kwargs: Any) -> Any:
        self._check_sync(sql)
        return super().execute_sql(sql, *args, **kwargs)  # type: ignore[misc]

    # peewee sends BEGIN, COMMIT and ROLLBACK straight to a cursor, not through
    # execute_sql, so the guard has to stand at each of them too.

    def begin(self, *args: Any, **kwargs: Any) -> Any:
        self._check_sync("BEGIN")
        return super().begin(*args, **kwargs)  # type: ignore[misc]

    def commit(self, *args: Any, **kwargs: Any) -> Any:
        self._check_sync("COMMIT")
        return super().commit(*args, **kwargs)  # type: ignore[misc]

    def rollback(self, *args: Any, **kwargs: Any) -> Any:
        self._check_sync("ROLLBACK")
        return super().rollback(*args, **kwargs)  # type: ignore[misc]

    # -- the async pool --------------------------------------------------

    @property
    def is_connected(self) -> bool:
        """Whether the async pool is open on the running (or last used) event loop."""
        return self._pool is not None

    @property
    def pool(self) -> Pool | None:
        """The async pool, once a query or :meth:`connect_async` has opened it."""
        return self._pool

    async def connect_async(
        self, loop: asyncio.AbstractEventLoop | None = None, timeout: float | None = None
    ) -> None:
        """Open the async pool now rather than at the first query.

        ``loop`` is accepted for compatibility with 0.x and must be the running
        loop if given; ``timeout`` bounds how long opening may take.
        """
        running = asyncio.get_running_loop()
        if loop is not None and loop is not running:
            raise WrongLoopError(
                "connect_async(loop=...) must name the running event loop; the pool always "
                "opens on the loop that awaits it, so the argument can simply be dropped."
            )
        await self._get_pool(timeout)

    async def close_async(self) -> None:
        """Close every async connection, its replicas' too. The database reopens at the next query.

        A transaction open meanwhile, in this task or another, is cut off:
        its connection is closed now, so the server rolls it back; its next
        statement and its commit raise :class:`~peewee_async.ConnectionLost`,
        and a block already raising an exception of its own keeps raising
        that. A transaction never continues on a new connection. Inside
        :func:`peewee_async.testing.rollback` it raises
        :class:`~peewee_async.TransactionError`.
        """
        if self._pinned is not None:
            raise TransactionError(
                f"Cannot close {self.describe()}: {self._open_transactions} transaction(s) "
                "are still open. Let their `async with` blocks finish first: rollback() is "
                "active, and closing would end the isolation of the test."
            )
        for held in list(self._root_transactions):
            if isinstance(held.pool, Pool):
                held.pool.cut(held.connection)
        opening, self._pool_opening = self._pool_opening, None
        pool, self._pool = self._pool, None
        if opening is not None and pool is None and not opening.done():
            opening.cancel()
        if pool is not None:
            if pool.loop is asyncio.get_running_loop():
                await pool.close(self.acquire_timeout)
            else:
                pool.abandon()
        for replica in self.replicas:
            await replica.close_async()

    async def _get_pool(self, timeout: float | None = None) -> Pool:
        pool = self._pool
        loop = asyncio.get_running_loop()
        if pool is not None and pool.loop is loop:
            return pool
        if pool is not None:
            self._forget_pool_of_other_loop(pool)
        opening = self._pool_opening
        if opening is None or opening.get_loop() is not loop:
            opening = self._pool_opening = loop.create_task(self._open_pool(timeout))
        try:
            # Shielded: one waiter's cancellation must not abort the opening
            # that other tasks are waiting for too.
            return await asyncio.shield(opening)
        except BaseException:
            if opening.done() and self._pool_opening is opening:
                self._pool_opening = None
            raise

    def _forget_pool_of_other_loop(self, pool: Pool) -> None:
        if not pool.loop.is_closed() and pool.loop.is_running():
            raise WrongLoopError(
                f"{self.describe()} is in use on another running event loop. A database's "
                "async connections belong to one loop: create one database object per loop, "
                "or close_async() it on the first loop before using it on another."
            )
        # The old loop has stopped: its connections cannot be used from here.
        # Close their sockets and open anew on this loop.
        self._pool = None
        pool.abandon()

    async def _open_pool(self, timeout: float | None) -> Pool:
        if getattr(self, "deferred", False):
            raise peewee.InterfaceError(
                "Error, database must be initialized before opening a connection: "
                "call database.init(name, ...) first."
            )
        pool = Pool(self, self.driver, self.min_connections, self.max_connections, self.acquire_timeout)
        timeout = timeout if timeout is not None else self.connect_timeout
        try:
            async with asyncio.timeout(timeout):
                await pool.open()
        except peewee.OperationalError as exc:
            await pool.close(0)
            raise mark_unreachable(type(exc)(self.connect_error_message(exc))) from exc
        except TimeoutError:
            await pool.close(0)
            raise mark_unreachable(
                peewee.OperationalError(f"Could not connect to {self.describe()} within {timeout}s.")
            ) from None
        if self.server_version is None:
            await self._read_server_version(pool)
        self._pool = pool
        return pool

    async def _read_server_version(self, pool: Pool) -> None:
        """Set the server version from a connection of ``pool`` (ours, or a replica's).

        peewee reads it at its sync connect(), and the version changes the
        SQL it writes (e.g. MySQL's compound-select parentheses): it is read
        before the first async query is compiled.
        """
        conn = await pool.acquire()
        try:
            self._set_server_version(pool.driver.version_source(conn))
        finally:
            pool.release(conn)

    # -- task-local transactions ----------------------------------------

    def _current_transactions(self) -> TaskTransactions | None:
        """The transactions the running task holds open on this database, if any."""
        if self._pinned is not None:
            return self._pinned.current()
        state = self._task_transactions.get()
        if state is None:
            return None
        try:
            task = asyncio.current_task()
        except RuntimeError:
            return None
        return state if state.task is task else None

    def in_transaction_async(self) -> bool:
        """Whether the running task is inside ``atomic()``/``transaction()`` on this database."""
        return self._current_transactions() is not None

    def transaction_depth_async(self) -> int:
        """How many transaction blocks the running task has open on this database (0 outside them)."""
        held = self._current_transactions()
        return 0 if held is None else len(held.blocks)

    def transaction_conn_async(self) -> Any:
        """The driver's connection of the running task's transaction, or ``None`` outside one.

        For reading its state (e.g. the server's process id); statements sent
        on it directly bypass the transaction's bookkeeping.
        """
        held = self._current_transactions()
        return None if held is None else held.connection.raw

    def atomic_async(self) -> Transaction:
        """Async context manager like peewee's ``atomic()``: a transaction, or a savepoint when nested."""
        return Transaction(self, "atomic")

    def transaction_async(self) -> Transaction:
        """Async context manager like peewee's ``transaction()``."""
        return Transaction(self, "transaction")

    def savepoint_async(self, sid: str | None = None) -> Transaction:
        """Async context manager like peewee's ``savepoint()``; needs an open transaction."""
        return Transaction(self, "savepoint", sid=sid)

    # -- read replicas -----------------------------------------------------

    @property
    def replicas(self) -> tuple[AsyncDatabase, ...]:
        """The read replicas given with ``replicas=``, in the order reads take them."""
        return () if self._replicas is None else self._replicas.members

    def reads_on_primary(self) -> PrimaryReads:
        """``async with db.reads_on_primary():`` reads of the block run on this database, not a replica.

        For reading what was just committed (a replica may not have it yet).
        It holds for the running task and the tasks it starts inside the
        block; without replicas it changes nothing. ``with`` works too.
        """
        return PrimaryReads(self._primary_reads)

    async def _replica_pool(self) -> Pool | None:
        """The pool of the replica that takes the next read, or ``None`` when every one is down."""
        replicas = self._replicas
        assert replicas is not None
        while (replica := replicas.pick()) is not None:
            pool = replica._pool
            if pool is None or pool.loop is not asyncio.get_running_loop():
                try:
                    pool = await replica._get_pool()
                except UNREACHABLE_ERRORS as exc:
                    if not unreachable(exc):
                        raise
                    replicas.failed(replica, exc)
                    continue
            if self.server_version is None:
                # Reads alone never open our own pool, which reads it.
                await self._read_server_version(pool)
            return pool
        return None

    def _replica_failed(self, source: ConnectionSource, error: BaseException) -> bool:
        """Whether ``error``, raised on ``source``, came from a replica going away (now skipped)."""
        replica = getattr(source, "database", self)
        if replica is self or self._replicas is None or not unreachable(error):
            return False
        self._replicas.failed(replica, error)
        return True

    async def _read_on_replica(
        self, source: ConnectionSource, sql: str, params: Sequence[Any], query_timeout: float | None
    ) -> FetchedCursor:
        """Run a read on ``source``, a replica's pool; if the replica is gone, run it again elsewhere.

        The server that runs it bounds it with its own ``query_timeout`` (as it
        does its streams), unless the call gave one.
        """
        while True:
            started = time.monotonic()
            runner: Any = getattr(source, "database", self)
            timeout = runner.query_timeout if query_timeout is None else query_timeout
            try:
                result = await source.execute(None, sql, params, timeout)
            except UNREACHABLE_ERRORS as exc:
                if not self._replica_failed(source, exc):
                    raise
                source, _ = await self._connection(Intent.READ)
                continue
            if self._replicas is not None and self._replicas.down:
                self._replicas.answered(getattr(source, "database", self), started)
            return result

    # -- where statements run ---------------------------------------------

    async def _connection(
        self, intent: Intent, held: TaskTransactions | None = None
    ) -> tuple[ConnectionSource, ConnectionHolder | None]:
        """Where a statement of ``intent`` runs: ``(source, connection)``.

        The one place that picks a connection. The running task's transaction
        (or the shared one of :func:`peewee_async.testing.rollback`) takes
        every statement of the task: its source and connection. A read or a
        stream outside one goes to a replica, if the database has replicas
        that are up and the task is not inside :meth:`reads_on_primary`.
        Otherwise the pool, opened on the running loop first if need be
        (which reads the server version that peewee's SQL may depend on),
        with ``None``: the statement borrows a connection for itself alone.
        ``held``, when the caller knows the transaction already, saves
        looking it up.
        """
        if held is None:
            held = self._current_transactions()
        if held is not None:
            return held.pool, held.connection
        if (
            self._replicas is not None
            and (intent is Intent.READ or intent is Intent.STREAM)
            and not self._primary_reads.get()
        ):
            replica_pool = await self._replica_pool()
            if replica_pool is not None:
                return replica_pool, None
        pool = self._pool
        if pool is None or pool.loop is not asyncio.get_running_loop():
            pool = await self._get_pool()
        return pool, None

    async def _hold(self, intent: Intent) -> tuple[ConnectionSource, ConnectionHolder, bool]:
        """A connection for work of several statements (a transaction, a stream).

        ``(source, conn, borrowed)``.

        Picked by :meth:`_connection`; a ``borrowed`` one goes back with ``source.release(conn)``.
        """
        source, conn = await self._connection(intent)
        if conn is not None:
            return source, conn, False
        while True:
            try:
                return source, await source.acquire(), True
            except UNREACHABLE_ERRORS as exc:
                if not self._replica_failed(source, exc):
                    raise
                source, _ = await self._connection(intent)

    # -- running SQL -----------------------------------------------------

    async def execute_sql_async(
        self, sql: str, params: Sequence[Any] | None = None, query_timeout: float | None = None
    ) -> FetchedCursor:
        """Run one statement and return its fetched result.

        Inside the running task's transaction it runs on that transaction's
        connection; otherwise it borrows a connection for this statement only.
        ``query_timeout`` overrides the database's for this statement.
        """
        if self.driver.translates_sql:
            sql = self.driver.driver_sql(sql)
        return await self._execute(Intent.WRITE, sql, params or (), query_timeout=query_timeout)

    async def _execute(
        self,
        intent: Intent,
        statement: str | Any,
        params: Sequence[Any] = (),
        held: TaskTransactions | None = None,
        query_timeout: float | None = None,
    ) -> FetchedCursor:
        """Run one statement where :meth:`_connection` puts it, and read its whole result.

        ``statement`` is SQL with its ``params``, or a peewee query, compiled
        once the pool is open (:func:`~peewee_async.compiler.compile_query`).
        """
        source, conn = await self._connection(intent, held)
        if type(statement) is str:
            sql = statement
        else:
            sql, params = compile_query(self, statement)
        if query_logger.isEnabledFor(logging.DEBUG):
            query_logger.debug((sql, params))
        if self._replicas is None or conn is not None or getattr(source, "database", self) is self:
            timeout = self.query_timeout if query_timeout is None else query_timeout
            running = source.execute(conn, sql, params, timeout)
        else:
            running = self._read_on_replica(source, sql, params, query_timeout)
        hooks = getattr(self, "query_hooks", None)
        if not hooks:
            # One await between the caller and the driver: each coroutine layer
            # costs about as much as a tenth of peewee-async's own work per statement.
            return await running
        start = time.perf_counter()
        error: Exception | None = None
        try:
            return await running
        except Exception as exc:
            error = exc
            raise
        finally:
            self._notify_hooks(sql, params, start, error)


_KEEP = object()  # init() without replicas= keeps the ones set before


class PrimaryReads:
    """The context manager of :meth:`AsyncDatabase.reads_on_primary`, for ``async with`` and ``with``."""

    __slots__ = ("_flag", "_tokens")

    def __init__(self, flag: contextvars.ContextVar[bool]) -> None:
        self._flag = flag
        self._tokens: list[contextvars.Token[bool]] = []

    def __enter__(self) -> None:
        self._tokens.append(self._flag.set(True))

    def __exit__(self, *exc_info: object) -> None:
        self._flag.reset(self._tokens.pop())

    async def __aenter__(self) -> None:
        self.__enter__()

    async def __aexit__(self, *exc_info: object) -> None:
        self.__exit__()


def _both_timeouts() -> TypeError:
    return TypeError("pass connect_timeout or connection_timeout (its 0.x name), not both")
