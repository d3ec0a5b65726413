"""peewee_async.testing.rollback(): each test inside a transaction that is rolled back.

What the helper's own transaction hides is read back by an *observer*, a second
database object on the same server with connections of its own: it sees only
committed rows, so it tells whether anything escaped the rollback.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import peewee
import pytest

import peewee_async
from peewee_async import PoolTimeout, TransactionError
from peewee_async.testing import rollback

from .models import TestModel


class Boom(Exception):
    """Raised by a test to leave a block with an error."""


async def committed(observer: peewee_async.AsyncDatabase) -> list[str]:
    """The texts of the TestModel rows that anyone can see: committed ones."""
    with observer.bind_ctx([TestModel]):
        rows = await peewee_async.Manager(observer).execute(TestModel.select().order_by(TestModel.text))
    return [row.text for row in rows]


async def visible(objects: peewee_async.Manager) -> list[str]:
    rows = await objects.execute(TestModel.select().order_by(TestModel.text))
    return [row.text for row in rows]


# -- the helper as a pytest-asyncio fixture ----------------------------------

fixture_tasks: dict[str, asyncio.Task[Any] | None] = {}


@pytest.fixture
async def after_rollback(db, observer) -> AsyncIterator[None]:
    """Set up before, torn down after `rolled_back`: checks that its rollback left nothing."""
    fixture_tasks.clear()
    yield
    if "test" in fixture_tasks:
        # pytest-asyncio ran setup, test and teardown of `rolled_back` in three tasks.
        tasks = [fixture_tasks["setup"], fixture_tasks["test"], fixture_tasks["teardown"]]
        assert len({id(task) for task in tasks}) == 3
    assert await committed(observer) == []
    pool = db.pool
    assert pool is not None
    await pool.settle()
    assert pool.used == 0
    assert db._pinned is None and db._open_transactions == 0


@pytest.fixture
async def rolled_back(db, after_rollback) -> AsyncIterator[peewee_async.Manager]:
    fixture_tasks["setup"] = asyncio.current_task()
    async with rollback(db):
        objects = peewee_async.Manager(db)
        await objects.create(TestModel, text="from the fixture")
        yield objects
        fixture_tasks["teardown"] = asyncio.current_task()


async def test_fixture_rows_written_in_the_test_are_gone_after(rolled_back, observer):
    objects = rolled_back
    # pytest-asyncio runs fixture setup, test and teardown in separate tasks.
    fixture_tasks["test"] = asyncio.current_task()
    assert fixture_tasks["test"] is not fixture_tasks["setup"]

    await objects.create(TestModel, text="plain")
    async with objects.atomic():
        await objects.create(TestModel, text="in atomic")
        async with objects.atomic():
            await objects.create(TestModel, text="in nested atomic")

    async def child(text: str) -> None:
        await objects.create(TestModel, text=text)
        async with objects.atomic():
            await objects.create(TestModel, text=f"{text} in atomic")

    await asyncio.gather(child("child 1"), child("child 2"))
    async with objects.transaction():
        await asyncio.gather(child("child 3"))

    assert await visible(objects) == [
        "child 1",
        "child 1 in atomic",
        "child 2",
        "child 2 in atomic",
        "child 3",
        "child 3 in atomic",
        "from the fixture",
        "in atomic",
        "in nested atomic",
        "plain",
    ]
    assert await committed(observer) == []  # the after_rollback fixture checks the end


# -- rolling back -------------------------------------------------------------


async def test_rows_are_gone_after_the_block(db, observer):
    objects = peewee_async.Manager(db)
    async with rollback(objects):
        await objects.create(TestModel, text="a")
        assert await visible(objects) == ["a"]
        assert await committed(observer) == []
    assert await visible(objects) == []
    assert await committed(observer) == []
    assert db.pool is not None and db.pool.used == 0


async def test_failing_atomic_rolls_back_only_its_savepoint(db, observer):
    objects = peewee_async.Manager(db)
    async with rollback(db):
        await objects.create(TestModel, text="kept")
        with pytest.raises(Boom):
            async with objects.atomic():
                await objects.create(TestModel, text="undone")
                raise Boom
        with pytest.raises(Boom):
            async with objects.transaction():
                await objects.create(TestModel, text="undone too")
                raise Boom
        async with objects.atomic():
            await objects.create(TestModel, text="outer")
            with pytest.raises(Boom):
                async with objects.atomic():
                    await objects.create(TestModel, text="inner, undone")
                    raise Boom
            # As in production, a nested transaction() is part of the outer block.
            with pytest.raises(Boom):
                async with objects.transaction():
                    await objects.create(TestModel, text="joined")
                    raise Boom
        assert await visible(objects) == ["joined", "kept", "outer"]
    assert await committed(observer) == []


async def test_database_error_undoes_only_the_failing_statement(db, observer):
    objects = peewee_async.Manager(db)
    async with rollback(db):
        await objects.create(TestModel, text="unique")
        with pytest.raises(peewee.IntegrityError):
            await objects.create(TestModel, text="unique")
        # The transaction is still usable (PostgreSQL would abort all of it otherwise).
        await objects.create(TestModel, text="after the error")
        async with objects.atomic():
            with pytest.raises(peewee.IntegrityError):
                async with objects.atomic():
                    await objects.create(TestModel, text="unique")
            await objects.create(TestModel, text="in atomic after the error")
        assert await visible(objects) == ["after the error", "in atomic after the error", "unique"]
    assert await committed(observer) == []


async def test_commit_and_rollback_of_a_block_stay_inside(db, observer):
    objects = peewee_async.Manager(db)
    async with rollback(db):
        async with objects.transaction() as txn:
            await objects.create(TestModel, text="committed in the block")
            await txn.commit()
            await objects.create(TestModel, text="rolled back in the block")
            await txn.rollback()
        assert await committed(observer) == []
        assert await visible(objects) == ["committed in the block"]
        assert db.in_transaction_async()
    assert await committed(observer) == []


async def test_concurrent_blocks_take_turns(db, observer):
    objects = peewee_async.Manager(db)

    async def writer(name: str, fail: bool) -> None:
        async with objects.atomic():
            for i in range(3):
                await objects.create(TestModel, text=f"{name} {i}")
                await asyncio.sleep(0)
            if fail:
                raise Boom

    async with rollback(db):
        results = await asyncio.gather(
            writer("a", False), writer("b", True), writer("c", False), return_exceptions=True
        )
        assert [type(r) for r in results] == [type(None), Boom, type(None)], results
        assert await visible(objects) == ["a 0", "a 1", "a 2", "c 0", "c 1", "c 2"]
    assert await committed(observer) == []


async def test_tasks_spawned_inside_a_block_run_inside_it(db, observer):
    objects = peewee_async.Manager(db)

    async def child(text: str, fail: bool = False) -> None:
        async with objects.atomic():
            await objects.create(TestModel, text=text)
            await asyncio.sleep(0)
            if fail:
                raise Boom

    async with rollback(db):
        with pytest.raises(Boom):
            async with objects.atomic():
                await asyncio.gather(child("x"), child("y"), child("z", fail=True), return_exceptions=True)
                assert await visible(objects) == ["x", "y"]
                raise Boom
        assert await visible(objects) == []
    assert await committed(observer) == []


async def test_an_unrelated_task_waits_for_a_block_then_times_out(db):
    objects = peewee_async.Manager(db)
    db.acquire_timeout = 0.2
    block_open = asyncio.Event()
    may_leave = asyncio.Event()

    async def holder() -> None:
        async with objects.atomic():
            await objects.create(TestModel, text="held")
            block_open.set()
            await may_leave.wait()

    async def other() -> None:
        await block_open.wait()
        try:
            await objects.create(TestModel, text="other")
        finally:
            may_leave.set()

    async with rollback(db):
        results = await asyncio.gather(holder(), other(), return_exceptions=True)
        assert results[0] is None
        error = results[1]
        assert isinstance(error, PoolTimeout)
        assert "acquire_timeout=0.2s for its turn in rollback()" in str(error)
        assert "spawn them from inside it" in str(error)
        # Once the block has ended, the other task gets its turn.
        await objects.create(TestModel, text="other")
        assert await visible(objects) == ["held", "other"]


# -- cleanup ------------------------------------------------------------------


async def test_connection_is_released_after_a_failing_test(db, observer):
    objects = peewee_async.Manager(db)
    with pytest.raises(Boom):
        async with rollback(db):
            async with objects.atomic():
                await objects.create(TestModel, text="a")
                raise Boom
    assert db._pinned is None and db._open_transactions == 0
    assert db.pool is not None and db.pool.used == 0
    assert await committed(observer) == []


@pytest.mark.parametrize("where", ["idle", "in a query"])
async def test_connection_is_released_when_the_test_is_cancelled(db, observer, where):
    objects = peewee_async.Manager(db)
    inside = asyncio.Event()

    async def test_body() -> None:
        async with rollback(db):
            async with objects.atomic():
                if where == "idle":
                    await objects.create(TestModel, text="a")
                    inside.set()
                    await asyncio.sleep(30)
                else:
                    # No row written here: the server finishes the cut-off
                    # statement on its own, and must hold no lock meanwhile.
                    inside.set()
                    if isinstance(db, peewee.PostgresqlDatabase):
                        await db.execute_sql_async("SELECT pg_sleep(5)")
                    else:  # MySQL's SLEEP(), or the tests' function of that name on SQLite
                        await db.execute_sql_async("SELECT SLEEP(1)")

    task = asyncio.create_task(test_body())
    await inside.wait()
    await asyncio.sleep(0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert db._pinned is None and db._open_transactions == 0
    assert db.pool is not None
    await db.pool.settle()
    assert db.pool.used == 0
    assert await committed(observer) == []
    # The database works as before.
    assert await peewee_async.Manager(db).count(TestModel.select()) == 0


# -- misuse -------------------------------------------------------------------


async def test_nesting_the_helper_raises(db):
    async with rollback(db):
        with pytest.raises(TransactionError, match=r"already active .* cannot be nested\. Use `async with"):
            async with rollback(db):
                pass
    assert db._pinned is None and db._open_transactions == 0


async def test_entering_inside_a_transaction_raises(db):
    objects = peewee_async.Manager(db)
    async with objects.atomic():
        with pytest.raises(TransactionError, match=r"must be entered outside transactions.*Enter it first"):
            async with rollback(db):
                pass


async def test_closing_the_database_inside_raises(db):
    async with rollback(db):
        with pytest.raises(TransactionError, match=r"Cannot close .* still open\. Let their `async with`"):
            await db.close_async()
        await peewee_async.Manager(db).create(TestModel, text="still works")
    assert db._open_transactions == 0


async def test_ending_the_transaction_with_sql_raises(db, observer):
    async with rollback(db):
        await peewee_async.Manager(db).create(TestModel, text="a")
        for sql in ("COMMIT", "commit", "ROLLBACK", "BEGIN", "START TRANSACTION"):
            with pytest.raises(TransactionError, match=r"end the transaction of rollback\(\).*use atomic"):
                await db.execute_sql_async(sql)
    assert await committed(observer) == []


async def test_entering_twice_and_a_wrong_target_raise(db):
    helper = rollback(db)
    async with helper:
        pass
    with pytest.raises(TransactionError, match="entered already; call rollback"):
        async with helper:
            pass
    with pytest.raises(TypeError, match="takes an async database or a Manager"):
        rollback(peewee.SqliteDatabase(":memory:"))  # type: ignore[arg-type]
