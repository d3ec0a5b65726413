"""SQLite: one writer at a time, many tasks, custom functions, cancellation and event loops.

The rest of the suite runs on SQLite through the ``db`` fixture; these tests
cover what only SQLite has: the file lock, user functions registered with
``@db.func()``, and one file shared by several connections.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import os
import subprocess
import sys
import textwrap
import time
from collections.abc import AsyncIterator
from pathlib import Path

import peewee
import pytest

import peewee_async

from .servers import ROOT


class Entry(peewee.Model):
    author = peewee.CharField()
    number = peewee.IntegerField()


class Counter(peewee.Model):
    name = peewee.CharField(unique=True)
    value = peewee.IntegerField(default=0)


class Account(peewee.Model):
    username = peewee.CharField(unique=True)
    password = peewee.CharField()


MODELS = [Entry, Counter, Account]


def make(path: Path, **options: object) -> peewee_async.SqliteDatabase:
    database = peewee_async.SqliteDatabase(str(path), **options)  # type: ignore[arg-type]
    database.bind(MODELS)
    return database


@pytest.fixture
async def database(tmp_path: Path) -> AsyncIterator[peewee_async.SqliteDatabase]:
    """A one-connection SQLite database (the default) with fresh tables."""
    db = make(tmp_path / "app.db")
    db.create_tables(MODELS)
    db.close()
    db.allow_sync = False
    yield db
    await finish(db)


@pytest.fixture
async def wal_database(tmp_path: Path) -> AsyncIterator[peewee_async.SqliteDatabase]:
    """Four connections to one file in WAL mode: readers beside the one writer."""
    db = make(tmp_path / "wal.db", max_connections=4, pragmas={"journal_mode": "wal"})
    db.create_tables(MODELS)
    db.close()
    db.allow_sync = False
    yield db
    await finish(db)


@pytest.fixture(params=["one connection", "four connections, WAL"])
async def any_database(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[peewee_async.SqliteDatabase]:
    if request.param == "one connection":
        db = make(tmp_path / "app.db")
    else:
        db = make(tmp_path / "wal.db", max_connections=4, pragmas={"journal_mode": "wal"})
    db.create_tables(MODELS)
    db.close()
    db.allow_sync = False
    yield db
    await finish(db)


async def finish(db: peewee_async.SqliteDatabase) -> None:
    assert db._open_transactions == 0
    if db.pool is not None:
        await db.pool.settle()
        assert db.pool.used == 0
    await db.close_async()


async def committed_numbers(path: Path) -> list[int]:
    """The committed ``Entry.number`` values, read by a database object of its own."""
    observer = peewee_async.SqliteDatabase(str(path))
    try:
        cursor = await observer.execute_sql_async("SELECT number FROM entry ORDER BY number")
        return [row[0] for row in cursor.fetchall()]
    finally:
        await observer.close_async()


# -- many writers ------------------------------------------------------------------


async def test_200_concurrent_writers_never_see_database_is_locked(any_database):
    db = any_database
    objects = peewee_async.Manager(db)
    await objects.create(Counter, name="total")

    async def writer(n: int) -> None:
        if n % 2:
            await objects.create(Entry, author=f"task{n}", number=n)
        else:
            # read, then write, in one transaction: the pattern that fails with
            # "database is locked" when two transactions start as readers
            async with objects.atomic():
                counter = await objects.get(Counter, name="total")
                await objects.create(Entry, author=f"task{n}", number=n)
                counter.value += 1
                await objects.update(counter)

    await asyncio.gather(*(writer(n) for n in range(200)))
    assert await objects.count(Entry.select()) == 200
    numbers = [e.number for e in await objects.execute(Entry.select().order_by(Entry.number))]
    assert numbers == list(range(200))
    assert (await objects.get(Counter, name="total")).value == 100  # no lost update
    assert db.pool.used == 0


async def test_wal_readers_run_beside_an_open_write_transaction(wal_database, tmp_path):
    objects = peewee_async.Manager(wal_database)
    await objects.create(Entry, author="before", number=1)
    written = asyncio.Event()
    finish = asyncio.Event()

    async def writer() -> None:
        async with objects.atomic():
            await objects.create(Entry, author="inside", number=2)
            written.set()
            await finish.wait()

    task = asyncio.create_task(writer())
    await asyncio.wait_for(written.wait(), 5)
    # Another task reads at once on another connection, without the uncommitted row.
    rows = await asyncio.wait_for(objects.execute(Entry.select().order_by(Entry.number)), 2)
    assert [r.number for r in rows] == [1]
    assert wal_database.pool.used == 1
    finish.set()
    await task
    assert [r.number for r in await objects.execute(Entry.select().order_by(Entry.number))] == [1, 2]


async def test_one_connection_queues_tasks_behind_a_transaction(database):
    objects = peewee_async.Manager(database)
    order: list[str] = []
    inside = asyncio.Event()

    async def transaction() -> None:
        async with objects.atomic():
            await objects.create(Entry, author="txn", number=1)
            inside.set()
            await asyncio.sleep(0.1)
            order.append("commit")

    async def other() -> None:
        await inside.wait()
        await objects.create(Entry, author="other", number=2)
        order.append("other")

    await asyncio.gather(transaction(), other())
    assert order == ["commit", "other"]  # waited for the connection, not on the file lock
    assert await objects.count(Entry.select()) == 2


# -- user functions ------------------------------------------------------------------


def register_password_functions(db: peewee_async.SqliteDatabase) -> None:
    """The make_password/check_password recipe, hashing with scrypt instead of md5."""

    @db.func()
    def make_password(raw_password: str) -> str:
        salt = os.urandom(8).hex()
        digest = hashlib.scrypt(raw_password.encode(), salt=salt.encode(), n=2**10, r=8, p=1).hex()
        return f"{salt}${digest}"

    @db.func()
    def check_password(raw_password: str, stored: str) -> bool:
        salt, digest = stored.split("$", 1)
        candidate = hashlib.scrypt(raw_password.encode(), salt=salt.encode(), n=2**10, r=8, p=1).hex()
        return hmac.compare_digest(candidate, digest)


async def test_functions_registered_with_db_func_run_through_the_manager(tmp_path):
    db = make(tmp_path / "functions.db")
    register_password_functions(db)
    db.create_tables(MODELS)
    db.close()
    db.allow_sync = False
    objects = peewee_async.Manager(db)
    try:
        await objects.execute(Account.insert(username="charlie", password=peewee.fn.make_password("s3cret")))
        stored = await objects.get(Account, username="charlie")
        assert stored.password != "s3cret" and "$" in stored.password

        async def login(username: str, password: str) -> Account | None:
            query = Account.select().where(
                (Account.username == username) & peewee.fn.check_password(password, Account.password)
            )
            rows = await objects.execute(query)
            return rows[0] if rows else None

        assert (await login("charlie", "s3cret")).username == "charlie"  # type: ignore[union-attr]
        assert await login("charlie", "wrong") is None
        # The sync connection has the same functions.
        with objects.allow_sync():
            assert Account.select().where(peewee.fn.check_password("s3cret", Account.password)).count() == 1
    finally:
        await finish(db)


# -- cancellation --------------------------------------------------------------------


async def test_cancelled_statement_leaves_no_lock_and_no_row(database, tmp_path):
    database.register_function(_slow_number, "SLOW_NUMBER", 1)
    objects = peewee_async.Manager(database)
    task = asyncio.create_task(
        objects.execute(Entry.insert(author="cancelled", number=peewee.fn.SLOW_NUMBER(7)))
    )
    await asyncio.sleep(0.1)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await database.pool.settle()
    assert database.pool.used == 0
    # The next writer gets on at once, on a connection of its own.
    await asyncio.wait_for(objects.create(Entry, author="after", number=1), 3)
    assert await committed_numbers(tmp_path / "app.db") in ([1], [1, 7])  # the insert is all or nothing


def _slow_number(value: int) -> int:

    time.sleep(0.3)
    return value


@pytest.mark.parametrize("where", ["between statements", "in a statement"])
async def test_cancelled_transaction_writes_nothing(database, tmp_path, where):
    database.register_function(_slow_number, "SLOW_NUMBER", 1)
    objects = peewee_async.Manager(database)
    inside = asyncio.Event()

    async def work() -> None:
        async with objects.atomic():
            await objects.create(Entry, author="first", number=1)
            inside.set()
            if where == "between statements":
                await asyncio.sleep(30)
            else:
                await objects.execute(Entry.insert(author="second", number=peewee.fn.SLOW_NUMBER(2)))

    task = asyncio.create_task(work())
    await asyncio.wait_for(inside.wait(), 5)
    await asyncio.sleep(0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await database.pool.settle()
    assert database.pool.used == 0
    assert database._open_transactions == 0
    assert await committed_numbers(tmp_path / "app.db") == []
    # no write lock is left behind: another writer commits at once
    await asyncio.wait_for(objects.create(Entry, author="after", number=3), 3)
    assert await committed_numbers(tmp_path / "app.db") == [3]


# -- memory databases, event loops, processes ------------------------------------------


async def test_memory_database_serves_async_code():
    db = peewee_async.SqliteDatabase(":memory:")
    db.bind(MODELS)
    objects = peewee_async.Manager(db)
    try:
        await db.execute_sql_async("CREATE TABLE entry (id INTEGER PRIMARY KEY, author TEXT, number INT)")
        await objects.create(Entry, author="m", number=1)
        assert await objects.count(Entry.select()) == 1
    finally:
        await db.close_async()


def test_memory_database_with_several_connections_is_refused():
    with pytest.raises(ValueError, match=r"each connection.*max_connections=1"):
        peewee_async.SqliteDatabase(":memory:", max_connections=2)


LOOPS_SCRIPT = textwrap.dedent(
    """
    import asyncio, sys
    import peewee_async

    db = peewee_async.SqliteDatabase(sys.argv[1])

    async def count():
        return (await db.execute_sql_async("SELECT COUNT(*) FROM entry")).fetchone()[0]

    async def insert():
        await db.execute_sql_async("INSERT INTO entry (author, number) VALUES ('loop', 1)")

    db.execute_sql("CREATE TABLE entry (id INTEGER PRIMARY KEY, author TEXT, number INT)")
    db.close()
    asyncio.run(insert())   # the loop closes with the connection still open
    print(asyncio.run(count()))
    # the database is never closed: the process must still exit
    """
)


def run_script(script: str, database_file: Path) -> subprocess.CompletedProcess[str]:
    """Run ``script`` in a process of its own with the database file as its argument; it must succeed."""
    done = subprocess.run(
        [sys.executable, "-c", script, str(database_file)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 0, done.stderr
    return done


def test_database_reused_after_its_loop_closed_and_never_closed_exits(tmp_path):
    assert run_script(LOOPS_SCRIPT, tmp_path / "loops.db").stdout.strip() == "1"


CUT_OFF_SCRIPT = textwrap.dedent(
    """
    import asyncio, sys, time
    import peewee_async

    db = peewee_async.SqliteDatabase(sys.argv[1])
    db.register_function(lambda s: time.sleep(s) or 0, "SLEEP", 1)

    async def main():
        pool = await db._get_pool()
        conn = await pool.acquire()
        asyncio.ensure_future(conn.raw.execute("SELECT SLEEP(0.3)"))
        await asyncio.sleep(0.05)
        print("left running")

    asyncio.run(main())  # the statement is still running when the loop closes
    time.sleep(0.6)  # ...and finishes here, with nobody waiting for it
    """
)


def test_statement_finishing_after_its_loop_closed_is_quiet(tmp_path):
    done = run_script(CUT_OFF_SCRIPT, tmp_path / "cut.db")
    assert done.stdout.strip() == "left running"
    assert "Traceback" not in done.stderr, done.stderr
