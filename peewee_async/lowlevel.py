"""The low-level API of 0.x: module functions that run on each query's own database.

Each model must be bound to one of peewee_async's databases (``class Meta:
database = ...``); a model bound to a sync peewee database, or to none, raises
:class:`~peewee_async.WrongDatabaseError`. The transaction helpers take the
database as their first argument. Every function is importable from
``peewee_async`` itself. New code may prefer the
:class:`~peewee_async.Manager`, which offers the same calls on one database.
"""

from __future__ import annotations

from typing import Any, TypeVar

import peewee

from . import operations
from .databases.base import AsyncDatabase
from .execution import database_of
from .execution import execute as _execute
from .streaming import DEFAULT_CHUNK_SIZE, RowStream
from .streaming import iterate as _iterate
from .transactions import Transaction

M = TypeVar("M", bound=peewee.Model)


async def execute(query: Any) -> Any:
    """Run a SELECT, INSERT, UPDATE, DELETE or raw query on its model's database.

    The result is what the sync ``query.execute()`` gives, fully read: a list
    of rows for a select, the new primary key for an insert, the number of
    rows for an update or delete (rows of a ``RETURNING`` clause if the query
    has one). Same as :meth:`Manager.execute <peewee_async.Manager.execute>`.
    Example::

        for obj in await peewee_async.execute(TestModel.select()):
            print(obj.text)
    """
    return await _execute(database_of(query), query)


def iterate(query: Any, chunk_size: int = DEFAULT_CHUNK_SIZE) -> RowStream:
    """Stream the rows of a select with bounded memory: ``async for row in iterate(query)``."""
    return _iterate(None, query, chunk_size)


async def get_object(source: Any, *args: Any) -> Any:
    """The first row of a model class or select query matching the expressions ``args``.

    Raises the model's ``DoesNotExist`` when no row matches. Unlike
    :meth:`Manager.get <peewee_async.Manager.get>` it takes no keyword
    lookups. Example::

        obj = await peewee_async.get_object(TestModel, TestModel.id == 1)
    """
    return await operations.get(None, source, *args)


async def create_object(model: type[M], **data: Any) -> M:
    """Insert a new row of ``model`` and return the instance, its primary key set.

    An overridden ``save()`` is not called. Example::

        obj = await peewee_async.create_object(TestModel, text='FOO')
    """
    return await operations.create(None, model, **data)


async def update_object(obj: peewee.Model, only: Any = None) -> int:
    """Write a saved instance's fields (or ``only`` those) to its row; returns rows updated.

    ``only`` is a list or tuple of fields or field names. It does what
    ``Model.save()`` does for a saved instance, without calling an overridden
    ``save()``.
    """
    return await operations.update(None, obj, only=only)


async def delete_object(obj: peewee.Model, recursive: bool = False, delete_nullable: bool = False) -> int:
    """Delete the instance's row; returns the number of rows deleted.

    With ``recursive`` the rows depending on it go first (those on a nullable
    foreign key are set to NULL, unless ``delete_nullable``), in one
    transaction. See peewee's ``Model.delete_instance()``.
    """
    return await operations.delete(None, obj, recursive=recursive, delete_nullable=delete_nullable)


async def prefetch(sq: Any, *subqueries: Any, **kwargs: Any) -> list[Any]:
    """peewee's ``prefetch()``, asynchronously: rows of ``sq`` with the rows of each subquery attached.

    Example::

        users = await peewee_async.prefetch(User.select(), Tweet.select())
    """
    return await operations.prefetch(None, sq, *subqueries, **kwargs)


async def count(query: Any, clear_limit: bool = False) -> int:
    """The number of rows a select query returns (ignoring LIMIT/OFFSET with ``clear_limit``)."""
    return await operations.count(None, query, clear_limit=clear_limit)


async def scalar(query: Any, as_tuple: bool = False) -> Any:
    """The first value of the first row of a select (the whole row with ``as_tuple``)."""
    return await operations.scalar(None, query, as_tuple=as_tuple)


def atomic(db: AsyncDatabase) -> Transaction:
    """``async with atomic(db):`` like peewee's ``atomic()``: a transaction, or a savepoint when nested.

    The transaction belongs to the running task; see :doc:`transactions`.
    """
    return db.atomic_async()


def transaction(db: AsyncDatabase) -> Transaction:
    """``async with transaction(db):`` like peewee's ``transaction()``; nested, it joins the outer one."""
    return db.transaction_async()


def savepoint(db: AsyncDatabase, sid: str | None = None) -> Transaction:
    """``async with savepoint(db):`` like peewee's ``savepoint()``; needs a transaction open in the task."""
    return db.savepoint_async(sid)
