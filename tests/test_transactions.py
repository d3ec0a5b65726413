"""Task-local transactions: atomic(), transaction() and savepoint(), on every backend.

Every outcome is read back: by the task inside the transaction, by other tasks,
and by an *observer*, a second database object on the same server with
connections of its own, which sees only what was committed.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import peewee
import pytest

import peewee_async
from peewee_async import ConnectionLost, PoolTimeout, TransactionError

from .conftest import POOLED, make_database
from .models import TestModel, TestModelAlpha

# Tests where two open transactions write at once use TestModelAlpha: it has no
# unique index, so InnoDB's gap locks on one (e.g. on rows that an earlier
# test's cleanup delete-marked) cannot make one writer wait for the other.


class Boom(Exception):
    """Raised by a test to leave a block with an error."""


async def committed(observer: peewee_async.AsyncDatabase, model: type[peewee.Model] = TestModel) -> list[str]:
    """The texts of the model's rows as a connection outside every transaction sees them."""
    cursor = await observer.execute_sql_async(f"SELECT text FROM {model._meta.table_name}")
    return sorted(row[0] for row in cursor.fetchall())


async def visible(objects: peewee_async.Manager, model: type[peewee.Model] = TestModel) -> list[str]:
    """The texts of the model's rows as the running task sees them (inside its transaction, if any)."""
    rows = await objects.execute(model.select(model.text))
    return sorted(row.text for row in rows)


def require_pool(backend: str) -> None:
    if backend not in POOLED:
        pytest.skip("needs a pool of several connections")


# -- atomic(): commit and rollback -------------------------------------------


async def test_atomic_commits_on_success(db, objects, observer):
    assert not db.in_transaction_async()
    async with objects.atomic() as txn:
        assert isinstance(txn, peewee_async.Transaction)
        assert db.in_transaction_async()
        await objects.create(TestModel, text="a")
        await objects.create(TestModel, text="b")
        assert await visible(objects) == ["a", "b"]
        assert await committed(observer) == []
    assert not db.in_transaction_async()
    assert await committed(observer) == ["a", "b"]
    assert await visible(objects) == ["a", "b"]


async def test_atomic_rolls_back_on_exception(db, objects, observer):
    error = Boom("leave")
    with pytest.raises(Boom) as raised:
        async with objects.atomic():
            await objects.create(TestModel, text="a")
            assert await visible(objects) == ["a"]
            raise error
    assert raised.value is error  # the block's error comes out unchanged
    assert not db.in_transaction_async()
    assert await committed(observer) == []
    assert await visible(objects) == []


async def test_atomic_rolls_back_after_a_database_error(db, objects, observer):
    with pytest.raises(peewee.IntegrityError):
        async with objects.atomic():
            await objects.create(TestModel, text="a")
            await objects.create(TestModel, text="a")  # unique violation
    assert await committed(observer) == []
    # The database is fine afterwards: a new transaction commits.
    async with objects.atomic():
        await objects.create(TestModel, text="a")
    assert await committed(observer) == ["a"]


# -- nested atomic(): savepoints ---------------------------------------------


async def test_nested_atomic_failure_rolls_back_only_the_inner_block(db, objects, observer):
    async with objects.atomic():
        await objects.create(TestModel, text="outer-1")
        with pytest.raises(Boom):
            async with objects.atomic():
                await objects.create(TestModel, text="inner")
                assert await visible(objects) == ["inner", "outer-1"]
                raise Boom
        assert db.in_transaction_async()
        assert await visible(objects) == ["outer-1"]
        await objects.create(TestModel, text="outer-2")
        assert await committed(observer) == []
    assert await committed(observer) == ["outer-1", "outer-2"]


async def test_nested_atomic_success_is_undone_by_outer_failure(objects, observer):
    with pytest.raises(Boom):
        async with objects.atomic():
            await objects.create(TestModel, text="outer")
            async with objects.atomic():
                await objects.create(TestModel, text="inner")
            # A released savepoint is not a commit.
            assert await committed(observer) == []
            assert await visible(objects) == ["inner", "outer"]
            raise Boom
    assert await committed(observer) == []


async def test_three_levels_of_atomic(objects, observer):
    async with objects.atomic():
        await objects.create(TestModel, text="l1")
        with pytest.raises(Boom):
            async with objects.atomic():
                await objects.create(TestModel, text="l2")
                with pytest.raises(Boom):
                    async with objects.atomic():
                        await objects.create(TestModel, text="l3")
                        raise Boom
                assert await visible(objects) == ["l1", "l2"]
                await objects.create(TestModel, text="l2-after")
                raise Boom
        assert await visible(objects) == ["l1"]
        async with objects.atomic():
            await objects.create(TestModel, text="l2-kept")
    assert await committed(observer) == ["l1", "l2-kept"]


async def test_database_error_in_savepoint_leaves_outer_transaction_usable(objects, observer):
    # On PostgreSQL a failed statement aborts the whole transaction unless a
    # savepoint around it is rolled back: the inner atomic() must do that.
    async with objects.atomic():
        await objects.create(TestModel, text="a")
        with pytest.raises(peewee.IntegrityError):
            async with objects.atomic():
                await objects.create(TestModel, text="a")
        await objects.create(TestModel, text="b")
        assert await visible(objects) == ["a", "b"]
    assert await committed(observer) == ["a", "b"]


# -- transaction() -----------------------------------------------------------


async def test_transaction_commits_and_rolls_back(db, objects, observer):
    async with objects.transaction():
        assert db.in_transaction_async()
        await objects.create(TestModel, text="kept")
        assert await committed(observer) == []
    assert await committed(observer) == ["kept"]
    with pytest.raises(Boom):
        async with objects.transaction():
            await objects.create(TestModel, text="dropped")
            raise Boom
    assert await committed(observer) == ["kept"]


async def test_nested_transaction_joins_the_outer_one(db, objects, observer):
    async with objects.transaction():
        await objects.create(TestModel, text="outer")
        async with objects.transaction():
            await objects.create(TestModel, text="joined")
        # Leaving a joined block commits nothing.
        assert await committed(observer) == []
        with pytest.raises(Boom):
            async with objects.transaction():
                await objects.create(TestModel, text="joined-failed")
                raise Boom
        # No savepoint: the failed joined block's row is still part of the outer transaction.
        assert db.in_transaction_async()
        assert await visible(objects) == ["joined", "joined-failed", "outer"]
        assert await committed(observer) == []
    assert await committed(observer) == ["joined", "joined-failed", "outer"]


async def test_nested_transaction_is_undone_by_outer_failure(objects, observer):
    with pytest.raises(Boom):
        async with objects.transaction():
            async with objects.transaction():
                await objects.create(TestModel, text="joined")
            raise Boom
    assert await committed(observer) == []


# -- savepoint() -------------------------------------------------------------


async def test_savepoint_outside_a_transaction_raises(db, objects):
    with pytest.raises(TransactionError, match="savepoint") as raised:
        async with objects.savepoint():
            await objects.create(TestModel, text="never")
    assert "transaction" in str(raised.value)
    assert not db.in_transaction_async()
    assert await visible(objects) == []


async def test_savepoint_inside_atomic(objects, observer):
    async with objects.atomic():
        await objects.create(TestModel, text="a")
        with pytest.raises(Boom):
            async with objects.savepoint():
                await objects.create(TestModel, text="b")
                raise Boom
        async with objects.savepoint("named_sp"):
            await objects.create(TestModel, text="c")
        with pytest.raises(Boom):
            async with objects.savepoint("named_sp2") as sp:
                assert sp.sid == "named_sp2"
                await objects.create(TestModel, text="d")
                raise Boom
        assert await visible(objects) == ["a", "c"]
        assert await committed(observer) == []
    assert await committed(observer) == ["a", "c"]


# -- commit() and rollback() inside the block --------------------------------


async def test_commit_mid_block_then_begins_again(db, objects, observer):
    with pytest.raises(Boom):
        async with objects.atomic() as txn:
            await objects.create(TestModel, text="before-commit")
            await txn.commit()
            assert await committed(observer) == ["before-commit"]
            assert db.in_transaction_async()
            await objects.create(TestModel, text="after-commit")
            assert await committed(observer) == ["before-commit"]  # a new transaction runs
            raise Boom
    assert await committed(observer) == ["before-commit"]


async def test_rollback_mid_block_then_begins_again(db, objects, observer):
    async with objects.atomic() as txn:
        await objects.create(TestModel, text="rolled-back")
        await txn.rollback()
        assert await visible(objects) == []
        assert db.in_transaction_async()
        await objects.create(TestModel, text="after-rollback")
        assert await committed(observer) == []
    assert await committed(observer) == ["after-rollback"]


async def test_transaction_commit_mid_block(objects, observer):
    async with objects.transaction() as txn:
        await objects.create(TestModel, text="one")
        await txn.commit()
        assert await committed(observer) == ["one"]
        await objects.create(TestModel, text="two")
        await txn.rollback()
        await objects.create(TestModel, text="three")
    assert await committed(observer) == ["one", "three"]


async def test_savepoint_block_commit_and_rollback_mid_block(objects, observer):
    async with objects.atomic():
        await objects.create(TestModel, text="a")
        with pytest.raises(Boom):
            async with objects.atomic() as sp:
                await objects.create(TestModel, text="b")
                await sp.rollback()
                assert await visible(objects) == ["a"]
                await objects.create(TestModel, text="c")
                await sp.commit()
                # A savepoint's commit is no commit of the transaction.
                assert await committed(observer) == []
                await objects.create(TestModel, text="d")
                raise Boom  # undoes back to the savepoint taken again at commit()
        assert await visible(objects) == ["a", "c"]
    assert await committed(observer) == ["a", "c"]


# -- isolation between tasks -------------------------------------------------


async def test_uncommitted_rows_are_invisible_to_other_tasks(db, objects, observer, backend):
    require_pool(backend)
    model = TestModelAlpha
    inserted = asyncio.Event()
    looked = asyncio.Event()
    seen: dict[str, Any] = {}

    async def writer():
        async with objects.atomic():
            await objects.create(model, text="uncommitted")
            inserted.set()
            await looked.wait()
        seen["writer"] = await visible(objects, model)

    async def reader():
        await inserted.wait()
        assert not db.in_transaction_async()
        seen["reader-count"] = await objects.count(model.select())
        await objects.create(model, text="autocommitted")
        seen["observer-during"] = await committed(observer, model)
        looked.set()

    await asyncio.wait_for(asyncio.gather(writer(), reader()), 10)
    assert seen["reader-count"] == 0
    assert seen["observer-during"] == ["autocommitted"]
    assert seen["writer"] == ["autocommitted", "uncommitted"]
    assert await committed(observer, model) == ["autocommitted", "uncommitted"]


async def test_concurrent_atomics_are_isolated(db, objects, observer, backend):
    require_pool(backend)
    model = TestModelAlpha
    a_inserted = asyncio.Event()
    b_inserted = asyncio.Event()
    b_done = asyncio.Event()
    seen: dict[str, list[str]] = {}

    async def task_a():
        async with objects.atomic():
            await objects.create(model, text="a1")
            a_inserted.set()
            await b_inserted.wait()
            seen["a-while-b-open"] = await visible(objects, model)
            await b_done.wait()
            await objects.create(model, text="a2")
            seen["a-at-end"] = await visible(objects, model)

    async def task_b():
        try:
            async with objects.atomic():
                await a_inserted.wait()
                await objects.create(model, text="b1")
                seen["b-while-a-open"] = await visible(objects, model)
                b_inserted.set()
                raise Boom
        finally:
            b_done.set()

    results = await asyncio.wait_for(asyncio.gather(task_a(), task_b(), return_exceptions=True), 10)
    assert results[0] is None
    assert isinstance(results[1], Boom)
    assert seen["a-while-b-open"] == ["a1"]
    assert seen["b-while-a-open"] == ["b1"]
    assert seen["a-at-end"] == ["a1", "a2"]
    assert await committed(observer, model) == ["a1", "a2"]


async def test_concurrent_atomics_take_turns_or_run_side_by_side(objects, observer):
    # On every backend: one task's rollback does not touch the other's commit.
    model = TestModelAlpha

    async def keeps():
        async with objects.atomic():
            await objects.create(model, text="keep-1")
            await asyncio.sleep(0.01)
            await objects.create(model, text="keep-2")

    async def fails():
        async with objects.atomic():
            await objects.create(model, text="fail-1")
            await asyncio.sleep(0.01)
            raise Boom

    results = await asyncio.wait_for(asyncio.gather(fails(), keeps(), return_exceptions=True), 10)
    assert isinstance(results[0], Boom)
    assert results[1] is None
    assert await committed(observer, model) == ["keep-1", "keep-2"]


# -- tasks spawned inside a transaction --------------------------------------


@pytest.mark.parametrize("spawn", ["gather", "create_task"])
async def test_spawned_task_runs_outside_the_transaction(db, objects, observer, backend, spawn):
    require_pool(backend)
    model = TestModelAlpha

    async def child() -> tuple[bool, list[str]]:
        in_txn = db.in_transaction_async()
        seen = await visible(objects, model)
        await objects.create(model, text="child")
        return in_txn, seen

    with pytest.raises(Boom):
        async with objects.atomic():
            await objects.create(model, text="parent")
            if spawn == "gather":
                (child_in_txn, child_saw), *_ = await asyncio.gather(child())
            else:
                child_in_txn, child_saw = await asyncio.create_task(child())
            assert db.in_transaction_async()  # the parent is still in its transaction
            # The child committed on its own: the observer sees its row already.
            assert await committed(observer, model) == ["child"]
            raise Boom
    assert child_in_txn is False
    assert child_saw == []  # not the parent's uncommitted row
    assert await committed(observer, model) == ["child"]


async def test_spawned_task_opens_a_transaction_of_its_own(db, objects, observer, backend):
    require_pool(backend)
    model = TestModelAlpha

    async def child_fails():
        async with objects.atomic():
            await objects.create(model, text="child-failed")
            raise Boom

    async def child_commits():
        async with objects.atomic():
            await objects.create(model, text="child-committed")

    with pytest.raises(Boom):
        async with objects.atomic():
            await objects.create(model, text="parent")
            with pytest.raises(Boom):
                await asyncio.create_task(child_fails())
            await asyncio.create_task(child_commits())
            # The child's atomic() was a transaction of its own, not a savepoint in ours.
            assert await committed(observer, model) == ["child-committed"]
            assert db.in_transaction_async()
            await objects.create(model, text="parent-2")
            raise Boom
    assert await committed(observer, model) == ["child-committed"]


async def test_spawned_task_on_single_connection_times_out(backend, db, observer):
    if backend in POOLED:
        pytest.skip("a pooled database gives the child a connection of its own")
    # The parent holds the only connection for its transaction; the child,
    # outside that transaction, must wait for a connection and give up cleanly.
    single = make_database(backend, acquire_timeout=0.5)
    objects = peewee_async.Manager(single)
    try:
        with single.bind_ctx([TestModel]):

            async def child() -> int:
                assert not single.in_transaction_async()
                return await objects.count(TestModel.select())

            async with objects.atomic():
                await objects.create(TestModel, text="parent")
                started = time.monotonic()
                with pytest.raises(PoolTimeout) as raised:
                    await asyncio.create_task(child())
                waited = time.monotonic() - started
                await objects.create(TestModel, text="parent-2")
            assert 0.4 <= waited < 5, waited
            assert isinstance(raised.value, peewee.OperationalError)
            assert "acquire_timeout=0.5" in str(raised.value)
            assert await committed(observer) == ["parent", "parent-2"]
            assert single.pool is not None and single.pool.used == 0
    finally:
        await single.close_async()


# -- the same through the low-level functions and the database methods --------

Factories = tuple[Callable[[], Any], Callable[[], Any], Callable[..., Any]]


def factories(style: str, db: peewee_async.AsyncDatabase, objects: peewee_async.Manager) -> Factories:
    if style == "manager":
        return objects.atomic, objects.transaction, objects.savepoint
    if style == "lowlevel":
        return (
            lambda: peewee_async.atomic(db),
            lambda: peewee_async.transaction(db),
            lambda sid=None: peewee_async.savepoint(db, sid),
        )
    return db.atomic_async, db.transaction_async, db.savepoint_async


@pytest.mark.parametrize("style", ["manager", "lowlevel", "database"])
async def test_every_api_style_behaves_the_same(db, objects, observer, style):
    atomic, transaction, savepoint = factories(style, db, objects)

    with pytest.raises(TransactionError):
        async with savepoint():
            pass

    async with atomic():
        await peewee_async.create_object(TestModel, text="atomic")
        with pytest.raises(Boom):
            async with atomic():
                await objects.create(TestModel, text="nested-atomic")
                raise Boom
        with pytest.raises(Boom):
            async with savepoint("sp_style"):
                await objects.create(TestModel, text="savepoint")
                raise Boom
        async with transaction():
            await objects.create(TestModel, text="joined")
        assert await committed(observer) == []
    assert await committed(observer) == ["atomic", "joined"]

    with pytest.raises(Boom):
        async with transaction():
            await objects.create(TestModel, text="transaction-failed")
            raise Boom
    async with transaction() as txn:
        await objects.create(TestModel, text="committed-early")
        await txn.commit()
        assert "committed-early" in await committed(observer)
        await objects.create(TestModel, text="rolled-back")
        await txn.rollback()
    assert await committed(observer) == ["atomic", "committed-early", "joined"]


# -- misuse ------------------------------------------------------------------


async def test_entering_a_block_twice_raises(db, objects, observer):
    block = objects.atomic()
    async with block:
        await objects.create(TestModel, text="first")
    with pytest.raises(TransactionError, match="entered already"):
        async with block:
            await objects.create(TestModel, text="second")
    assert await committed(observer) == ["first"]
    assert not db.in_transaction_async()


async def test_reentering_an_open_block_raises_and_rolls_back(db, objects, observer):
    block = objects.atomic()
    with pytest.raises(TransactionError, match="entered already"):
        async with block:
            await objects.create(TestModel, text="outer")
            async with block:
                await objects.create(TestModel, text="inner")
    assert not db.in_transaction_async()
    assert await committed(observer) == []


async def test_commit_or_rollback_after_the_block_raises(db, objects, observer):
    async with objects.atomic() as txn:
        await objects.create(TestModel, text="a")
    with pytest.raises(TransactionError, match="not open"):
        await txn.commit()
    with pytest.raises(TransactionError, match="not open"):
        await txn.rollback()
    # A block never entered is not open either.
    with pytest.raises(TransactionError, match="not open"):
        await objects.atomic().commit()
    assert await committed(observer) == ["a"]


async def test_commit_of_outer_block_while_inner_is_open_raises(db, objects, observer):
    with pytest.raises(TransactionError, match="inner"):
        async with objects.atomic() as outer:
            await objects.create(TestModel, text="a")
            async with objects.atomic():
                await outer.commit()
    assert await committed(observer) == []


async def test_commit_from_another_task_raises(db, objects, observer):
    async with objects.atomic() as txn:
        await objects.create(TestModel, text="a")
        with pytest.raises(TransactionError, match="another task"):
            await asyncio.create_task(txn.commit())
        assert await committed(observer) == []
    assert await committed(observer) == ["a"]


async def test_leaving_blocks_out_of_order_raises(db, objects, observer):
    outer = objects.atomic()
    inner = objects.atomic()
    await outer.__aenter__()
    await inner.__aenter__()
    await objects.create(TestModel, text="a")
    with pytest.raises(TransactionError):
        await outer.__aexit__(None, None, None)
    # The stack is intact: the blocks can still be left in order.
    assert db.in_transaction_async()
    await inner.__aexit__(None, None, None)
    await outer.__aexit__(None, None, None)
    assert not db.in_transaction_async()
    assert await committed(observer) == ["a"]


async def test_close_async_inside_a_transaction_cuts_it_off(db, objects, observer):
    with pytest.raises(ConnectionLost, match="rolled the transaction back"):
        async with objects.atomic():
            await objects.create(TestModel, text="a")
            await db.close_async()
            assert not db.is_connected
            await objects.create(TestModel, text="b")  # never on a new connection
    assert await committed(observer) == []
    await objects.close()  # nothing open: closes as before
    assert not db.is_connected
    assert await visible(objects) == []  # reopens on demand
    async with objects.atomic():
        await objects.create(TestModel, text="c")
    assert await committed(observer) == ["c"]


async def test_commit_without_begin_ends_the_transaction(db, objects, observer):
    async with objects.atomic() as txn:
        await objects.create(TestModel, text="a")
        await txn.commit(begin=False)
        assert await committed(observer) == ["a"]
    assert not db.in_transaction_async()
    assert await committed(observer) == ["a"]
    with pytest.raises(Boom):
        async with objects.atomic() as txn:
            await objects.create(TestModel, text="b")
            await txn.rollback(begin=False)
            raise Boom
    assert await committed(observer) == ["a"]
