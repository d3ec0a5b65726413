"""Streaming the rows of a select: ``async for row in objects.iterate(query)``.

``execute()`` reads the whole result before it returns; :class:`RowStream`
reads it from the server a chunk at a time, so memory stays bounded however
many rows the query returns. Each driver streams in its own way behind one
method of the driver contract
(:meth:`~peewee_async.databases.driver.Driver.open_stream`): a server-side
cursor on PostgreSQL, an unbuffered ``SSCursor`` on MySQL, ``fetchmany`` on
SQLite. Each chunk's rows are made as ``execute()`` makes them (a plain
model select's instances directly, see :mod:`.shapes`; anything
else through the query's own peewee cursor wrapper), so they are the same
model instances, dicts, tuples or named tuples that ``execute()`` gives.

The stream holds one connection from its first row until it is closed: the
running task's transaction connection inside ``atomic()``, else a connection of
its own from the pool. That connection takes no other statement meanwhile;
see ``docs/streaming.rst`` for the whole story.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections.abc import Callable, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any

import peewee

from . import row_plans, shapes
from .compiler import compile_query
from .databases.driver import driver_message
from .errors import ConnectionLost, QueryTimeout
from .execution import database_of, read_intent
from .intent import Intent

if TYPE_CHECKING:
    from .databases.base import AsyncDatabase
    from .databases.driver import ConnectionHolder, RawStream
    from .databases.leases import StreamLease
    from .databases.pool import ConnectionSource

query_logger = logging.getLogger("peewee")
logger = logging.getLogger("peewee.async")

#: Rows read from the server at a time.
DEFAULT_CHUNK_SIZE = 1000


class _Description:
    """What peewee's cursor wrappers read off a cursor to set themselves up."""

    __slots__ = ("description",)

    def __init__(self, description: Sequence[Sequence[Any]] | None) -> None:
        self.description = description


class RowStream:
    """The rows of one select query, read from the server a chunk at a time.

    An async iterator and an async context manager. The query runs when the
    first row is asked for; the stream ends, and gives its connection back, when
    the rows run out, when :meth:`aclose` is awaited (``async with`` and
    ``contextlib.aclosing`` do that), or as soon as nothing refers to it any
    more (a loop left with ``break`` or an exception). Example::

        async with objects.iterate(User.select().order_by(User.id)) as users:
            async for user in users:
                ...
    """

    _finished = True  # until __init__ has checked its arguments: nothing to close
    _lease: StreamLease | None = None

    def __init__(self, database: AsyncDatabase, query: Any, chunk_size: int = DEFAULT_CHUNK_SIZE) -> None:
        if not isinstance(query, (peewee.SelectBase, peewee.RawQuery)):
            raise TypeError(
                f"iterate() streams the rows of a select query, got {query!r}. Run inserts, "
                "updates and deletes with `await objects.execute(query)`."
            )
        if getattr(query, "_load_tree", None):
            raise NotImplementedError(
                "with_related() loads its relations with more sync queries; iterate over the "
                "query without it, or use `await objects.prefetch(query, RelatedModel)`."
            )
        if chunk_size < 1:
            raise ValueError(f"chunk_size must be at least 1, got {chunk_size!r}")
        self.database = database
        self.query: Any = query
        self.chunk_size = chunk_size
        self._started = False
        self._finished = False
        self._pool: ConnectionSource | None = None
        self._conn: ConnectionHolder | None = None
        self._raw: RawStream | None = None
        self._process: Callable[[Sequence[Sequence[Any]]], Sequence[Any]] | None = None
        self._rows: Sequence[Any] = ()
        self._index = 0

    def __repr__(self) -> str:
        state = "finished" if self._finished else "open" if self._started else "not started"
        return f"<RowStream of {self.query}: {state}>"

    # -- iteration -------------------------------------------------------

    def __aiter__(self) -> RowStream:
        return self

    async def __anext__(self) -> Any:
        index = self._index
        if index < len(self._rows):
            self._index = index + 1
            return self._rows[index]
        return await self._next_chunk()

    async def _next_chunk(self) -> Any:
        if not self._started:
            try:
                await self._start()
            except BaseException:
                self._finished = True  # a stream that failed to start is over
                raise
        elif self._finished:
            lease = self._lease
            if lease is not None and lease.ended:
                raise peewee.InterfaceError(
                    f"This iterate() loop was closed because {lease.ended}. Finish the loop "
                    "inside the `async with objects.atomic():` block it started in."
                )
            raise StopAsyncIteration
        assert self._pool is not None and self._conn is not None and self._raw is not None
        try:
            rows = await self._pool.fetch_stream(self._conn, self._raw)
        except BaseException as exc:
            self._begin_close()
            self._raise_if_lost(exc)
            raise
        if not rows:
            await self.aclose()
            raise StopAsyncIteration
        if self._process is None:
            self._process = self._row_maker()
        # A chunk at a time: the rows of one chunk are in memory already.
        self._rows = row_plans.build_paused(self._process, rows)
        self._index = 1
        return self._rows[0]

    def _row_maker(self) -> Callable[[Sequence[Sequence[Any]]], Sequence[Any]]:
        """What makes a chunk of rows into what ``execute()`` would give for them."""
        build = shapes.select_row_builder(self.database, self.query)
        if build is not None:
            return build  # a plain model select: instances made directly, as execute() does
        assert self._raw is not None
        wrapper = self.query._get_cursor_wrapper(_Description(self._raw.description))
        wrapper.initialize()
        process = wrapper.process_row
        return lambda rows: [process(row) for row in rows]

    async def _start(self) -> None:
        self._started = True
        database = self.database
        intent = Intent.STREAM if database._replicas is None else read_intent(self.query, Intent.STREAM)
        pool, conn, owned = await database._hold(intent)
        try:
            sql, params = compile_query(database, self.query)
            if query_logger.isEnabledFor(logging.DEBUG):
                query_logger.debug((sql, params))
            if not owned:
                await pool.streams.wait_closed(conn)  # refuses while another loop streams on it
            # The pool refers to the stream weakly: a loop left with `break` must
            # be able to drop the stream at once.
            ref = weakref.WeakMethod(self._begin_close)
            self._lease = pool.streams.lend(conn, owned, lambda: (method := ref()) and method())
        except BaseException:
            if owned:
                pool.release(conn)
            raise
        self._pool, self._conn = pool, conn
        try:
            self._raw = await pool.open_stream(conn, sql, params, self.chunk_size)
        except BaseException as exc:
            self._begin_close()
            self._raise_if_lost(exc)
            raise

    def _raise_if_lost(self, exc: BaseException) -> None:
        """Raise :class:`ConnectionLost` for a driver error that came with the connection's end.

        As for a statement (``Pool._connection_lost_error``): the driver's own
        message ("server closed the connection unexpectedly", "Lost connection
        to MySQL server during query") does not say what became of the rows or
        of the transaction.
        """
        pool, lease = self._pool, self._lease
        if not isinstance(exc, peewee.OperationalError | peewee.InterfaceError):
            return
        if isinstance(exc, ConnectionLost | QueryTimeout):  # these say it already
            return
        if pool is None or lease is None or self._conn is None or not pool.is_closed(self._conn):
            return
        if lease.owned:
            what = (
                "the loop got the rows read so far and no more. The next query takes another "
                "connection; run the loop again to read every row"
            )
        else:
            what = (
                "the server rolled the transaction back, nothing of it was committed. Leave the "
                "`async with` block and run the whole transaction again"
            )
        raise ConnectionLost(
            f"The connection to {self.database.describe()} was lost during an iterate() loop "
            f"({driver_message(exc)}): {what}."
        ) from exc

    # -- closing -----------------------------------------------------------

    async def aclose(self) -> None:
        """End the stream now and give its connection back; rows left unread are dropped."""
        if not self._started:
            self._started = self._finished = True
            return
        closing = self._begin_close()
        if closing is not None:
            # Shielded: a cancellation of the caller does not stop the cleanup.
            await asyncio.shield(closing)

    def _begin_close(self) -> asyncio.Task[None] | None:
        """Start the task that ends the stream (once); it is also what statements on the connection await."""
        self._finished = True
        self._rows = ()
        lease = self._lease
        if lease is None or self._pool is None:
            return None
        if lease.closing is None and self._conn is not None:
            lease.closing = self._pool.in_background(_end_stream(self._pool, self._conn, lease, self._raw))
        return lease.closing

    def __del__(self) -> None:
        # A loop left with `break` or an exception drops the stream at once (no
        # other reference to it is left): end it now, so the next statement on
        # its connection only has to wait for that.
        if self._finished or self._lease is None or self._pool is None:
            return
        if self._pool.loop.is_closed():
            return
        try:
            closing = self._begin_close()
        except RuntimeError:  # the loop is shutting down
            return
        if closing is not None:
            closing.add_done_callback(_log_failure)

    async def __aenter__(self) -> RowStream:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()


async def _end_stream(
    pool: ConnectionSource, conn: ConnectionHolder, lease: StreamLease, raw: RawStream | None
) -> None:
    """Leave ``conn`` ready for its next statement and end the lease; give it back if the stream owns it."""
    try:
        if raw is not None and not pool.is_interrupted(conn):
            await pool.close_stream(conn, raw)
    except Exception:
        # The connection may be left mid-result: never reuse it. Inside a
        # transaction this ends the transaction (closing it rolls back).
        logger.debug("Closing a row stream failed; dropping its connection", exc_info=True)
        conn.interrupted = True
    finally:
        pool.end_lease(conn, lease)
        if lease.owned:
            pool.release(conn)


def _log_failure(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        logger.warning("Closing an abandoned iterate() loop failed", exc_info=task.exception())


def iterate(database: AsyncDatabase | None, query: Any, chunk_size: int = DEFAULT_CHUNK_SIZE) -> RowStream:
    """A :class:`RowStream` of ``query`` on its database (or ``database`` for an unbound model)."""
    return RowStream(database_of(query, database), query, chunk_size)
