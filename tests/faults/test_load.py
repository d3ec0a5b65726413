"""Load and limits: many more tasks than connections, and a pool that runs dry."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import peewee
import pytest

import peewee_async
from peewee_async.cursor import FetchedCursor

from ..conftest import BACKENDS, POOLED, _require_server, make_database
from ..models import ALL_MODELS, NaturalKeyModel, TestModel, TestModelAlpha, TestModelBeta
from .cancelling import assert_no_leaks, give_back_all

TASKS = 2000
POOL_SIZE = 10
SEEDED = 50


@pytest.fixture(params=sorted(POOLED))
async def big_pool(request: pytest.FixtureRequest) -> AsyncIterator[peewee_async.AsyncDatabase]:
    """A pooled database of POOL_SIZE connections, with the shared models' tables bound and empty."""
    name: str = request.param
    _require_server(BACKENDS[name][0])
    database = make_database(name, max_connections=POOL_SIZE)
    with database.bind_ctx(ALL_MODELS):
        database.allow_sync = True
        database.create_tables(ALL_MODELS)
        for model in reversed(ALL_MODELS):
            model.delete().execute()
        database.close()
        try:
            yield database
        finally:
            await database.close_async()
            for model in reversed(ALL_MODELS):
                model.delete().execute()
            database.close()


async def test_many_tasks_on_a_small_pool(big_pool: peewee_async.AsyncDatabase) -> None:
    """TASKS tasks of mixed gets, creates and transactions with savepoints on POOL_SIZE connections."""
    db = big_pool
    objects = peewee_async.Manager(db)
    await objects.execute(
        TestModel.insert_many([{"text": f"seed{i}", "data": str(i)} for i in range(SEEDED)])
    )
    await objects.create(NaturalKeyModel, key="counter", value=0)
    in_use_seen = 0

    async def get(i: int) -> None:
        obj = await objects.get(TestModel, text=f"seed{i % SEEDED}")
        assert obj.data == str(i % SEEDED)

    async def create(i: int) -> None:
        await objects.create(TestModel, text=f"made{i}", data=str(i))

    async def transaction(i: int) -> None:
        nonlocal in_use_seen
        async with objects.atomic():
            alpha = await objects.create(TestModelAlpha, text=f"alpha{i}")
            async with objects.atomic():  # a savepoint that is kept
                await objects.create(TestModelBeta, alpha=alpha, text=f"beta{i}")
            try:
                async with objects.atomic():  # a savepoint that is rolled back
                    await objects.create(TestModelBeta, alpha=alpha, text=f"gone{i}")
                    await objects.create(TestModel, text=f"seed{i % SEEDED}")  # duplicate
            except peewee.IntegrityError:
                pass
            await objects.execute(
                NaturalKeyModel.update(value=NaturalKeyModel.value + 1).where(
                    NaturalKeyModel.key == "counter"
                )
            )
            pool = db.pool
            assert pool is not None
            in_use_seen = max(in_use_seen, pool.used)

    kinds = [get, create, transaction, get]
    results = await asyncio.gather(*(kinds[i % len(kinds)](i) for i in range(TASKS)), return_exceptions=True)
    errors = [r for r in results if isinstance(r, BaseException)]
    assert not errors, f"{len(errors)} task(s) failed, e.g. {errors[0]!r}"

    made = [i for i in range(TASKS) if kinds[i % len(kinds)] is create]
    transactions = [i for i in range(TASKS) if kinds[i % len(kinds)] is transaction]
    rows = {m.text: m.data for m in await objects.execute(TestModel.select())}
    assert len(rows) == SEEDED + len(made)
    assert all(rows[f"made{i}"] == str(i) for i in made)
    alphas = {a.text: a.id for a in await objects.execute(TestModelAlpha.select())}
    assert sorted(alphas) == sorted(f"alpha{i}" for i in transactions)
    betas = {(b.text, b.alpha_id) for b in await objects.execute(TestModelBeta.select())}
    assert betas == {(f"beta{i}", alphas[f"alpha{i}"]) for i in transactions}
    assert (await objects.get(NaturalKeyModel, key="counter")).value == len(transactions)

    pool = db.pool
    assert pool is not None
    assert 1 < in_use_seen <= POOL_SIZE
    assert pool.size <= POOL_SIZE
    await assert_no_leaks(db)
    assert pool.freesize == pool.size


async def test_pool_exhausted_raises_pool_timeout(backend: str) -> None:
    """With every connection held, a query waits acquire_timeout, then PoolTimeout names the fix."""
    _require_server(BACKENDS[backend][0])
    db = make_database(backend, acquire_timeout=0.3)
    objects = peewee_async.Manager(db)
    try:
        release = asyncio.Event()
        all_holding = asyncio.Event()
        holding = 0

        async def hold() -> None:
            nonlocal holding
            async with objects.atomic():
                await db.execute_sql_async("SELECT 1")
                holding += 1
                if holding == db.max_connections:
                    all_holding.set()
                await release.wait()

        holders = [asyncio.ensure_future(hold()) for _ in range(db.max_connections)]
        await all_holding.wait()
        started = time.monotonic()
        with pytest.raises(peewee_async.PoolTimeout) as info:
            await db.execute_sql_async("SELECT 1")
        assert time.monotonic() - started >= 0.3
        error = info.value
        assert isinstance(error, peewee.OperationalError)
        text = str(error)
        assert f"max_connections={db.max_connections}" in text
        assert "acquire_timeout=0.3s" in text
        assert "Raise max_connections, shorten transactions, or raise acquire_timeout" in text
        assert db.describe() in text
        # Once the holders finish, the pool serves again, whole.
        release.set()
        await asyncio.gather(*holders)
        assert (await db.execute_sql_async("SELECT 1")).fetchone()[0] == 1
        await assert_no_leaks(db)
        pool = db.pool
        assert pool is not None and pool.freesize == pool.size == db.max_connections
    finally:
        await db.close_async()


async def test_waiter_timing_out_does_not_lose_a_connection(backend: str) -> None:
    """A waiter whose acquire_timeout runs out just as a connection frees passes it on."""
    _require_server(BACKENDS[backend][0])
    db = make_database(backend, acquire_timeout=0.2)
    try:
        await db.connect_async()
        pool = db.pool
        assert pool is not None
        for _ in range(5):
            held = [await pool.acquire() for _ in range(pool.max_size)]
            waiters = [asyncio.ensure_future(db.execute_sql_async("SELECT 1")) for _ in range(3)]
            await asyncio.sleep(0.19)
            for conn in held:
                pool.release(conn)
            results = await asyncio.gather(*waiters, return_exceptions=True)
            # Each either got a connection or timed out; none waits forever or fails otherwise.
            assert all(isinstance(r, peewee_async.PoolTimeout | FetchedCursor) for r in results)
            await assert_no_leaks(db)
    finally:
        await db.close_async()


async def test_each_waiter_has_its_own_acquire_timeout(backend: str) -> None:
    """One pool timer ends every wait at its own deadline, and no other.

    Waiters that start apart time out apart; one served in time keeps its
    connection past its old deadline; one cancelled by its caller ends
    cancelled, and the others still time out.
    """
    _require_server(BACKENDS[backend][0])
    timeout = 0.3
    db = make_database(backend, acquire_timeout=timeout)
    try:
        await db.connect_async()
        pool = db.pool
        assert pool is not None
        held = [await pool.acquire() for _ in range(pool.max_size)]

        async def wait_for_one() -> float:
            started = time.monotonic()
            with pytest.raises(peewee_async.PoolTimeout):
                await pool.acquire()
            return time.monotonic() - started

        waits_over = asyncio.Event()

        async def served_then_kept() -> None:
            conn = await pool.acquire()
            try:
                # Until the others have timed out, well past the deadline its
                # own wait had: nothing cancels it now.
                await waits_over.wait()
            finally:
                pool.release(conn)

        async with asyncio.timeout(10):  # a wait the timer forgot fails here, not hangs
            served = asyncio.ensure_future(served_then_kept())
            await asyncio.sleep(0.05)
            pool.release(held.pop())  # served is first in line: it gets this one
            first = asyncio.ensure_future(wait_for_one())
            cancelled = asyncio.ensure_future(pool.acquire())
            await asyncio.sleep(timeout / 2)
            second = asyncio.ensure_future(wait_for_one())
            await asyncio.sleep(0.05)
            cancelled.cancel()
            with pytest.raises(asyncio.CancelledError):
                await cancelled
            waited = await asyncio.gather(first, second)
            waits_over.set()
            await served
        assert all(timeout <= elapsed < timeout + 0.25 for elapsed in waited), waited
        assert not pool._waits
        await give_back_all(db, held)
    finally:
        await db.close_async()
