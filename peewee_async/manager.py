"""The Manager: one object for every async call on one database."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, TypeVar, overload

import peewee

from . import operations
from .databases.base import AllowSync, AsyncDatabase
from .execution import database_of, execute
from .streaming import DEFAULT_CHUNK_SIZE, RowStream
from .streaming import iterate as _iterate
from .transactions import Transaction

M = TypeVar("M", bound=peewee.Model)


class Manager:
    """Async peewee models manager.

    :param database: the async database (or define ``database`` as a class attribute).
    :param loop: accepted for compatibility with 0.x and unused: connections
        open on the loop that awaits them.

    Example::

        objects = Manager(PostgresqlDatabase('test'))

        async def handler():
            user = await objects.create(User, username='test')
            same = await objects.get(User, id=user.id)
    """

    #: The async database of this manager, given to the constructor or set on a subclass.
    database: AsyncDatabase | None = None

    def __init__(
        self, database: AsyncDatabase | None = None, *, loop: asyncio.AbstractEventLoop | None = None
    ):
        if database is not None:
            self.database = database
        if self.database is None:
            raise peewee.ImproperlyConfigured(
                "Manager needs a database: pass it, Manager(database), or set it on a subclass "
                "(class MyManager(Manager): database = ...)."
            )
        if not isinstance(self.database, AsyncDatabase):
            raise peewee.ImproperlyConfigured(
                f"{type(self.database).__name__} is a sync peewee database. Give the Manager one of "
                "peewee_async's database classes (e.g. peewee_async.PostgresqlDatabase)."
            )
        self.loop = loop

    @property
    def _db(self) -> AsyncDatabase:
        assert self.database is not None  # checked in __init__
        return self.database

    @property
    def is_connected(self) -> bool:
        """Whether the database's async pool is open."""
        return self._db.is_connected

    async def connect(self) -> None:
        """Open the database's async connections now; queries also open them when needed."""
        await self._db.connect_async()

    async def close(self) -> None:
        """Close the database's async connections; a later query opens them again."""
        await self._db.close_async()

    # -- queries -----------------------------------------------------------

    @overload
    async def get(self, source_: type[M], *args: Any, **kwargs: Any) -> M: ...
    @overload
    async def get(self, source_: Any, *args: Any, **kwargs: Any) -> Any: ...
    async def get(self, source_: Any, *args: Any, **kwargs: Any) -> Any:
        """The model instance matching a model and lookups, or a select query.

        Raises the model's ``DoesNotExist`` when nothing matches. Example::

            obj1 = await objects.get(MyModel, id=1)
            obj2 = await objects.get(MyModel, MyModel.id == 1)
            obj3 = await objects.get(MyModel.select().where(MyModel.id == 1))
        """
        return await operations.get(self._db, source_, *args, **kwargs)

    async def create(self, model_: type[M], **data: Any) -> M:
        """Insert a new row and return the instance, its primary key set."""
        return await operations.create(self._db, model_, **data)

    async def update(self, obj: peewee.Model, only: Any = None) -> int:
        """Write the instance's fields (or ``only`` those: fields or names); returns rows updated.

        Does not call an overridden ``save()``; use :meth:`create` for new rows.
        """
        return await operations.update(self._db, obj, only=only)

    async def delete(self, obj: peewee.Model, recursive: bool = False, delete_nullable: bool = False) -> int:
        """Delete the instance's row; with ``recursive`` also rows that depend on it."""
        return await operations.delete(self._db, obj, recursive=recursive, delete_nullable=delete_nullable)

    async def get_or_create(
        self, model_: type[M], defaults: dict[str, Any] | None = None, **kwargs: Any
    ) -> tuple[M, bool]:
        """``(instance, created)``: the row matching ``kwargs``, or a new one with ``defaults``."""
        return await operations.get_or_create(self._db, model_, defaults, **kwargs)

    async def create_or_get(self, model_: type[M], **kwargs: Any) -> tuple[M, bool]:
        """``(instance, created)``: a new row, or the existing one with the same unique values."""
        return await operations.create_or_get(self._db, model_, **kwargs)

    async def execute(self, query: Any) -> Any:
        """Run a query: rows for a select, the new key for an insert, a row count for update/delete."""
        return await execute(database_of(query, self._db), query)

    def iterate(self, query: Any, chunk_size: int = DEFAULT_CHUNK_SIZE) -> RowStream:
        """Stream the rows of a select, ``chunk_size`` at a time, with bounded memory.

        The rows are what :meth:`execute` would give. The loop holds a connection
        until it ends; see :doc:`streaming`. Example::

            async with objects.iterate(User.select()) as users:
                async for user in users:
                    ...
        """
        return _iterate(self._db, query, chunk_size)

    async def prefetch(self, query: Any, *subqueries: Any, **kwargs: Any) -> list[Any]:
        """Rows of ``query`` with the related rows of each subquery attached, as peewee's ``prefetch``."""
        return await operations.prefetch(self._db, query, *subqueries, **kwargs)

    async def count(self, query: Any, clear_limit: bool = False) -> int:
        """The number of rows a select query returns."""
        return await operations.count(self._db, query, clear_limit=clear_limit)

    async def scalar(self, query: Any, as_tuple: bool = False) -> Any:
        """The first value of the first row (the whole row with ``as_tuple``), e.g. for aggregates."""
        return await operations.scalar(self._db, query, as_tuple=as_tuple)

    # -- transactions --------------------------------------------------------

    def atomic(self) -> Transaction:
        """``async with objects.atomic():`` a transaction, or a savepoint when nested."""
        return self._db.atomic_async()

    def transaction(self) -> Transaction:
        """``async with objects.transaction():`` a transaction; nested, it joins the outer one."""
        return self._db.transaction_async()

    def savepoint(self, sid: str | None = None) -> Transaction:
        """``async with objects.savepoint():`` a savepoint inside the running task's transaction."""
        return self._db.savepoint_async(sid)

    # -- sync code -------------------------------------------------------------

    @contextmanager
    def allow_sync(self) -> Iterator[None]:
        """Allow sync queries inside the block; closes the sync connection on the way out.

        The previous ``allow_sync`` setting comes back even when the block raises.
        Example::

            with objects.allow_sync():
                PageBlock.create_table(True)
        """
        db = self._db
        previous: AllowSync = db.allow_sync
        db.allow_sync = True
        try:
            yield
        finally:
            try:
                if not db.is_closed() and not db.in_transaction():  # type: ignore[attr-defined]
                    db.close()  # type: ignore[attr-defined]
            finally:
                db.allow_sync = previous
