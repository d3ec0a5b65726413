"""The Manager: one object for every async call on one database."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, ParamSpec, TypeVar, overload

import peewee

from . import operations
from .databases.base import AllowSync, AsyncDatabase, PrimaryReads
from .execution import database_of, execute
from .prepared import PreparedQuery
from .streaming import DEFAULT_CHUNK_SIZE, RowStream
from .streaming import iterate as _iterate
from .transactions import Transaction

M = TypeVar("M", bound=peewee.Model)
P = ParamSpec("P")


class Manager:
    """Async peewee models manager: every async call on one database.

    :param database: one of peewee-async's database classes; or leave it out
        and set ``database`` as a class attribute of a subclass.
    :param loop: accepted for compatibility with 0.x and unused: connections
        open on the loop that awaits them.
    :raises peewee.ImproperlyConfigured: without a database, or with a sync
        peewee database.

    Each query runs on this manager's database. Its model may be bound to
    this database, to none, or to another database of the same family (a
    Manager per database, shard or replica for one set of models, as in 0.x);
    a model bound to a database of another family raises
    :class:`~peewee_async.WrongDatabaseError`. Every result is read
    completely before the call returns. Example::

        objects = Manager(PooledPostgresqlDatabase('test'))

        async def handler():
            user = await objects.create(User, username='test')
            same = await objects.get(User, id=user.id)

    or with the database on a subclass::

        class MyManager(Manager):
            database = PooledPostgresqlDatabase('test')

        objects = MyManager()
    """

    #: The async database of this manager, given to the constructor or set on a subclass;
    #: or a ``peewee.Proxy``/``peewee.DatabaseProxy`` initialised with one later.
    database: AsyncDatabase | peewee.Proxy | None = None

    def __init__(
        self,
        database: AsyncDatabase | peewee.Proxy | None = None,
        *,
        loop: asyncio.AbstractEventLoop | None = None,
    ):
        if database is not None:
            self.database = database
        if self.database is None:
            raise peewee.ImproperlyConfigured(
                "Manager needs a database: pass it, Manager(database), or set it on a subclass "
                "(class MyManager(Manager): database = ...)."
            )
        target = self.database.obj if isinstance(self.database, peewee.Proxy) else self.database
        if target is not None:
            _check_async(target)
        self.loop = loop

    @property
    def _db(self) -> AsyncDatabase:
        database = self.database
        if isinstance(database, peewee.Proxy):
            # Read at each call: the proxy may be initialised after the Manager was made.
            target = database.obj
            if target is None:
                raise peewee.InterfaceError(
                    "This Manager's database is a proxy that was not initialised: call "
                    "proxy.initialize(database) with a peewee_async database first."
                )
            return _check_async(target)
        assert database is not None  # checked in __init__
        return database

    @property
    def is_connected(self) -> bool:
        """Whether the database's async pool is open (on the running or last used event loop)."""
        return self._db.is_connected

    async def connect(self) -> None:
        """Open the database's async pool now rather than at the first query.

        Opens ``min_connections`` connections, within the database's
        ``connect_timeout``; connection errors come out as peewee's
        ``OperationalError``.
        """
        await self._db.connect_async()

    async def close(self) -> None:
        """Close the database's async connections; a later query opens them again.

        Await it before the event loop that opened them ends (e.g. at the end
        of the coroutine given to ``asyncio.run()``). A transaction open
        meanwhile is cut off: it is rolled back, and its block raises
        :class:`~peewee_async.ConnectionLost` (see :meth:`AsyncDatabase.close_async
        <peewee_async.AsyncDatabase.close_async>`).
        """
        await self._db.close_async()

    # -- queries -----------------------------------------------------------

    @overload
    async def get(self, source_: type[M], *args: Any, **kwargs: Any) -> M: ...
    @overload
    async def get(self, source_: Any, *args: Any, **kwargs: Any) -> Any: ...
    async def get(self, source_: Any, *args: Any, **kwargs: Any) -> Any:
        """The first row matching a model and lookups, or the first row of a select query.

        :param source_: a model class, or a select query of a model.
        :param args: expressions (``Model.field == value``); or a single
            integer, the primary key of a model with an auto-increment key.
        :param kwargs: field lookups, as peewee's ``Model.get(**filters)``.
        :raises DoesNotExist: the model's ``DoesNotExist`` when no row matches.

        Example::

            obj1 = await objects.get(MyModel, id=1)
            obj2 = await objects.get(MyModel, MyModel.id == 1)
            obj3 = await objects.get(MyModel.select().where(MyModel.id == 1))
        """
        return await operations.get(self._db, source_, *args, **kwargs)

    @overload
    async def get_or_none(self, source_: type[M], *args: Any, **kwargs: Any) -> M | None: ...
    @overload
    async def get_or_none(self, source_: Any, *args: Any, **kwargs: Any) -> Any: ...
    async def get_or_none(self, source_: Any, *args: Any, **kwargs: Any) -> Any:
        """Like :meth:`get`, but ``None`` instead of raising ``DoesNotExist`` when no row matches.

        Example::

            user = await objects.get_or_none(User, username='alice')
        """
        try:
            return await operations.get(self._db, source_, *args, **kwargs)
        except peewee.DoesNotExist:
            return None

    async def create(self, model_: type[M], **data: Any) -> M:
        """Insert a new row and return the instance, its primary key set.

        Like ``Model.create(**data)``; an overridden ``save()`` is not called.
        Example::

            user = await objects.create(User, username='alice')
        """
        return await operations.create(self._db, model_, **data)

    async def update(self, obj: peewee.Model, only: Any = None) -> int:
        """Write a saved instance's fields to its row; returns the number of rows updated.

        :param obj: a model instance with a primary key value.
        :param only: the fields (or field names) to write; all by default, or
            the changed ones with ``only_save_dirty = True`` in the model's
            Meta (then nothing is written, and 0 returned, when none changed).
        :raises ValueError: when the instance has no primary key value: insert
            it with :meth:`create` first.

        Does not call an overridden ``save()``. Example::

            user.username = 'bob'
            await objects.update(user, only=[User.username])
        """
        return await operations.update(self._db, obj, only=only)

    async def delete(self, obj: peewee.Model, recursive: bool = False, delete_nullable: bool = False) -> int:
        """Delete the instance's row; returns the number of rows deleted.

        :param recursive: first delete the rows that depend on ``obj`` through
            foreign keys (dependents on a nullable foreign key are set to NULL
            instead), all in one ``atomic()`` block, so a failure deletes nothing.
        :param delete_nullable: with ``recursive``, delete the dependents on
            nullable foreign keys too.

        Like ``Model.delete_instance()``; an overridden one is not called.
        """
        return await operations.delete(self._db, obj, recursive=recursive, delete_nullable=delete_nullable)

    async def get_or_create(
        self, model_: type[M], defaults: dict[str, Any] | None = None, **kwargs: Any
    ) -> tuple[M, bool]:
        """``(instance, created)``: the row matching ``kwargs``, or a new one with ``defaults`` added.

        Safe against a concurrent insert of the same unique values: when the
        insert fails with ``IntegrityError`` (inside a savepoint or transaction
        of its own), the row the other side inserted is returned with
        ``created=False``. Example::

            user, created = await objects.get_or_create(User, username='alice', defaults={'age': 30})
        """
        return await operations.get_or_create(self._db, model_, defaults, **kwargs)

    async def create_or_get(self, model_: type[M], **kwargs: Any) -> tuple[M, bool]:
        """``(instance, created)``: a new row, or the existing one with the same unique values.

        It inserts first; on ``IntegrityError`` it gets the row by those of
        ``kwargs`` that belong to unique or primary-key fields, and re-raises
        the error when there are none.
        """
        return await operations.create_or_get(self._db, model_, **kwargs)

    async def execute(self, query: Any) -> Any:
        """Run any peewee query and return what the sync ``query.execute()`` returns, fully read.

        - select, compound select, raw query: a list of rows: model instances,
          or dicts, tuples, named tuples after ``.dicts()``, ``.tuples()``,
          ``.namedtuples()``. Iterating the query afterwards reads these rows
          again instead of running it a second time.
        - insert: the new primary key (what peewee returns for the database
          for ``insert_many()``), or the rows of a ``RETURNING`` clause.
        - update, delete: the number of rows, or the rows of ``RETURNING``.

        Example::

            users = await objects.execute(User.select().where(User.active == True))
            count = await objects.execute(User.update(active=False).where(User.id < 10))
        """
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
        """Rows of ``query`` with the related rows of each subquery attached, as peewee's ``prefetch()``.

        Runs one query per model. ``prefetch_type`` (peewee's
        ``PREFETCH_TYPE.WHERE`` or ``JOIN``) is accepted as in peewee. Example::

            users = await objects.prefetch(User.select(), Tweet.select())
            for user in users:
                print(user.username, [tweet.text for tweet in user.tweets])
        """
        return await operations.prefetch(self._db, query, *subqueries, **kwargs)

    async def count(self, query: Any, clear_limit: bool = False) -> int:
        """The number of rows a select query returns, counted by the server.

        :param clear_limit: ignore the query's LIMIT and OFFSET.
        """
        return await operations.count(self._db, query, clear_limit=clear_limit)

    async def exists(self, query: Any) -> bool:
        """Whether a select query returns any row: ``SELECT EXISTS (...)``, as peewee's ``query.exists()``.

        Example::

            taken = await objects.exists(User.select().where(User.username == name))
        """
        return await operations.exists(self._db, query)

    async def scalar(self, query: Any, as_tuple: bool = False) -> Any:
        """The first value of the first row (the whole row with ``as_tuple``), e.g. for aggregates.

        ``None`` when the query returns no row. Example::

            oldest = await objects.scalar(User.select(fn.MAX(User.age)))
        """
        return await operations.scalar(self._db, query, as_tuple=as_tuple)

    def prepare(self, build: Callable[P, Any]) -> PreparedQuery[P]:
        """A query built by ``build`` of its arguments, run again without building it: see :doc:`prepared`.

        Each call with arguments of types met before binds them into the SQL
        compiled then: no building, no compile, no walk of the query. The
        methods of the result (``execute``, ``get``, ``get_or_none``,
        ``count``, ``exists``, ``scalar``) take ``build``'s arguments and
        return what this Manager's methods of those names return for the
        query ``build`` makes. ``build`` must make its query of its arguments
        alone: a value it computes itself (the time now) is read once.
        Example::

            timeline = objects.prepare(
                lambda user_id: Tweet.select(Tweet, User).join(User)
                .where(Tweet.user == user_id).order_by(Tweet.id.desc()).limit(20)
            )
            tweets = await timeline.execute(user.id)
        """
        return PreparedQuery(lambda: self._db, build)

    # -- transactions --------------------------------------------------------

    def atomic(self) -> Transaction:
        """``async with objects.atomic():`` a transaction, or a savepoint when nested.

        The block commits when its body finishes and rolls back when it
        raises. It belongs to the running task: tasks it spawns run outside
        it (see :doc:`transactions`). Example::

            async with objects.atomic():
                await objects.create(PageBlock, key='intro', text='...')
                await objects.create(PageBlock, key='signature', text='...')
        """
        return self._db.atomic_async()

    def transaction(self) -> Transaction:
        """``async with objects.transaction():`` a transaction; nested, it joins the outer one.

        Nested inside a transaction of the same task, it opens nothing: an
        exception leaving it undoes nothing by itself, the outer block decides.
        """
        return self._db.transaction_async()

    def savepoint(self, sid: str | None = None) -> Transaction:
        """``async with objects.savepoint():`` a savepoint inside the running task's transaction.

        :param sid: the savepoint's name; a random one by default.
        :raises TransactionError: when the running task has no transaction
            open on the database.
        """
        return self._db.savepoint_async(sid)

    # -- replicas ----------------------------------------------------------------

    def primary(self) -> PrimaryReads:
        """``async with objects.primary():`` the block's reads run on the primary, not a replica.

        For reading your own writes after a commit, which a replica may not
        have replayed yet. Transactions always run on the primary; without
        replicas this changes nothing. It holds for the running task and the
        tasks it starts inside the block. Example::

            await objects.create(Tweet, user=user, content=text)
            async with objects.primary():
                timeline = await objects.execute(user.timeline())
        """
        return self._db.reads_on_primary()

    # -- sync code -------------------------------------------------------------

    @contextmanager
    def allow_sync(self) -> Iterator[None]:
        """Allow sync queries inside the block; closes the sync connection on the way out.

        The previous ``allow_sync`` setting comes back even when the block
        raises. The sync connection stays open if a sync transaction is still
        open on it. The setting is the database's, not the task's: keep
        ``await`` out of the block. Example::

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
                if not db.is_closed() and not db.in_transaction():
                    db.close()
            finally:
                db.allow_sync = previous


def _check_async(database: Any) -> AsyncDatabase:
    if not isinstance(database, AsyncDatabase):
        raise peewee.ImproperlyConfigured(
            f"{type(database).__name__} is a sync peewee database. Give the Manager one of "
            "peewee_async's database classes (e.g. peewee_async.PostgresqlDatabase)."
        )
    return database
