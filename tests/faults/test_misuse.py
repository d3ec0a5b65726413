"""Each misuse gets a clear error that names the fix; these tests check the text."""

from __future__ import annotations

import asyncio
import gc
import inspect
import threading
from typing import Any

import peewee
import pytest

import peewee_async

from ..conftest import make_database
from ..models import TestModel
from .cancelling import assert_no_leaks


def test_manager_without_a_database() -> None:
    with pytest.raises(
        peewee.ImproperlyConfigured, match=r"pass it, Manager\(database\), or set it on a subclass"
    ):
        peewee_async.Manager()


def test_manager_with_a_sync_database() -> None:
    with pytest.raises(peewee.ImproperlyConfigured, match="Give the Manager one of peewee_async's database"):
        peewee_async.Manager(peewee.SqliteDatabase(":memory:"))  # type: ignore[arg-type]


async def test_model_bound_to_another_database(db: peewee_async.AsyncDatabase, backend: str) -> None:
    # Another database of the same family runs the query (as 0.x did); another family refuses.
    other = peewee_async.PostgresqlDatabase("elsewhere") if backend == "sqlite" else make_database("sqlite")
    objects = peewee_async.Manager(other)
    with pytest.raises(peewee_async.WrongDatabaseError, match="Bind the model to the manager's database"):
        await objects.get(TestModel, id=1)
    with pytest.raises(peewee_async.WrongDatabaseError, match="run the query through a Manager of its own"):
        await objects.execute(TestModel.select())
    assert other.pool is None  # nothing was opened for it
    await assert_no_leaks(db)


async def test_query_of_a_model_bound_to_a_sync_database() -> None:
    class SyncModel(peewee.Model):
        class Meta:
            database = peewee.SqliteDatabase(":memory:")

    with pytest.raises(peewee_async.WrongDatabaseError, match="Use the database classes of peewee_async"):
        await peewee_async.execute(SyncModel.select())


async def test_close_with_an_open_transaction(
    db: peewee_async.AsyncDatabase, objects: peewee_async.Manager
) -> None:
    # Close always closes: the transaction is cut off, never continued on a new connection.
    with pytest.raises(peewee_async.ConnectionLost, match="rolled the transaction back"):
        async with objects.atomic():
            await objects.create(TestModel, text="cut")
            await objects.close()
            await objects.create(TestModel, text="never run")
    assert await objects.count(TestModel.select()) == 0
    await assert_no_leaks(db)


async def test_database_used_from_a_second_event_loop(
    db: peewee_async.AsyncDatabase, objects: peewee_async.Manager
) -> None:
    await objects.create(TestModel, text="main")
    errors: list[BaseException] = []

    def in_thread() -> None:
        async def use() -> Any:
            return await objects.get(TestModel, text="main")

        try:
            asyncio.run(use())
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=in_thread)
    thread.start()
    await asyncio.to_thread(thread.join)
    [error] = errors
    assert isinstance(error, peewee.InterfaceError) and isinstance(error, RuntimeError)
    assert "in use on another running event loop" in str(error)
    assert "create one database object per loop" in str(error)
    # The first loop's pool is untouched.
    assert (await objects.get(TestModel, text="main")).text == "main"
    await assert_no_leaks(db)


async def test_connect_async_with_another_loop(db: peewee_async.AsyncDatabase) -> None:
    other = asyncio.new_event_loop()
    try:
        with pytest.raises(peewee.InterfaceError, match="the argument can simply be dropped"):
            await db.connect_async(loop=other)
    finally:
        other.close()


async def test_commit_or_rollback_of_an_exited_block(
    db: peewee_async.AsyncDatabase, objects: peewee_async.Manager
) -> None:
    async with objects.atomic() as block:
        await objects.create(TestModel, text="a")
    fix = r"Call commit\(\)/rollback\(\) inside its `async with`"
    with pytest.raises(peewee_async.TransactionError, match=fix):
        await block.commit()
    with pytest.raises(peewee_async.TransactionError, match=fix):
        await block.rollback()
    assert await objects.count(TestModel.select()) == 1
    await assert_no_leaks(db)


async def test_entering_a_block_twice(db: peewee_async.AsyncDatabase, objects: peewee_async.Manager) -> None:
    block = objects.atomic()
    async with block:
        pass
    with pytest.raises(peewee_async.TransactionError, match="create a new one for each `async with`"):
        async with block:
            pass
    nested = objects.atomic()
    async with nested:
        with pytest.raises(peewee_async.TransactionError, match="entered already"):
            async with nested:
                pass
    await assert_no_leaks(db)


async def test_savepoint_outside_a_transaction(
    db: peewee_async.AsyncDatabase, objects: peewee_async.Manager
) -> None:
    with pytest.raises(peewee_async.TransactionError, match=r"use atomic\(\), which opens a transaction"):
        async with objects.savepoint():
            pass
    await assert_no_leaks(db)


async def test_sync_query_under_the_guard(db: peewee_async.AsyncDatabase) -> None:
    db.allow_sync = False
    with pytest.raises(peewee_async.SyncQueryError, match=r"Run it through the async API instead") as info:
        TestModel.select().count()
    assert "await objects.execute(query)" in str(info.value)
    assert "with objects.allow_sync()" in str(info.value)
    with pytest.raises(peewee_async.SyncQueryError, match="Run it through the async API"):
        with db.atomic():
            pass


async def test_async_call_without_await(objects: peewee_async.Manager) -> None:
    call = objects.get(TestModel, id=1)
    assert inspect.iscoroutine(call)
    # Python's own warning says what went wrong.
    with pytest.warns(RuntimeWarning, match="was never awaited"):
        del call
        gc.collect()


async def test_execute_given_a_model_instance(
    db: peewee_async.AsyncDatabase, objects: peewee_async.Manager
) -> None:
    obj = await objects.create(TestModel, text="instance")
    with pytest.raises(TypeError, match=r"execute\(\) takes a query.*objects\.update\(obj\)"):
        await objects.execute(obj)
    with pytest.raises(TypeError, match=r"execute\(\) takes a query"):
        await peewee_async.execute(obj)
    with pytest.raises(TypeError, match=r"execute\(\) takes a query.*got the model class"):
        await objects.execute(TestModel)
    await assert_no_leaks(db)


async def test_get_given_what_is_not_a_model(
    db: peewee_async.AsyncDatabase, objects: peewee_async.Manager
) -> None:
    obj = await objects.create(TestModel, text="x")
    for wrong in (obj, "TestModel", TestModel.update(text="y"), None):
        with pytest.raises(TypeError, match=r"get\(\) takes a model class or a model select query.*e\.g\."):
            await objects.get(wrong, id=1)
    await assert_no_leaks(db)
