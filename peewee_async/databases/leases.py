"""Connections lent to row streams: which ones, to which task, and what other statements do meanwhile.

An ``iterate()`` loop (:mod:`peewee_async.streaming`) holds its connection from
its first row until it is closed, because the server is still sending the
rows. A statement sent to that connection before the loop began closing is
refused with an error naming the fix; one sent after waits until the close
has left the connection ready.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import peewee

if TYPE_CHECKING:
    from .base import AsyncDatabase


class StreamLease:
    """A connection lent to one row stream, from its first row until it is closed.

    :attr:`closing` is the task that ends the stream once that has begun: a
    statement sent to the connection meanwhile waits for it, while a statement
    sent before it has begun is refused (see :meth:`StreamLeases.wait_closed`).
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


class StreamLeases(dict[Any, StreamLease]):
    """The leases of one pool's connections, by connection.

    A dict, so that ``if pool.streams:``, which every statement asks, costs no
    Python call.
    """

    def __init__(self, database: AsyncDatabase) -> None:
        super().__init__()
        self.database = database

    def lend(self, conn: Any, owned: bool, begin_close: Callable[[], object]) -> StreamLease:
        """Mark ``conn`` as busy with a row stream of the running task."""
        if conn in self:
            raise self._busy_error()
        lease = self[conn] = StreamLease(asyncio.current_task(), owned, begin_close)
        return lease

    def end(self, conn: Any, lease: StreamLease) -> bool:
        """The stream is over: ``conn`` takes statements again. False if ``lease`` was already gone."""
        if self.get(conn) is not lease:
            return False
        del self[conn]
        return True

    async def wait_closed(self, conn: Any) -> None:
        """Wait until a stream that is closing on ``conn`` has closed; refuse while one is open."""
        lease = self.get(conn)
        if lease is None:
            return
        if lease.closing is None:
            raise self._busy_error()
        # A stream let go of (its loop left with `break`) is closing: wait for it.
        await asyncio.shield(lease.closing)

    async def close_on(self, conn: Any, reason: str) -> None:
        """Close the stream still open on ``conn`` (its transaction is ending), if any."""
        lease = self.get(conn)
        if lease is None:
            return
        if lease.closing is None:
            lease.ended = reason
            lease.begin_close()
        if lease.closing is not None:
            await asyncio.shield(lease.closing)

    def of_transaction(self, conn: Any) -> StreamLease | None:
        """The lease of a stream running inside the transaction that holds ``conn``, if any."""
        lease = self.get(conn)
        return lease if lease is not None and not lease.owned else None

    def revoke(self, conn: Any, lease: StreamLease, reason: str) -> None:
        """End ``lease`` from outside: the stream's next step says ``reason``."""
        if self.end(conn, lease):
            lease.ended = reason

    def check_not_all_held(self, task: asyncio.Task[Any] | None, max_size: int) -> None:
        """Refuse a new connection for ``task`` when its own streams hold every connection.

        It would wait for one of them for ever: they cannot end while the task waits.
        """
        mine = sum(
            1
            for lease in self.values()
            # A stream that is closing gives its connection back by itself.
            if lease.owned and lease.task is task and lease.closing is None
        )
        if mine >= max_size:
            raise peewee.InterfaceError(
                f"Every connection of {self.database.describe()} (max_connections={max_size}) "
                "is held by an iterate() loop of this task, so this query would wait for ever. "
                "Run the query after the loop, fetch the rows with `await objects.execute(query)` "
                "instead of iterating, or raise max_connections."
            )

    def _busy_error(self) -> peewee.InterfaceError:
        return peewee.InterfaceError(
            f"The connection of {self.database.describe()} is streaming the rows of an iterate() "
            "loop that is still open, and takes no other statement until the loop ends. Finish "
            "or close the loop first (`async with objects.iterate(query) as rows:` closes it at "
            "the end of the block), or fetch the rows with `await objects.execute(query)` to "
            "run queries while going through them."
        )
