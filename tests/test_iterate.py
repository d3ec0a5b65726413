"""Streaming with ``objects.iterate(query)``, on every backend.

The rows must be what ``execute()`` gives, read a chunk at a time; the stream
holds one connection (the transaction's inside ``atomic()``) and gives it back
clean however the loop ends: rows run out, ``break``, an exception, a
cancellation during a fetch or during the loop body. The ``db`` fixture checks
after each test that every connection went back to the pool; tests here also
check the server side (no session left inside a transaction) and that the
connection takes the next statement.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import pathlib
import time
from collections.abc import AsyncIterator
from typing import Any

import peewee
import pytest

import peewee_async

from .conftest import BACKENDS, POOLED, _require_server, make_database
from .models import TestModel, TestModelAlpha, TestModelBeta


def server_of(backend: str) -> str:
    return BACKENDS[backend][0]


async def add_rows(objects: peewee_async.Manager, count: int) -> None:
    rows = [{"text": f"t{i:04d}", "data": str(i)} for i in range(count)]
    await objects.execute(TestModel.insert_many(rows))


async def collect(stream: Any) -> list[Any]:
    return [row async for row in stream]


def slow_query(db: peewee_async.AsyncDatabase, backend: str, rows: int, delay: float) -> Any:
    """A raw select whose rows take ``delay`` seconds each for the server to make."""
    server = server_of(backend)
    if server == "postgres":
        sql = "SELECT n, pg_sleep(%s) FROM generate_series(1, %s) AS n"
    elif server == "mysql":
        sql = "SELECT id, SLEEP(%s) FROM testmodel ORDER BY id LIMIT %s"
    else:
        sql = "SELECT id, sleep(?) FROM testmodel ORDER BY id LIMIT ?"
    return TestModel.raw(sql, delay, rows).tuples()


@pytest.fixture
def sleepy(db: peewee_async.AsyncDatabase, backend: str) -> None:
    """Give SQLite a ``sleep()`` function, as MySQL's ``SLEEP()``."""
    if server_of(backend) == "sqlite":

        @db.func("sleep")  # type: ignore[attr-defined]
        def sleep(seconds: float) -> int:
            time.sleep(seconds)
            return 0


async def open_transactions_on_server(db: peewee_async.AsyncDatabase, backend: str) -> int:
    """Connections of ``db``'s pool that the server sees inside a transaction (PostgreSQL only; else 0)."""
    if server_of(backend) != "postgres" or db.pool is None:
        return 0
    pids = [db.driver.session_id(conn) for conn in db.pool.connections()]  # type: ignore[attr-defined]
    if not pids:
        return 0
    observer = make_database("postgres")
    try:
        cursor = await observer.execute_sql_async(
            "SELECT COUNT(*) FROM pg_stat_activity WHERE pid = ANY(%s) "
            "AND state LIKE 'idle in transaction%%'",
            (pids,),
        )
        return int(cursor.fetchone()[0])  # type: ignore[index]
    finally:
        await observer.close_async()


async def assert_clean(db: peewee_async.AsyncDatabase, objects: peewee_async.Manager, backend: str) -> None:
    pool = db.pool
    assert pool is not None
    await pool.settle()
    assert pool.used == 0
    assert not pool.streams
    assert await open_transactions_on_server(db, backend) == 0
    assert await objects.count(TestModel.select()) >= 0  # the pool serves the next query


# -- the rows ------------------------------------------------------------------


async def test_rows_are_what_execute_gives(db, objects):
    await add_rows(objects, 53)
    base = TestModel.select().order_by(TestModel.id)
    for query in (base, base.dicts(), base.tuples(), base.namedtuples()):
        expected = await objects.execute(query.clone())
        streamed = await collect(objects.iterate(query.clone(), chunk_size=10))
        assert streamed == expected
        assert len(streamed) == 53
    instances = await collect(objects.iterate(base, chunk_size=10))
    assert all(isinstance(row, TestModel) for row in instances)
    assert [row.text for row in instances[:2]] == ["t0000", "t0001"]
    assert instances[5].data == "5"


async def test_joined_models_and_selected_columns(db, objects):
    alpha = await objects.create(TestModelAlpha, text="alpha")
    for i in range(5):
        await objects.create(TestModelBeta, alpha=alpha, text=f"beta{i}")
    query = (
        TestModelBeta.select(TestModelBeta, TestModelAlpha).join(TestModelAlpha).order_by(TestModelBeta.id)
    )
    betas = await collect(objects.iterate(query, chunk_size=2))
    assert [b.text for b in betas] == [f"beta{i}" for i in range(5)]
    assert {b.alpha.text for b in betas} == {"alpha"}  # filled by the join, no further query
    counted = (
        TestModelAlpha.select(TestModelAlpha.text, peewee.fn.COUNT(TestModelBeta.id).alias("n"))
        .join(TestModelBeta)
        .group_by(TestModelAlpha.text)
    )
    assert [(a.text, a.n) for a in await collect(objects.iterate(counted))] == [("alpha", 5)]


async def test_empty_result_and_raw_query(db, objects):
    assert await collect(objects.iterate(TestModel.select())) == []
    await add_rows(objects, 3)
    raw = TestModel.raw("SELECT id, text FROM testmodel ORDER BY id")
    assert [m.text for m in await collect(objects.iterate(raw))] == ["t0000", "t0001", "t0002"]


async def test_low_level_iterate(db, objects):
    await add_rows(objects, 4)
    rows = await collect(
        peewee_async.iterate(TestModel.select(TestModel.text).order_by(TestModel.id).tuples())
    )
    assert rows == [("t0000",), ("t0001",), ("t0002",), ("t0003",)]


async def test_reads_one_chunk_at_a_time(db, objects):
    await add_rows(objects, 25)
    stream = objects.iterate(TestModel.select().order_by(TestModel.id), chunk_size=4)
    seen = 0
    async with stream:
        async for _ in stream:
            seen += 1
            assert len(stream._rows) <= 4  # never more rows in memory than a chunk
    assert seen == 25


async def test_misuse_errors_say_what_to_do(db, objects):
    with pytest.raises(TypeError, match=r"streams the rows of a select.*objects\.execute\(query\)"):
        objects.iterate(TestModel.insert(text="x"))
    with pytest.raises(ValueError, match="chunk_size must be at least 1"):
        objects.iterate(TestModel.select(), chunk_size=0)
    if hasattr(peewee.ModelSelect, "with_related"):  # peewee 4
        with pytest.raises(NotImplementedError, match=r"objects\.prefetch"):
            objects.iterate(TestModelBeta.select().with_related(TestModelBeta.alpha))


# -- the connection while the loop runs ----------------------------------------


async def test_other_queries_of_the_task_outside_a_transaction(db, objects, backend):
    await add_rows(objects, 10)
    texts = []
    async for row in objects.iterate(TestModel.select().order_by(TestModel.id), chunk_size=3):
        if backend in POOLED:
            # The loop holds one connection; the query takes another.
            texts.append((await objects.get(TestModel, id=row.id)).text)
        else:
            # The only connection is the loop's: waiting for it would never end.
            with pytest.raises(
                peewee.InterfaceError, match=r"held by an iterate\(\) loop of this task.*after the loop"
            ):
                await objects.get(TestModel, id=row.id)
            texts.append(row.text)
    assert len(texts) == 10
    await assert_clean(db, objects, backend)


async def test_inside_atomic_uses_the_transaction_connection(db, objects, backend):
    await add_rows(objects, 5)
    async with objects.atomic():
        await objects.create(TestModel, text="uncommitted")
        texts = [
            m.text async for m in objects.iterate(TestModel.select().order_by(TestModel.id), chunk_size=2)
        ]
        assert texts[-1] == "uncommitted"  # the stream sees the transaction's own rows
        assert db.pool is not None and db.pool.used == 1
        await objects.create(TestModel, text="after the loop")
    assert await objects.count(TestModel.select()) == 7
    await assert_clean(db, objects, backend)


async def test_query_on_the_transaction_connection_mid_loop_is_an_error(db, objects, backend):
    await add_rows(objects, 6)
    async with objects.atomic():
        async with objects.iterate(TestModel.select().order_by(TestModel.id), chunk_size=2) as rows:
            async for row in rows:
                with pytest.raises(peewee.InterfaceError, match=r"still open.*async with objects\.iterate"):
                    await objects.get(TestModel, id=row.id)
                with pytest.raises(peewee.InterfaceError, match="still open"):
                    await collect(objects.iterate(TestModel.select()))
                break
        # Closed: the transaction goes on, on the same connection.
        assert await objects.count(TestModel.select()) == 6
        await objects.create(TestModel, text="still in the transaction")
    assert await objects.count(TestModel.select()) == 7
    await assert_clean(db, objects, backend)


async def test_break_then_query_in_a_transaction(db, objects, backend):
    await add_rows(objects, 30)
    async with objects.atomic():
        async for row in objects.iterate(TestModel.select().order_by(TestModel.id), chunk_size=4):
            if row.text == "t0005":
                break
        # Nothing refers to the stream any more: it closes, and this waits for that.
        assert await objects.count(TestModel.select()) == 30
    await assert_clean(db, objects, backend)


async def test_break_then_query_outside_a_transaction(db, objects, backend):
    await add_rows(objects, 30)
    for _ in range(3):
        async for row in objects.iterate(TestModel.select().order_by(TestModel.id), chunk_size=4):
            if row.text == "t0005":
                break
        # With one connection, the query waits for the stream to give it back.
        assert await objects.count(TestModel.select()) == 30
    await assert_clean(db, objects, backend)


async def test_stream_left_open_ends_with_its_transaction(db, objects, backend):
    await add_rows(objects, 20)
    async with objects.atomic():
        stream = objects.iterate(TestModel.select().order_by(TestModel.id), chunk_size=3)
        first = await anext(stream)
        assert first.text == "t0000"
    # The transaction committed (closing the stream first); the stream is over.
    with pytest.raises(peewee.InterfaceError, match=r"closed because its transaction ended.*inside the"):
        await anext(stream)
    await assert_clean(db, objects, backend)


async def test_two_streams_of_one_task(db, objects, backend):
    await add_rows(objects, 12)
    query = TestModel.select(TestModel.text).order_by(TestModel.id).tuples()
    pairs = []
    async with objects.iterate(query.clone(), chunk_size=5) as left:
        right = objects.iterate(query, chunk_size=2)
        async for a in left:
            if backend in POOLED:  # a second connection for the second loop
                pairs.append((a, await anext(right)))
            elif not pairs:
                with pytest.raises(peewee.InterfaceError, match="held by an iterate"):
                    await anext(right)
                pairs.append((a, a))
            else:
                pairs.append((a, a))
        await right.aclose()
    if backend not in POOLED:
        assert await collect(right) == []  # it never started, and is over
    assert all(a == b for a, b in pairs) and len(pairs) == 12
    await assert_clean(db, objects, backend)


# -- ending early ------------------------------------------------------------------


@pytest.mark.parametrize("in_transaction", [False, True], ids=["own-connection", "in-atomic"])
async def test_aclosing_after_break(db, objects, backend, in_transaction):
    await add_rows(objects, 40)
    async with contextlib.AsyncExitStack() as stack:
        if in_transaction:
            await stack.enter_async_context(objects.atomic())
        async with contextlib.aclosing(objects.iterate(TestModel.select(), chunk_size=5)) as rows:
            async for _ in rows:
                break
        assert await objects.count(TestModel.select()) == 40
    await assert_clean(db, objects, backend)


@pytest.mark.parametrize("in_transaction", [False, True], ids=["own-connection", "in-atomic"])
async def test_exception_in_the_loop_body(db, objects, backend, in_transaction):
    await add_rows(objects, 40)

    class Stop(Exception):
        pass

    with pytest.raises(Stop):
        async with contextlib.AsyncExitStack() as stack:
            if in_transaction:
                await stack.enter_async_context(objects.atomic())
            async for row in objects.iterate(TestModel.select().order_by(TestModel.id), chunk_size=5):
                if row.text == "t0007":
                    raise Stop
    await assert_clean(db, objects, backend)


@pytest.mark.parametrize("in_transaction", [False, True], ids=["own-connection", "in-atomic"])
async def test_cancelled_in_the_loop_body(db, objects, backend, in_transaction):
    await add_rows(objects, 40)
    reading = asyncio.Event()

    async def consume() -> None:
        async with contextlib.AsyncExitStack() as stack:
            if in_transaction:
                await stack.enter_async_context(objects.atomic())
            async with objects.iterate(TestModel.select(), chunk_size=5) as rows:
                async for _ in rows:
                    reading.set()
                    await asyncio.sleep(10)

    task = asyncio.create_task(consume())
    await reading.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await assert_clean(db, objects, backend)


@pytest.mark.parametrize("in_transaction", [False, True], ids=["own-connection", "in-atomic"])
async def test_cancelled_during_a_fetch(db, objects, backend, sleepy, in_transaction):
    await add_rows(objects, 20)
    started = asyncio.Event()

    async def consume() -> None:
        async with contextlib.AsyncExitStack() as stack:
            if in_transaction:
                await stack.enter_async_context(objects.atomic())
            started.set()
            async for _ in objects.iterate(slow_query(db, backend, 20, 0.05), chunk_size=10):
                pass

    task = asyncio.create_task(consume())
    await started.wait()
    await asyncio.sleep(0.2)  # inside the first fetch: 10 rows take 0.5 s
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await assert_clean(db, objects, backend)


async def test_abandoned_stream_is_closed(db, objects, backend):
    await add_rows(objects, 30)
    stream = objects.iterate(TestModel.select(), chunk_size=5)
    await anext(stream)
    assert db.pool is not None and db.pool.used == 1
    del stream  # dropped mid-result, never closed
    await assert_clean(db, objects, backend)


async def test_error_from_the_server_mid_stream(db, objects, backend):
    await add_rows(objects, 9)
    server = server_of(backend)
    # The fifth row fails on the server, after the first chunk was sent.
    if server == "postgres":
        sql = "SELECT n, 1 / (5 - n) FROM generate_series(1, 9) AS n"
    elif server == "mysql":
        sql = (
            "SELECT t.id, (SELECT 1 UNION SELECT 2 FROM DUAL WHERE t.id = m.k + 4) AS x "
            "FROM testmodel t, (SELECT MIN(id) AS k FROM testmodel) m ORDER BY t.id"
        )
    else:

        @db.func("fail_at_five")  # type: ignore[attr-defined]
        def fail_at_five(n: int) -> int:
            if n == 5:
                raise ValueError("the fifth row")
            return n

        sql = "SELECT n, fail_at_five(n) FROM (SELECT ROW_NUMBER() OVER (ORDER BY id) AS n FROM testmodel)"
    seen = []
    for in_transaction in (False, True):
        seen.clear()
        with pytest.raises(peewee.DatabaseError):
            async with contextlib.AsyncExitStack() as stack:
                if in_transaction:
                    await stack.enter_async_context(objects.atomic())
                async for row in objects.iterate(TestModel.raw(sql).tuples(), chunk_size=2):
                    seen.append(row)
        await assert_clean(db, objects, backend)
    assert len(seen) < 5


# -- memory --------------------------------------------------------------------


async def stream_many(objects: peewee_async.Manager, query: Any) -> AsyncIterator[Any]:
    async with objects.iterate(query, chunk_size=500) as rows:
        async for row in rows:
            yield row


async def test_streams_many_more_rows_than_a_chunk(db, objects, backend):
    # 10,000 rows made by the server: a cross join of four tables of digits.
    digits = " UNION ALL ".join(f"SELECT {d} AS d" for d in range(10))
    sql = (
        f"SELECT 1 + a.d + 10 * b.d + 100 * c.d + 1000 * e.d FROM ({digits}) a, ({digits}) b, "
        f"({digits}) c, ({digits}) e"
    )
    total = count = 0
    async for (n,) in stream_many(objects, TestModel.raw(sql).tuples()):
        total += n
        count += 1
    assert count == 10_000 and total == 10_000 * 10_001 // 2
    await assert_clean(db, objects, backend)


@pytest.mark.parametrize("server", ["postgres", "mysql", "sqlite"])
def test_memory_stays_bounded_over_200k_rows(server: str, tmp_path: pathlib.Path) -> None:
    # The benchmark's measurement: a fresh process streams the rows into model
    # instances, and its peak RSS is compared with the RSS before the loop.
    # Holding 200,000 instances would take well over 100 MB.
    from benchmarks.harness import Bench, measure_rss

    if server != "sqlite":
        _require_server(server)
    rows = 200_000
    bench = Bench(server, str(tmp_path), rows, str(os.getpid()))
    bench.create_tables()
    try:
        growth = measure_rss(server, "async", str(tmp_path), rows)
    finally:
        bench.drop_tables()
    assert growth < 20, f"streaming {rows:,} rows grew the RSS by {growth:.1f} MB"
