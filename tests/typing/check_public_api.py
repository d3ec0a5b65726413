"""What a type checker sees of the public API: checked by ``mypy tests/typing``, never run.

Each ``assert_type`` pins a result type a user relies on: ``await objects.get(User, ...)``
is a ``User``, not ``Any``. A ``# type: ignore[code]`` line is a call that must be
rejected: under ``warn_unused_ignores`` (part of ``strict``) mypy fails if it is not.
The name does not start with ``test_``, so pytest does not collect it.
"""

from __future__ import annotations

import contextlib
import logging
from typing import Any, assert_type

import peewee

import peewee_async
import peewee_asyncext
from peewee_async import Manager, Transaction
from peewee_async.databases import Pool

database = peewee_async.PooledPostgresqlDatabase("test", max_connections=5)


class User(peewee.Model):
    id = peewee.AutoField()
    username = peewee.CharField(unique=True)

    class Meta:
        database = database


class Tweet(peewee.Model):
    user = peewee.ForeignKeyField(User, backref="tweets")
    text = peewee.TextField()

    class Meta:
        database = database


class MyManager(Manager):
    database = database


async def manager_results(objects: Manager) -> None:
    assert_type(await objects.get(User, id=1), User)
    assert_type(await objects.get(User, User.username == "x"), User)
    # A query carries no model type the Manager could read: the row is Any.
    assert_type(await objects.get(User.select().where(User.id == 1)), Any)

    user = await objects.create(User, username="x")
    assert_type(user, User)
    assert_type(await objects.get_or_create(User, username="x"), tuple[User, bool])
    assert_type(await objects.get_or_create(User, defaults={"username": "y"}, id=1), tuple[User, bool])
    assert_type(await objects.create_or_get(User, username="x"), tuple[User, bool])

    assert_type(await objects.update(user), int)
    assert_type(await objects.update(user, only=[User.username]), int)
    assert_type(await objects.delete(user, recursive=True), int)
    assert_type(await objects.count(User.select()), int)
    assert_type(await objects.scalar(User.select(peewee.fn.MAX(User.id))), Any)
    assert_type(await objects.execute(User.select()), Any)
    assert_type(await objects.prefetch(User.select(), Tweet.select()), list[Any])

    assert_type(objects.is_connected, bool)
    assert_type(await objects.connect(), None)
    assert_type(await objects.close(), None)


async def prepared_queries(objects: Manager) -> None:
    def by_name(name: str, limit_id: int = 0) -> Any:
        return User.select().where((User.username == name) & (User.id > limit_id))

    query = objects.prepare(by_name)
    assert isinstance(query, peewee_async.PreparedQuery)
    assert_type(await query.execute("x"), Any)
    assert_type(await query.count("x", limit_id=2), int)
    assert_type(await query.exists("x"), bool)
    assert_type(await query.get_or_none("x", 1), Any)
    await query.execute(1)  # type: ignore[arg-type]
    await query.count("x", other=2)  # type: ignore[call-arg]


async def manager_rejects(objects: Manager) -> None:
    tweet: Tweet = await objects.create(User, username="x")  # type: ignore[arg-type]
    await objects.create(int)  # type: ignore[type-var]
    await objects.update(1)  # type: ignore[arg-type]
    await objects.get_or_create(User, defaults=["not", "a", "dict"])  # type: ignore[arg-type]
    del tweet


async def transactions(objects: Manager, db: peewee_async.AsyncDatabase) -> None:
    assert_type(objects.atomic(), Transaction)
    assert_type(objects.transaction(), Transaction)
    assert_type(objects.savepoint(), Transaction)
    assert_type(objects.savepoint("sp1"), Transaction)

    # atomic() is an async context manager, not a sync one.
    context: contextlib.AbstractAsyncContextManager[Transaction] = objects.atomic()
    del context
    with objects.atomic():  # type: ignore[attr-defined]
        pass

    async with objects.atomic() as block:
        assert_type(block, Transaction)
        assert_type(await block.commit(), None)
        assert_type(await block.rollback(begin=False), None)
        async with objects.savepoint() as inner:
            assert_type(inner, Transaction)

    async with db.atomic_async() as block:
        assert_type(block, Transaction)
    async with db.transaction_async(), db.savepoint_async():
        assert_type(db.in_transaction_async(), bool)


def sync_guard(objects: Manager, db: peewee_async.AsyncDatabase) -> None:
    with objects.allow_sync() as nothing:
        assert_type(nothing, None)
    db.allow_sync = False
    db.allow_sync = logging.WARNING
    db.set_allow_sync(True)
    assert_type(db.allow_sync, bool | int)
    db.allow_sync = "yes"  # type: ignore[assignment]


async def databases() -> None:
    pg: peewee_async.AsyncDatabase = peewee_async.PostgresqlDatabase("test")
    pooled = peewee_async.PooledPostgresqlDatabase("test", max_connections=20, min_connections=2)
    mysql = peewee_async.MySQLDatabase("test", acquire_timeout=5.0, connect_timeout=None)
    ext = peewee_asyncext.PooledPostgresqlExtDatabase("test", register_hstore=False, max_connections=20)
    sqlite = peewee_async.SqliteDatabase("app.db")
    for db in (pg, pooled, mysql, ext, sqlite):
        assert_type(db.max_connections, int)
        assert_type(db.min_connections, int)
        assert_type(db.acquire_timeout, float | None)
        assert_type(db.connect_timeout, float | None)
        assert_type(db.is_connected, bool)
        assert_type(db.pool, Pool | None)
        assert_type(await db.connect_async(), None)
        assert_type(await db.close_async(), None)
    # Every async database is still the peewee database it extends.
    sync_db: peewee.Database = pooled
    assert_type(ext.register_hstore, bool)
    Manager(pooled)
    MyManager()
    del sync_db


async def lowlevel(db: peewee_async.AsyncDatabase) -> None:
    user = await peewee_async.create_object(User, username="x")
    assert_type(user, User)
    assert_type(await peewee_async.get_object(User, User.id == 1), Any)
    assert_type(await peewee_async.update_object(user), int)
    assert_type(await peewee_async.delete_object(user), int)
    assert_type(await peewee_async.execute(User.select()), Any)
    assert_type(await peewee_async.count(User.select()), int)
    assert_type(await peewee_async.scalar(User.select()), Any)
    assert_type(await peewee_async.prefetch(User.select(), Tweet.select()), list[Any])
    assert_type(peewee_async.atomic(db), Transaction)
    assert_type(peewee_async.transaction(db), Transaction)
    assert_type(peewee_async.savepoint(db), Transaction)


def errors() -> None:
    # Our errors are peewee's: code that catches peewee's classes catches ours.
    operational: peewee.OperationalError = peewee_async.PoolTimeout("no connection")
    interface: peewee.InterfaceError = peewee_async.SyncQueryError("sync query")
    assertion: AssertionError = peewee_async.SyncQueryError("sync query")
    wrong: peewee.InterfaceError = peewee_async.WrongDatabaseError("other database")
    transaction: peewee.InterfaceError = peewee_async.TransactionError("misuse")
    del operational, interface, assertion, wrong, transaction
