"""Connections: borrowing and giving back, the pool's limits, cancellation, event loops, errors.

Server-side facts (which session ran what, whether a session is still inside a
transaction) are read by an *observer*: a second database object with
connections of its own.
"""

from __future__ import annotations

import asyncio
import datetime
import functools
import json
import os
import re
import socket
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from typing import Any

import peewee
import pytest

import peewee_async
from peewee_async import PoolTimeout

from .conftest import BACKENDS, POOLED, make_database
from .models import TestModel
from .servers import ROOT

# -- helpers -----------------------------------------------------------------


def is_postgres(backend: str) -> bool:
    return BACKENDS[backend][0] == "postgres"


def server_only(backend: str) -> None:
    """Skip a test that reads server sessions; tests/test_sqlite.py covers SQLite's side."""
    if BACKENDS[backend][0] == "sqlite":
        pytest.skip("reads server sessions; SQLite has none (see tests/test_sqlite.py)")


def sleep_sql(backend: str, seconds: float, tag: str = "") -> str:
    fn = "pg_sleep" if is_postgres(backend) else "SLEEP"
    return f"SELECT {fn}({seconds})" + (f", '{tag}'" if tag else "")


def timed_sleep_sql(backend: str) -> str:
    """One row: the session id, and the server's clock before and after sleeping (a parameter)."""
    if is_postgres(backend):
        return "SELECT pg_backend_pid(), clock_timestamp(), pg_sleep(%s), clock_timestamp()"
    if BACKENDS[backend][0] == "sqlite":
        # CLOCK() and SLEEP() are the tests' functions (conftest.make_database).
        return "SELECT 0, CLOCK(), SLEEP(?), CLOCK()"
    return "SELECT CONNECTION_ID(), SYSDATE(6), SLEEP(%s), SYSDATE(6)"


def session_id_sql(backend: str) -> str:
    return "SELECT pg_backend_pid()" if is_postgres(backend) else "SELECT CONNECTION_ID()"


async def committed_texts(observer: peewee_async.AsyncDatabase) -> list[str]:
    cursor = await observer.execute_sql_async(f"SELECT text FROM {TestModel._meta.table_name}")
    return sorted(row[0] for row in cursor.fetchall())


async def mysql_sessions_in_transaction(observer: peewee_async.AsyncDatabase) -> set[int]:
    """Thread ids of the MySQL sessions with an active InnoDB transaction.

    Read from the engine status, which is made afresh for each read; InnoDB
    refreshes information_schema.innodb_trx only when nobody read it for 0.1s,
    so reads close together (ours, or anyone's) can see stale data there.
    """
    status = (await observer.execute_sql_async("SHOW ENGINE INNODB STATUS")).fetchone()[2]
    active = set()
    for block in status.split("---TRANSACTION ")[1:]:
        found = re.search(r"(?:MySQL|MariaDB) thread id (\d+)", block)
        if "ACTIVE" in block.split("\n", 1)[0] and found:
            active.add(int(found.group(1)))
    return active


async def session_in_transaction(observer: peewee_async.AsyncDatabase, backend: str, sid: int) -> bool:
    """Whether the server session ``sid`` is inside a transaction (idle in it, or still running)."""
    if is_postgres(backend):
        cursor = await observer.execute_sql_async(
            "SELECT state, backend_xid FROM pg_stat_activity WHERE pid = %s", (sid,)
        )
        row = cursor.fetchone()
        return row is not None and (row[0].startswith("idle in transaction") or row[1] is not None)
    return sid in await mysql_sessions_in_transaction(observer)


async def idle_in_transaction(observer: peewee_async.AsyncDatabase, backend: str, sid: int) -> bool:
    """Whether the session ``sid`` sits in a transaction with no statement running."""
    if is_postgres(backend):
        cursor = await observer.execute_sql_async("SELECT state FROM pg_stat_activity WHERE pid = %s", (sid,))
        row = cursor.fetchone()
        return row is not None and row[0].startswith("idle in transaction")
    if sid not in await mysql_sessions_in_transaction(observer):
        return False
    cursor = await observer.execute_sql_async(
        "SELECT command FROM information_schema.processlist WHERE id = %s", (sid,)
    )
    row = cursor.fetchone()
    return row is not None and row[0] == "Sleep"


async def session_running(observer: peewee_async.AsyncDatabase, backend: str, tag: str) -> int | None:
    """The id of the session (other than the observer's) whose running statement contains ``tag``."""
    if is_postgres(backend):
        sql = (
            "SELECT pid FROM pg_stat_activity WHERE pid <> pg_backend_pid() AND state = 'active' "
            "AND position(%s in query) > 0"
        )
    else:
        sql = (
            "SELECT id FROM information_schema.processlist WHERE id <> CONNECTION_ID() "
            "AND command = 'Query' AND LOCATE(%s, info) > 0"
        )
    row = (await observer.execute_sql_async(sql, (tag,))).fetchone()
    return None if row is None else int(row[0])


async def wait_for_session_running(observer: peewee_async.AsyncDatabase, backend: str, tag: str) -> int:
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        sid = await session_running(observer, backend, tag)
        if sid is not None:
            return sid
        await asyncio.sleep(0.02)
    raise AssertionError(f"no session started the statement tagged {tag!r}")


class PoolWatch:
    """Samples ``db.pool.size`` and ``db.pool.used`` every few milliseconds while running."""

    def __init__(self, db: peewee_async.AsyncDatabase) -> None:
        self.db = db
        self.sizes: list[int] = []
        self.used: list[int] = []
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        while True:
            pool = self.db.pool
            if pool is not None:
                self.sizes.append(pool.size)
                self.used.append(pool.used)
            await asyncio.sleep(0.003)

    async def __aenter__(self) -> PoolWatch:
        self._task = asyncio.create_task(self._run())
        return self

    async def __aexit__(self, *exc: Any) -> None:
        assert self._task is not None
        self._task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await self._task


def max_overlap(intervals: list[tuple[datetime.datetime, datetime.datetime]]) -> int:
    events = sorted([(start, 1) for start, _ in intervals] + [(end, -1) for _, end in intervals])
    running = peak = 0
    for _, step in events:  # at equal times, -1 sorts first: touching intervals do not overlap
        running += step
        peak = max(peak, running)
    return peak


# -- borrowing a connection outside a transaction -----------------------------


async def test_query_outside_a_transaction_gives_the_connection_back(db, objects, backend):
    queried = asyncio.Event()
    release = asyncio.Event()

    async def long_lived() -> int:
        await objects.create(TestModel, text="from-long-lived")
        queried.set()
        await release.wait()
        return await objects.count(TestModel.select())

    task = asyncio.create_task(long_lived())
    await asyncio.wait_for(queried.wait(), 5)
    assert not task.done()
    assert db.pool is not None
    assert db.pool.used == 0  # the live task holds no connection between its queries
    # So others get one at once, even with a single connection.
    assert await asyncio.wait_for(objects.count(TestModel.select()), 2) == 1
    if backend not in POOLED:
        assert db.pool.size == 1
    release.set()
    assert await asyncio.wait_for(task, 5) == 1
    assert db.pool.used == 0


async def test_connection_is_in_use_only_while_the_query_runs(db, backend):
    await db.connect_async()
    assert db.pool is not None and db.pool.used == 0
    query = asyncio.create_task(db.execute_sql_async(sleep_sql(backend, 0.3)))
    for _ in range(200):
        if db.pool.used:
            break
        await asyncio.sleep(0.01)
    assert db.pool.used == 1
    await query
    assert db.pool.used == 0


# -- connect / close -----------------------------------------------------------


async def test_a_running_statement_leaves_the_process_idle(db, backend):
    """While the server runs a statement, the event loop sleeps until the answer comes.

    A driver that polled for it instead (psycopg 3 waited so, given no
    interval) would keep a CPU busy for as long as the statement runs.
    """
    seconds = 0.5
    await db.execute_sql_async("SELECT 1")  # connected, the server version read
    cpu, wall = time.process_time(), time.monotonic()
    await db.execute_sql_async(sleep_sql(backend, seconds))
    cpu, wall = time.process_time() - cpu, time.monotonic() - wall
    assert wall >= seconds
    # Every thread of the process counts (SQLite's connection thread too).
    assert cpu < 0.1 * wall, f"{cpu:.3f} s of CPU while waiting {wall:.3f} s for the server"


async def test_manager_connect_close_and_is_connected(db, objects):
    assert not objects.is_connected
    assert db.pool is None
    await objects.connect()
    assert objects.is_connected and db.is_connected
    assert db.pool is not None and db.pool.size >= 1
    first_pool = db.pool
    await objects.connect()  # already connected: nothing changes
    assert db.pool is first_pool
    await objects.close()
    assert not objects.is_connected
    assert db.pool is None
    await objects.close()  # closing twice is fine
    # A query reconnects by itself.
    await objects.create(TestModel, text="after-close")
    assert objects.is_connected
    assert db.pool is not first_pool
    assert [m.text for m in await objects.execute(TestModel.select())] == ["after-close"]


async def test_connect_async_accepts_the_running_loop(db):
    await db.connect_async(loop=asyncio.get_running_loop())
    assert db.is_connected
    await db.close_async()
    await db.connect_async(loop=asyncio.get_running_loop(), timeout=5)
    assert db.is_connected
    assert (await db.execute_sql_async("SELECT 1")).fetchone()[0] == 1


async def test_connect_async_rejects_another_loop(db):
    other = asyncio.new_event_loop()
    try:
        with pytest.raises(RuntimeError, match="running event loop"):
            await db.connect_async(loop=other)
    finally:
        other.close()
    assert not db.is_connected


async def test_manager_accepts_a_loop(db):
    objects = peewee_async.Manager(db, loop=asyncio.get_running_loop())
    created = await objects.create(TestModel, text="with-loop")
    assert (await objects.get(TestModel, id=created.id)).text == "with-loop"


async def test_manager_made_with_a_new_loop_before_it_runs(db, backend, observer):
    # The 0.x pattern: make a loop, hand it to the Manager, then run_until_complete.
    result: dict[str, Any] = {}

    def in_thread() -> None:
        database = make_database(backend)
        loop = asyncio.new_event_loop()
        try:
            objects = peewee_async.Manager(database, loop=loop)
            with database.bind_ctx([TestModel]):

                async def handler() -> None:
                    await objects.create(TestModel, text="from-new-loop")
                    result["count"] = await objects.count(TestModel.select())
                    await objects.close()

                loop.run_until_complete(handler())
        finally:
            loop.close()

    await asyncio.to_thread(in_thread)
    assert result["count"] == 1
    assert await committed_texts(observer) == ["from-new-loop"]


def test_import_does_not_touch_the_event_loop():
    script = textwrap.dedent(
        """
        import asyncio

        def forbidden(*args, **kwargs):
            raise AssertionError("asyncio.get_event_loop() called at import or construction")

        asyncio.get_event_loop = forbidden
        asyncio.events.get_event_loop = forbidden

        import peewee
        import peewee_async
        import peewee_asyncext

        # The quickstart builds these at module level, before any loop exists.
        database = peewee_async.PostgresqlDatabase("test")
        pooled = peewee_async.PooledMySQLDatabase("test", max_connections=3)
        ext = peewee_asyncext.PostgresqlExtDatabase("test", register_hstore=False)
        objects = peewee_async.Manager(database)

        class Page(peewee.Model):
            text = peewee.CharField()

            class Meta:
                database = database

        print("ok")
        """
    )
    done = subprocess.run(
        [sys.executable, "-W", "error", "-c", script],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"
    assert done.stderr == ""


# -- how many statements run at once -------------------------------------------


async def test_single_connection_classes_run_one_statement_at_a_time(db, backend):
    if backend in POOLED:
        pytest.skip("the pooled classes run statements side by side")
    sql = timed_sleep_sql(backend)

    async with PoolWatch(db) as watch:
        started = time.monotonic()
        rows = await asyncio.wait_for(
            asyncio.gather(*(db.execute_sql_async(sql, (0.05,)) for _ in range(10))), 10
        )
        elapsed = time.monotonic() - started

    results = [cursor.fetchone() for cursor in rows]
    assert len(results) == 10
    assert len({row[0] for row in results}) == 1  # one server session ran them all
    intervals = [(row[1], row[3]) for row in results]
    assert max_overlap(intervals) == 1, intervals  # never two at once on the server
    assert elapsed >= 0.45
    assert watch.sizes and max(watch.sizes) <= 1
    assert max(watch.used) == 1
    assert db.pool.used == 0


async def test_pooled_classes_run_statements_side_by_side(db, backend):
    if backend not in POOLED:
        pytest.skip("needs a pool of several connections")
    assert db.max_connections == 4
    sql = timed_sleep_sql(backend)
    await db.connect_async()

    async with PoolWatch(db) as watch:
        started = time.monotonic()
        rows = await asyncio.wait_for(
            asyncio.gather(*(db.execute_sql_async(sql, (0.25,)) for _ in range(8))), 10
        )
        elapsed = time.monotonic() - started

    results = [cursor.fetchone() for cursor in rows]
    assert len({row[0] for row in results}) <= 4
    assert max_overlap([(row[1], row[3]) for row in results]) == 4
    # Two rounds of four: not one (more than 4 at once) and not eight (one at a time).
    assert 0.48 <= elapsed < 0.74, elapsed
    assert max(watch.sizes) <= 4
    assert max(watch.used) == 4
    assert db.pool.used == 0


async def test_pool_exhaustion_raises_pool_timeout(db, backend, observer):
    tight = make_database(backend, max_connections=1, acquire_timeout=0.3)
    objects = peewee_async.Manager(tight)
    holding = asyncio.Event()
    finish = asyncio.Event()

    async def holder() -> None:
        async with objects.atomic():
            await objects.create(TestModel, text="held")
            holding.set()
            await finish.wait()

    try:
        with tight.bind_ctx([TestModel]):
            hold = asyncio.create_task(holder())
            await asyncio.wait_for(holding.wait(), 5)

            started = time.monotonic()
            with pytest.raises(PoolTimeout) as raised:
                await asyncio.create_task(objects.count(TestModel.select()))
            waited = time.monotonic() - started
            assert 0.25 <= waited < 2, waited

            error = raised.value
            assert isinstance(error, peewee.OperationalError)
            message = str(error)
            assert "max_connections" in message
            assert re.search(r"(?<![\d.])1(?![\d.])", message), message  # the pool size
            assert "0.3" in message  # the timeout that ran out

            # A waiter cancelled while waiting for the connection takes nothing with it.
            waiter = asyncio.create_task(objects.count(TestModel.select()))
            await asyncio.sleep(0.05)
            waiter.cancel()
            with pytest.raises(asyncio.CancelledError):
                await waiter

            finish.set()
            await asyncio.wait_for(hold, 5)
            await asyncio.sleep(0.05)  # a connection leaked to the cancelled waiter would show by now
            assert tight.pool is not None
            await tight.pool.settle()
            assert tight.pool.used == 0
            assert tight.pool.size <= 1
            assert await objects.count(TestModel.select()) == 1
            assert await committed_texts(observer) == ["held"]
    finally:
        finish.set()
        await tight.close_async()


# -- cancellation ----------------------------------------------------------------


async def test_cancelled_slow_query(db, objects, backend, observer):
    server_only(backend)
    await db.connect_async()
    tag = f"cancel-{uuid.uuid4().hex}"
    started = time.monotonic()
    task = asyncio.create_task(db.execute_sql_async(sleep_sql(backend, 5, tag)))
    sid = await wait_for_session_running(observer, backend, tag)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert time.monotonic() - started < 3  # the cancellation did not wait for the statement

    await db.pool.settle()
    assert db.pool.used == 0
    assert not await idle_in_transaction(observer, backend, sid)
    # The database works at once, without waiting for the server to finish the sleep.
    started = time.monotonic()
    await objects.create(TestModel, text="after-cancel")
    assert await objects.count(TestModel.select()) == 1
    assert time.monotonic() - started < 2
    assert db.pool.used == 0


async def test_task_cancelled_inside_atomic_between_statements(db, objects, backend, observer):
    server_only(backend)
    inserted = asyncio.Event()
    sessions: list[int] = []

    async def work() -> None:
        async with objects.atomic():
            sessions.append((await db.execute_sql_async(session_id_sql(backend))).fetchone()[0])
            await objects.create(TestModel, text="cancelled-row")
            inserted.set()
            await asyncio.sleep(30)

    task = asyncio.create_task(work())
    await asyncio.wait_for(inserted.wait(), 5)
    (sid,) = sessions
    assert await session_in_transaction(observer, backend, sid)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task

    await db.pool.settle()
    assert db.pool.used == 0
    assert not db.in_transaction_async()
    assert not await session_in_transaction(observer, backend, sid)
    assert not await idle_in_transaction(observer, backend, sid)
    assert await committed_texts(observer) == []
    await objects.create(TestModel, text="after-cancel")
    assert [m.text for m in await objects.execute(TestModel.select())] == ["after-cancel"]
    assert db.pool.used == 0


async def test_task_cancelled_inside_atomic_during_a_query(db, objects, backend, observer):
    server_only(backend)
    tag = f"cancel-{uuid.uuid4().hex}"
    sessions: list[int] = []

    async def work() -> None:
        async with objects.atomic():
            sessions.append((await db.execute_sql_async(session_id_sql(backend))).fetchone()[0])
            await objects.create(TestModel, text="cancelled-row")
            await db.execute_sql_async(sleep_sql(backend, 0.6, tag))

    task = asyncio.create_task(work())
    await wait_for_session_running(observer, backend, tag)
    (sid,) = sessions
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task

    await db.pool.settle()
    assert db.pool.used == 0
    assert not db.in_transaction_async()
    assert await committed_texts(observer) == []
    # The statement was cut off: the server is told to stop it, and the connection is
    # closed after that, so the server ends that session's transaction (a rollback)
    # a moment later, without waiting for the statement's end.
    deadline = time.monotonic() + 5
    while await session_in_transaction(observer, backend, sid):
        assert time.monotonic() < deadline, "the cancelled task's transaction stayed open on the server"
        await asyncio.sleep(0.05)
    assert await committed_texts(observer) == []
    await objects.create(TestModel, text="after-cancel")
    assert await committed_texts(observer) == ["after-cancel"]
    assert db.pool.used == 0


# -- a database used on a second event loop ----------------------------------------

LOOPS_SCRIPT = """
import asyncio, gc, json, sys
from tests.conftest import BACKENDS, make_database

backend = sys.argv[1]
postgres = BACKENDS[backend][0] == "postgres"
db = make_database(backend)
observer = make_database(backend)
SESSION = "SELECT pg_backend_pid()" if postgres else "SELECT CONNECTION_ID()"
ALIVE = (
    "SELECT COUNT(*) FROM pg_stat_activity WHERE pid = %s" if postgres
    else "SELECT COUNT(*) FROM information_schema.processlist WHERE id = %s"
)

async def first():
    sid = (await db.execute_sql_async(SESSION)).fetchone()[0]
    return sid, id(db.pool)

async def second(old_sid):
    sid = (await db.execute_sql_async(SESSION)).fetchone()[0]
    pool = id(db.pool)
    alive = []
    for _ in range(10):
        alive.append((await observer.execute_sql_async(ALIVE, (old_sid,))).fetchone()[0])
        if not alive[-1]:
            break
        await asyncio.sleep(0.05)
    await db.close_async()
    await observer.close_async()
    return sid, pool, alive

# asyncio.run closes its loop at the end; db is not closed in between.
old_sid, old_pool = asyncio.run(first())
new_sid, new_pool, alive = asyncio.run(second(old_sid))
gc.collect()
print(json.dumps({"old_sid": old_sid, "new_sid": new_sid, "new_pool": new_pool != old_pool, "alive": alive}))
"""


@functools.cache
def run_loops_script(backend: str) -> tuple[dict[str, Any], str]:
    """Run LOOPS_SCRIPT once per backend; the tests below read different parts of its outcome."""

    done = subprocess.run(
        [sys.executable, "-W", "default::ResourceWarning", "-c", LOOPS_SCRIPT, backend],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1]), done.stderr


@pytest.mark.direct_server
def test_database_reused_after_its_event_loop_closed(backend):
    server_only(backend)
    result, _ = run_loops_script(backend)
    assert result["new_pool"]  # a new pool on the new loop
    assert result["new_sid"] != result["old_sid"]  # with a new connection


@pytest.mark.direct_server
def test_connections_of_a_closed_event_loop_are_closed(backend):
    server_only(backend)
    # When the database moves on to a new loop, it closes the connections of the
    # old loop's pool (Pool.abandon): the old server session must end, and
    # neither the driver nor the socket may report an unclosed connection.
    result, stderr = run_loops_script(backend)
    assert result["alive"][-1] == 0, f"the old loop's session {result['old_sid']} is still connected"
    unclosed = re.findall(r".*(?:Unclosed|unclosed <socket).*", stderr)
    assert not unclosed, stderr


def test_database_used_from_two_threads_in_turn(backend):
    # The same database, used from two threads one after the other, each with its own loop.
    database = make_database(backend)
    outcomes: list[Any] = []

    def run() -> None:
        async def work() -> int:
            try:
                return int((await database.execute_sql_async("SELECT 7")).fetchone()[0])
            finally:
                await database.close_async()

        outcomes.append(asyncio.run(work()))

    for _ in range(2):
        thread = threading.Thread(target=run)
        thread.start()
        thread.join(30)
    assert outcomes == [7, 7]
    assert not database.is_connected


# -- errors come out as peewee's exceptions ----------------------------------------


@pytest.mark.parametrize(
    "sql",
    ["SELEKT 1", "SELECT * FROM no_such_table_for_peewee_async"],
    ids=["syntax", "unknown-table"],
)
async def test_bad_sql_raises_peewee_errors(db, objects, backend, sql):
    # The class sync peewee raises: sqlite3 reports both as an OperationalError.
    expected = peewee.OperationalError if BACKENDS[backend][0] == "sqlite" else peewee.ProgrammingError
    with pytest.raises(peewee.DatabaseError) as raised:
        await db.execute_sql_async(sql)
    error = raised.value
    assert type(error).__module__ == "peewee", type(error)
    assert isinstance(error, expected)
    with pytest.raises(expected):
        await objects.execute(TestModel.raw(sql))
    assert db.pool.used == 0
    assert (await db.execute_sql_async("SELECT 1")).fetchone()[0] == 1


async def test_integrity_error_is_peewee_integrity_error(db, objects):
    await objects.create(TestModel, text="unique")
    with pytest.raises(peewee.IntegrityError) as raised:
        await objects.create(TestModel, text="unique")
    assert type(raised.value).__module__ == "peewee"
    assert db.pool.used == 0
    assert await objects.count(TestModel.select()) == 1


async def test_unreachable_server_raises_operational_error(backend):
    if BACKENDS[backend][0] == "sqlite":
        database: peewee_async.AsyncDatabase = peewee_async.SqliteDatabase("/nonexistent-folder/test.db")
    else:
        database = make_database(backend, port=1, connect_timeout=2)
    try:
        with pytest.raises(peewee.OperationalError):
            await database.execute_sql_async("SELECT 1")
        assert not database.is_connected
        with pytest.raises(peewee.OperationalError):
            await database.connect_async()
    finally:
        await database.close_async()


async def test_mysql_sql_mode_list_is_set_on_async_and_sync_connections(backend):
    if BACKENDS[backend][0] != "mysql":
        pytest.skip("MySQL only")
    database = make_database(backend, sql_mode="STRICT_TRANS_TABLES,PIPES_AS_CONCAT")
    try:
        async_mode = (await database.execute_sql_async("SELECT @@SESSION.sql_mode")).fetchone()[0]
        sync_mode = database.execute_sql("SELECT @@SESSION.sql_mode").fetchone()[0]
    finally:
        database.close()
        await database.close_async()
    assert async_mode == sync_mode == "PIPES_AS_CONCAT,STRICT_TRANS_TABLES"


@pytest.mark.parametrize("backend", [name for name in BACKENDS if name.startswith("postgres")])
@pytest.mark.parametrize("stale", ["reader", "writer"])
async def test_aiopg_connects_where_the_event_loop_kept_a_closed_sockets_entry(backend, stale):
    """A new aiopg connection whose socket takes the number of one closed under its loop entry.

    libpq closes a connection's socket when the server goes away, before
    aiopg removes its entry from the event loop; epoll drops the socket, the
    loop keeps the entry. A connection opened next takes the lowest free
    number: over a writer's entry aiopg's ``add_reader`` failed with
    ``FileNotFoundError``, over a reader's the connection was never woken.
    Made here with a socket pair: the entry left behind, the socket closed.
    """
    loop = asyncio.get_running_loop()
    mine, other = socket.socketpair()
    number = mine.fileno()
    (loop.add_reader if stale == "reader" else loop.add_writer)(number, lambda: None)
    mine.close()  # epoll forgets the socket; the loop's entry stays
    db = make_database(backend)
    try:
        rows = await asyncio.wait_for(db.execute_sql_async("SELECT 1"), 10)
        assert rows.rows == [(1,)]
    finally:
        await db.close_async()
        other.close()
        loop.remove_reader(number)
        loop.remove_writer(number)


def _aiopg_sockets(loop: asyncio.AbstractEventLoop) -> dict[int, Any]:
    """The event loop's entries of aiopg connections: number -> aiopg's callback handle."""
    aiopg = pytest.importorskip("aiopg")
    entries = {}
    for number, key in loop._selector.get_map().items():  # type: ignore[attr-defined]
        for handle in key.data or ():
            if handle is not None and getattr(handle, "_callback", None) is aiopg.Connection._ready:
                entries[number] = handle
    return entries


@pytest.mark.parametrize("backend", ["postgres", "postgres-pool"])
@pytest.mark.parametrize("woken", [True, False], ids=["woken", "never-woken"])
async def test_aiopg_connect_where_libpq_replaced_its_socket(backend, woken):
    """libpq replaces the socket of a connection being opened: peewee's OperationalError, nothing left behind.

    libpq's retry without TLS (``sslmode=prefer``, the server gone in the
    handshake) opens a new socket, which takes the number of the one it just
    closed; epoll forgot the old one and never hears of the new. aiopg then
    failed with ``FileNotFoundError`` from the event loop, over libpq's error
    (woken) or over the connect timeout (never woken). Made here with a
    connect kept in progress (the server's accept queue is full) and another
    socket put under its number.
    """
    loop = asyncio.get_running_loop()
    listener = socket.create_server(("127.0.0.1", 0), backlog=0)
    port = listener.getsockname()[1]
    queued = []
    for _ in range(3):  # fill the accept queue: later SYNs go unanswered
        sock = socket.socket()
        sock.setblocking(False)
        sock.connect_ex(("127.0.0.1", port))
        queued.append(sock)
    db = make_database(backend, host="127.0.0.1", port=port, connect_timeout=1)
    before = set(_aiopg_sockets(loop))
    opening = asyncio.create_task(db.connect_async())
    try:
        for _ in range(100):
            await asyncio.sleep(0.01)
            new = set(_aiopg_sockets(loop)) - before
            if new:
                break
        assert len(new) == 1, "the connection being opened has no entry in the event loop"
        (number,) = new
        handle = _aiopg_sockets(loop)[number]
        with socket.socket() as replacement:
            os.dup2(replacement.fileno(), number)  # epoll drops the socket it watched under this number
        if woken:
            loop.call_soon(handle._callback, *handle._args)
        with pytest.raises(peewee.OperationalError) as raised:
            await asyncio.wait_for(opening, 10)
        assert str(raised.value).startswith("Could not connect to "), raised.value
        assert not set(_aiopg_sockets(loop)) - before, "an entry of the failed connection stayed in the loop"
    finally:
        opening.cancel()
        await db.close_async()
        for sock in queued:
            sock.close()
        listener.close()
    # The next connection, to the real server, is not troubled by what happened.
    real = make_database(backend)
    try:
        assert (await asyncio.wait_for(real.execute_sql_async("SELECT 1"), 10)).fetchone() == (1,)
    finally:
        await real.close_async()
