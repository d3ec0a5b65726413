"""Cancellation at every await: each operation is cancelled after k event-loop steps, for every k.

After each run: every connection is back in the pool, the server shows no
session of ours inside a transaction, the rows are all-or-nothing (and nothing
at all for a transaction that did not complete), and the next query works.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

import peewee
import pytest

import peewee_async
from peewee_async.cursor import FetchedCursor

from ..conftest import THROUGH_PGBOUNCER
from ..models import TestModel, TestModelAlpha, TestModelBeta, TestModelGamma
from .cancelling import (
    Outcome,
    assert_no_leaks,
    cancel_at_every_step,
    give_back_all,
    run_and_cancel_after,
    server_statements,
    server_transactions,
)


async def texts(objects: peewee_async.Manager) -> list[str]:
    return [row.text for row in await objects.execute(TestModel.select().order_by(TestModel.text))]


class RunNumber:
    """The number of the current run, for values of its own in each run.

    A statement cut off by a cancellation may still run on the server after
    the cancellation came out (whether it ran is unknown, by design): the next
    run's reset can come before it. Values unique to each run keep such a late
    row from colliding with the next run's, and the checks look at their own run.
    """

    def __init__(self) -> None:
        self.number = 0

    def next(self) -> None:
        self.number += 1

    def text(self, base: str) -> str:
        return f"{base}-{self.number}"


async def test_the_checks_see_what_they_look_for(db: peewee_async.AsyncDatabase) -> None:
    """The leak checks are not vacuous: an open transaction and a running statement show."""
    pool = await _pool(db)
    conn = await pool.acquire()
    try:
        await pool.execute(conn, "BEGIN", ())
        await pool.execute(
            conn, f"INSERT INTO {TestModel._meta.table_name} (text, data) VALUES ('x', '')", ()
        )
        if not isinstance(db, peewee.SqliteDatabase):  # SQLite's check looks at idle connections
            assert len(server_transactions(db)) == 1
        with pytest.raises(AssertionError, match="still in use"):
            await assert_no_leaks(db)
        await pool.execute(conn, "ROLLBACK", ())
        assert server_transactions(db) == []
        if not isinstance(db, peewee.SqliteDatabase):
            running = asyncio.ensure_future(pool.execute(conn, _sleep_sql(db), ()))
            for _ in range(100):
                await asyncio.sleep(0.01)
                if server_statements(db):
                    break
            assert len(server_statements(db)) == 1
            await running
    finally:
        pool.release(conn)
    await assert_no_leaks(db)


async def test_get(db: peewee_async.AsyncDatabase, objects: peewee_async.Manager) -> None:
    await objects.create(TestModel, text="there", data="d")

    async def after(outcome: Outcome) -> None:
        if outcome.finished:
            assert outcome.result.data == "d"
        assert await texts(objects) == ["there"]

    await cancel_at_every_step(db, lambda: objects.get(TestModel, text="there"), after)


async def test_create(db: peewee_async.AsyncDatabase, objects: peewee_async.Manager) -> None:
    run = RunNumber()

    async def before() -> None:
        run.next()
        await objects.execute(TestModel.delete())

    async def after(outcome: Outcome) -> None:
        rows = await objects.execute(TestModel.select())
        # Committed or not, but never half: a row is whole.
        assert all(r.data == "payload" for r in rows), rows
        mine = [r for r in rows if r.text == run.text("new")]
        assert len(mine) <= 1
        if outcome.finished:
            assert len(mine) == 1 and mine[0].id == outcome.result.id

    await cancel_at_every_step(
        db, lambda: objects.create(TestModel, text=run.text("new"), data="payload"), after, before
    )


async def test_execute_select(db: peewee_async.AsyncDatabase, objects: peewee_async.Manager) -> None:
    for i in range(3):
        await objects.create(TestModel, text=f"t{i}")

    async def after(outcome: Outcome) -> None:
        if outcome.finished:
            assert [r.text for r in outcome.result] == ["t0", "t1", "t2"]

    await cancel_at_every_step(
        db, lambda: objects.execute(TestModel.select().order_by(TestModel.text)), after
    )


async def test_execute_insert_many(db: peewee_async.AsyncDatabase, objects: peewee_async.Manager) -> None:
    run = RunNumber()

    async def before() -> None:
        run.next()
        await objects.execute(TestModel.delete())

    async def after(outcome: Outcome) -> None:
        # One statement: all three rows or none.
        expected = [run.text(t) for t in "abc"]
        mine = [t for t in await texts(objects) if t in expected]
        assert mine in ([], expected)
        if outcome.finished:
            assert mine == expected

    await cancel_at_every_step(
        db,
        lambda: objects.execute(TestModel.insert_many([{"text": run.text(t)} for t in "abc"])),
        after,
        before,
    )


async def test_execute_update(db: peewee_async.AsyncDatabase, objects: peewee_async.Manager) -> None:
    for i in range(3):
        await objects.create(TestModel, text=f"t{i}", data="old")

    async def before() -> None:
        await objects.execute(TestModel.update(data="old"))

    async def after(outcome: Outcome) -> None:
        values = {r.data for r in await objects.execute(TestModel.select())}
        assert values in ({"old"}, {"new"}), values
        if outcome.finished:
            assert outcome.result == 3 and values == {"new"}

    update = TestModel.update(data="new")
    await cancel_at_every_step(db, lambda: objects.execute(update), after, before)


async def test_prefetch(db: peewee_async.AsyncDatabase, objects: peewee_async.Manager) -> None:
    alpha = await objects.create(TestModelAlpha, text="a")
    for i in range(2):
        await objects.create(TestModelBeta, alpha=alpha, text=f"b{i}")

    async def after(outcome: Outcome) -> None:
        if outcome.finished:
            [got] = outcome.result
            assert sorted(b.text for b in got.betas) == ["b0", "b1"]

    await cancel_at_every_step(
        db, lambda: objects.prefetch(TestModelAlpha.select(), TestModelBeta.select()), after
    )


async def test_atomic(db: peewee_async.AsyncDatabase, objects: peewee_async.Manager) -> None:
    """Cancelled while entering, in the body's queries, in a savepoint, or at COMMIT.

    The rule: a block that raised wrote nothing; a block that exited normally
    committed everything. A cancellation that reaches COMMIT after it was sent
    lets it finish; the block exits normally and the task is cancelled at its
    next await.
    """
    exited: list[bool] = []

    async def before() -> None:
        exited.clear()
        await objects.execute(TestModel.delete())

    async def work() -> None:
        async with objects.atomic():
            await objects.create(TestModel, text="a")
            await objects.execute(TestModel.insert_many([{"text": "b"}, {"text": "c"}]))
            async with objects.atomic():  # a savepoint
                await objects.create(TestModel, text="d")
            await objects.execute(TestModel.update(data="x").where(TestModel.text == "a"))
        exited.append(True)
        await asyncio.sleep(0)

    async def after(outcome: Outcome) -> None:
        rows = await objects.execute(TestModel.select().order_by(TestModel.text))
        if exited:
            assert [(r.text, r.data) for r in rows] == [("a", "x"), ("b", ""), ("c", ""), ("d", "")]
        else:
            assert outcome.cancelled
            assert rows == [], "a cancelled transaction wrote rows"

    # cancel_at_every_step fails if no run was cancelled. How many are depends on the load, not
    # on the code: a statement whose reply is there when the driver first polls completes without
    # an event-loop step, which on a busy machine is most of them (60 to 300 cancelled runs
    # alone; 6, and once 3, beside a second test worker), so no larger count is asserted.
    await cancel_at_every_step(db, work, after, before)


async def test_atomic_cancelled_in_commit(
    db: peewee_async.AsyncDatabase, objects: peewee_async.Manager
) -> None:
    """Cancelled exactly while COMMIT is on its way: it completes, and the block exits normally."""
    pool = await _pool(db)
    real_execute = pool.execute
    commit_sent = asyncio.Event()

    async def execute(conn: Any, sql: str, params: Any, *args: Any) -> Any:
        if sql == "COMMIT":
            commit_sent.set()
        return await real_execute(conn, sql, params, *args)

    pool.execute = execute  # type: ignore[method-assign]
    exited = []

    async def work() -> None:
        async with objects.atomic():
            await objects.create(TestModel, text="kept")
        exited.append(True)
        await asyncio.sleep(3600)  # the cancellation arrives here

    task = asyncio.ensure_future(work())
    await asyncio.wait_for(commit_sent.wait(), 10)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert exited == [True]
    await assert_no_leaks(db)
    assert await texts(objects) == ["kept"]


async def test_atomic_with_rollback_of_savepoint(
    db: peewee_async.AsyncDatabase, objects: peewee_async.Manager
) -> None:
    """Cancelled anywhere around a savepoint that is rolled back by an error inside it."""
    exited: list[bool] = []

    async def before() -> None:
        exited.clear()
        await objects.execute(TestModel.delete())
        await objects.create(TestModel, text="taken")

    async def work() -> None:
        async with objects.atomic():
            await objects.create(TestModel, text="outer")
            with contextlib.suppress(peewee.IntegrityError):
                async with objects.atomic():
                    await objects.create(TestModel, text="inner")
                    await objects.create(TestModel, text="taken")
        exited.append(True)

    async def after(outcome: Outcome) -> None:
        expected = ["outer", "taken"] if exited else ["taken"]
        assert await texts(objects) == expected

    await cancel_at_every_step(db, work, after, before)


async def test_get_or_create(db: peewee_async.AsyncDatabase, objects: peewee_async.Manager) -> None:
    run = RunNumber()

    async def before() -> None:
        run.next()
        await objects.execute(TestModel.delete())

    async def after(outcome: Outcome) -> None:
        rows = await objects.execute(TestModel.select().where(TestModel.text == run.text("goc")))
        assert [r.data for r in rows] in ([], ["d"])
        if outcome.finished:
            obj, created = outcome.result
            assert created and obj.id == rows[0].id

    await cancel_at_every_step(
        db,
        lambda: objects.get_or_create(TestModel, text=run.text("goc"), defaults={"data": "d"}),
        after,
        before,
    )


async def test_get_or_create_existing(db: peewee_async.AsyncDatabase, objects: peewee_async.Manager) -> None:
    await objects.create(TestModel, text="goc", data="old")

    async def after(outcome: Outcome) -> None:
        assert [(r.text, r.data) for r in await objects.execute(TestModel.select())] == [("goc", "old")]
        if outcome.finished:
            assert outcome.result[1] is False

    await cancel_at_every_step(
        db, lambda: objects.get_or_create(TestModel, text="goc", defaults={"data": "d"}), after
    )


async def test_create_or_get(db: peewee_async.AsyncDatabase, objects: peewee_async.Manager) -> None:
    """The row exists on odd runs (the insert fails and the lookup runs), not on even ones."""
    run = RunNumber()

    async def before() -> None:
        run.next()
        await objects.execute(TestModel.delete())
        if run.number % 2:
            await objects.create(TestModel, text=run.text("cog"), data="old")

    async def after(outcome: Outcome) -> None:
        query = TestModel.select().where(TestModel.text == run.text("cog"))
        rows = [r.data for r in await objects.execute(query)]
        if run.number % 2:
            assert rows == ["old"]
        else:
            assert rows in ([], ["new"])
        if outcome.finished:
            assert outcome.result[1] is not bool(run.number % 2)

    await cancel_at_every_step(
        db, lambda: objects.create_or_get(TestModel, text=run.text("cog"), data="new"), after, before
    )


async def test_delete_recursive(db: peewee_async.AsyncDatabase, objects: peewee_async.Manager) -> None:
    """Dependents are deleted (or their nullable keys cleared) with the row, or nothing is."""
    alpha: list[TestModelAlpha] = []

    async def before() -> None:
        await objects.execute(TestModelGamma.delete())
        await objects.execute(TestModelBeta.delete())
        await objects.execute(TestModelAlpha.delete())
        alpha[:] = [await objects.create(TestModelAlpha, text="a")]
        for i in range(2):
            beta = await objects.create(TestModelBeta, alpha=alpha[0], text=f"b{i}")
            await objects.create(TestModelGamma, beta=beta, text=f"g{i}")

    async def state() -> tuple[int, int, int]:
        return (
            await objects.count(TestModelAlpha.select()),
            await objects.count(TestModelBeta.select()),
            await objects.count(TestModelGamma.select().where(TestModelGamma.beta.is_null(False))),
        )

    async def after(outcome: Outcome) -> None:
        now = await state()
        assert now in ((1, 2, 2), (0, 0, 0)), now
        assert await objects.count(TestModelGamma.select()) == 2
        if outcome.finished:
            assert now == (0, 0, 0)

    await cancel_at_every_step(db, lambda: objects.delete(alpha[0], recursive=True), after, before)


async def test_gather_inside_atomic(db: peewee_async.AsyncDatabase, objects: peewee_async.Manager) -> None:
    """A transaction whose body awaits a gather of child tasks, cancelled at every step.

    The children run on connections of their own (outside the transaction),
    and wait for one when the pool has a single connection: wherever the
    cancellation lands, no connection is lost and the parent's rows are gone.
    """
    exited: list[bool] = []

    async def before() -> None:
        exited.clear()
        await objects.execute(TestModel.delete())

    async def child(i: int) -> Any:
        return await objects.count(TestModel.select().where(TestModel.text == f"c{i}"))

    async def work() -> None:
        async with objects.atomic():
            await objects.create(TestModel, text="parent")
            await asyncio.gather(child(1), child(2))
        exited.append(True)

    async def after(outcome: Outcome) -> None:
        assert await texts(objects) == (["parent"] if exited else [])

    if db.max_connections == 1:
        # The children wait for the one connection, held by the parent, until
        # acquire_timeout: keep that short, and cancel before it runs out.
        db.acquire_timeout = 5
        outcome = await run_and_cancel_after(work, 200)
        assert outcome.cancelled
        await assert_no_leaks(db)
        assert await texts(objects) == []
        return
    await cancel_at_every_step(db, work, after, before)


async def test_cancelled_waiter_does_not_lose_a_connection(backend: str) -> None:
    """A task cancelled just after the pool woke it for a freed connection passes the wake-up on.

    asyncio.Condition before 3.13 drops a notify() whose waiter is cancelled
    before it runs, so the next waiter would sleep next to a free connection.
    """
    from ..conftest import make_database

    db = make_database(backend, acquire_timeout=3)
    try:
        pool = await _pool(db)
        # How many loop steps the wake-up takes differs between drivers: try a few.
        for hops in range(4):
            held = [await pool.acquire() for _ in range(pool.max_size)]
            first = asyncio.ensure_future(pool.acquire())
            second = asyncio.ensure_future(pool.acquire())
            for _ in range(5):
                await asyncio.sleep(0)  # both wait now
            pool.release(held.pop())  # the pool wakes the first waiter...
            for _ in range(hops):
                await asyncio.sleep(0)
            first.cancel()  # ...which may be cancelled before it runs
            try:
                pool.release(await first)  # it ran before the cancel
            except asyncio.CancelledError:
                pass
            # The second gets the freed connection, well before acquire_timeout.
            pool.release(await second)
            await give_back_all(db, held)
    finally:
        await db.close_async()


async def test_cancel_acquire_waiters(backend: str) -> None:
    """Many tasks waiting for a connection, cancelled at different moments: none is lost."""
    from ..conftest import make_database

    db = make_database(backend, acquire_timeout=5)
    try:
        pool = await _pool(db)
        for rounds in range(10):
            held = [await pool.acquire() for _ in range(pool.max_size)]
            waiters = [asyncio.ensure_future(db.execute_sql_async("SELECT 1")) for _ in range(6)]
            await asyncio.sleep(0)
            for i, conn in enumerate(held):
                pool.release(conn)
                for _ in range((rounds + i) % 3):
                    await asyncio.sleep(0)
                waiters[i % len(waiters)].cancel()
            results = await asyncio.gather(*waiters, return_exceptions=True)
            assert all(isinstance(r, asyncio.CancelledError | FetchedCursor) for r in results), results
            await assert_no_leaks(db)
    finally:
        await db.close_async()


async def test_statement_cut_off_inside_a_transaction(
    db: peewee_async.AsyncDatabase, objects: peewee_async.Manager
) -> None:
    """A statement cancelled inside a transaction lost the transaction: later ones say so."""
    fix = "Leave the `async with` block and run the whole transaction again"
    with pytest.raises(peewee_async.ConnectionLost, match=fix):
        async with objects.atomic():
            await objects.create(TestModel, text="lost")
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(0.05):
                    await db.execute_sql_async(_sleep_sql(db))
            await objects.create(TestModel, text="after")
    await assert_no_leaks(db)
    assert await texts(objects) == []


def _sleep_sql(db: peewee_async.AsyncDatabase) -> str:
    if isinstance(db, peewee.PostgresqlDatabase):
        return "SELECT pg_sleep(0.5)"
    if isinstance(db, peewee.MySQLDatabase):
        return "SELECT SLEEP(0.5)"
    # SQLite: a query that takes a while and ends by itself.
    return (
        "WITH RECURSIVE r(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM r WHERE i < 500000) "
        "SELECT count(*) FROM r"
    )


async def _pool(db: peewee_async.AsyncDatabase) -> Any:
    await db.connect_async()
    pool = db.pool
    assert pool is not None
    return pool


def _long_sql(db: peewee_async.AsyncDatabase) -> str:
    """A statement that runs for 30 seconds or more unless the server is told to stop it."""
    if isinstance(db, peewee.PostgresqlDatabase):
        return "SELECT pg_sleep(30)"
    if isinstance(db, peewee.MySQLDatabase):
        # Not SLEEP(), which MariaDB ends by itself once the client has gone.
        return "SELECT BENCHMARK(300000000, MD5('x'))"
    return (
        "WITH RECURSIVE r(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM r WHERE i < 100000000) "
        "SELECT count(*) FROM r"
    )


def _awaiting(task: asyncio.Task[Any]) -> str:
    """Where ``task`` waits: its chain of coroutines and the future at the end."""
    where = []
    step: Any = task.get_coro()
    while step is not None:
        frame = getattr(step, "cr_frame", None) or getattr(step, "gi_frame", None)
        if frame is None:
            where.append(repr(step))
            break
        where.append(f"{frame.f_code.co_qualname} ({frame.f_code.co_filename}:{frame.f_lineno})")
        step = getattr(step, "cr_await", None) or getattr(step, "gi_yieldfrom", None)
    return " -> ".join(where)


@pytest.mark.parametrize("in_transaction", [False, True], ids=["alone", "in-transaction"])
async def test_cancelled_statement_stops_on_the_server(
    db: peewee_async.AsyncDatabase, objects: peewee_async.Manager, in_transaction: bool
) -> None:
    """A task cancelled while its statement runs leaves nothing running on the server.

    Closing the connection alone would not: a server notices a closed client
    only when it next writes to it, after the statement, so a cancelled
    30-second query would hold its session (and its locks) for 30 seconds.
    """
    if THROUGH_PGBOUNCER:
        pytest.skip("behind PgBouncer a cut-off statement is not stopped (see docs/databases.rst)")
    sql = _long_sql(db)

    async def work() -> None:
        if in_transaction:
            async with objects.atomic():
                await db.execute_sql_async(sql)
        else:
            await db.execute_sql_async(sql)

    # The connection is opened first, so the wait below is for the statement
    # alone (a connect under a loaded machine may take seconds).
    await db.execute_sql_async("SELECT 1")
    task = asyncio.ensure_future(work())
    if isinstance(db, peewee.SqliteDatabase):
        await asyncio.sleep(0.3)
    else:

        def running() -> list[Any]:
            # Ours only: opening a connection runs statements too (the ext classes' hstore look-up).
            return [row for row in server_statements(db) if row[2] == sql]

        deadline = time.monotonic() + 20
        while not running():
            if task.done():
                await task  # raises what ended it
                raise AssertionError(f"the statement ended by itself: {task.result()!r}")
            if time.monotonic() > deadline:
                task.cancel()
                raise AssertionError(
                    f"the statement never showed on the server; it showed {server_statements(db)!r}; "
                    f"the pool (size, free): {db.pool and (db.pool.size, db.pool.freesize)}; "
                    f"the task waits in: {_awaiting(task)}"
                )
            await asyncio.sleep(0.01)
    started = time.monotonic()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await assert_no_leaks(db)  # waits (up to 5 s) for the server to show no statement of ours
    assert time.monotonic() - started < 10
