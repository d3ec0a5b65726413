"""The low-level API of 0.x: module functions that run on each query's own database.

Each model must be bound to one of peewee_async's databases (``class Meta:
database = ...``). New code may prefer the :class:`~peewee_async.Manager`,
which offers the same calls on one database.
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
    """Run a SELECT, INSERT, UPDATE, DELETE or raw query.

    The result is what the sync ``query.execute()`` gives, fully read.
    """
    return await _execute(database_of(query), query)


def iterate(query: Any, chunk_size: int = DEFAULT_CHUNK_SIZE) -> RowStream:
    """Stream the rows of a select with bounded memory: ``async for row in iterate(query)``."""
    return _iterate(None, query, chunk_size)


async def get_object(source: Any, *args: Any) -> Any:
    """The instance of a model class or select query matching ``args``, or ``DoesNotExist``."""
    return await operations.get(None, source, *args)


async def create_object(model: type[M], **data: Any) -> M:
    """Insert a new row of ``model`` and return the instance."""
    return await operations.create(None, model, **data)


async def update_object(obj: peewee.Model, only: Any = None) -> int:
    """Write the instance's fields (or ``only`` those); does not call an overridden ``save()``."""
    return await operations.update(None, obj, only=only)


async def delete_object(obj: peewee.Model, recursive: bool = False, delete_nullable: bool = False) -> int:
    """Delete the instance's row; with ``recursive`` also the rows depending on it."""
    return await operations.delete(None, obj, recursive=recursive, delete_nullable=delete_nullable)


async def prefetch(sq: Any, *subqueries: Any, **kwargs: Any) -> list[Any]:
    """peewee's ``prefetch()``, asynchronously."""
    return await operations.prefetch(None, sq, *subqueries, **kwargs)


async def count(query: Any, clear_limit: bool = False) -> int:
    """The number of rows a select query returns."""
    return await operations.count(None, query, clear_limit=clear_limit)


async def scalar(query: Any, as_tuple: bool = False) -> Any:
    """The first value of the first row of a select (the whole row with ``as_tuple``)."""
    return await operations.scalar(None, query, as_tuple=as_tuple)


def atomic(db: AsyncDatabase) -> Transaction:
    """``async with atomic(db):`` like peewee's ``atomic()``."""
    return db.atomic_async()


def transaction(db: AsyncDatabase) -> Transaction:
    """``async with transaction(db):`` like peewee's ``transaction()``."""
    return db.transaction_async()


def savepoint(db: AsyncDatabase, sid: str | None = None) -> Transaction:
    """``async with savepoint(db):`` like peewee's ``savepoint()``, inside a transaction."""
    return db.savepoint_async(sid)
