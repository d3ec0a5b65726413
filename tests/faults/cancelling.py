"""Helpers for fault tests: cancel an operation at every event-loop step, and count leaks.

The leak counts are real ones, read where they live: connections handed out by
the pool, and sessions the server itself sees inside a transaction (PostgreSQL's
``pg_stat_activity``, MySQL's InnoDB status joined to its process list; for SQLite,
whose "server" is the file, the pool's idle connections that are still inside a
transaction).

``cancel_at_every_step`` is generic: it takes any coroutine function, so a test
of streaming (``objects.iterate``) can reuse it with a coroutine that consumes
the stream::

    async def consume() -> int:
        return len([row async for row in objects.iterate(TestModel.select())])

    await cancel_at_every_step(db, consume, after=lambda outcome: ...)
"""

from __future__ import annotations

import asyncio
import atexit
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import peewee

import peewee_async

from ..conftest import server_settings

# A server-side session is gone a moment after its client closed the socket, not
# at once: the checks below wait for the server to catch up, up to this long.
SERVER_CATCH_UP = 5.0
# No operation under test takes this many steps; reaching it means a loop never ends.
MAX_STEPS = 5000


@dataclass
class Outcome:
    """How one run of an operation ended."""

    steps: int  # event-loop steps let run before the cancel (or before it finished)
    finished: bool  # it completed before the cancel arrived
    cancelled: bool  # it ended with CancelledError
    result: Any = None
    error: BaseException | None = None


async def run_and_cancel_after(make: Callable[[], Awaitable[Any]], steps: int) -> Outcome:
    """Run ``make()`` in a task, and cancel the task after ``steps`` iterations of ``sleep(0)``.

    Returns how the task ended. When it ended before the cancel, ``finished``
    is true and the caller's loop over ``steps`` is over.
    """
    already = asyncio.all_tasks()
    task = asyncio.ensure_future(make())
    for _ in range(steps):
        if task.done():
            break
        await asyncio.sleep(0)
    finished = task.done()
    if not finished:
        task.cancel()
    try:
        try:
            result = await task
        finally:
            await _wait_for_spawned(already)
    except asyncio.CancelledError:
        if not task.cancelled():
            raise  # the test's own task was cancelled
        return Outcome(steps, finished, cancelled=True)
    except Exception as exc:
        return Outcome(steps, finished, cancelled=False, error=exc)
    return Outcome(steps, finished, cancelled=False, result=result)


async def _wait_for_spawned(already: set[asyncio.Task[Any]]) -> None:
    """Wait for the tasks the operation spawned, e.g. the children of a ``gather``.

    A cancelled ``gather`` raises as soon as one child is cancelled, while the
    others are still finishing their own cancellation: their connections are
    given back a few steps later. They must end soon, by themselves.
    """
    spawned = asyncio.all_tasks() - already - {asyncio.current_task()}
    if spawned:
        _, pending = await asyncio.wait(spawned, timeout=SERVER_CATCH_UP)
        assert not pending, f"tasks spawned by the operation still run: {pending}"


async def cancel_at_every_step(
    db: peewee_async.AsyncDatabase,
    make: Callable[[], Awaitable[Any]],
    after: Callable[[Outcome], Awaitable[None]],
    before: Callable[[], Awaitable[None]] | None = None,
) -> list[Outcome]:
    """For k = 0, 1, 2, ...: run ``make()``, cancel it after k steps, check that nothing leaked.

    ``before()`` resets the data for each run; ``after(outcome)`` checks the
    rows. Between them this checks the pool and the server (``assert_no_leaks``)
    and that the next query works. Stops after the first run that finished
    before its cancel; returns every outcome.
    """
    outcomes = []
    for steps in range(MAX_STEPS):
        if before is not None:
            await before()
        outcome = await run_and_cancel_after(make, steps)
        outcomes.append(outcome)
        if outcome.error is not None:
            raise AssertionError(f"cancelled after {steps} steps: {outcome.error!r}") from outcome.error
        try:
            await assert_no_leaks(db)
            await after(outcome)
        except AssertionError as exc:
            raise AssertionError(f"cancelled after {steps} steps: {exc}") from exc
        if outcome.finished:
            assert any(o.cancelled for o in outcomes) or steps == 0, "no run was ever cancelled"
            return outcomes
    raise AssertionError(f"the operation never finished within {MAX_STEPS} steps")


async def assert_no_leaks(db: peewee_async.AsyncDatabase) -> None:
    """Every connection given back, no transaction open here or on the server, and a query works."""
    pool = db.pool
    if pool is not None:
        await pool.settle()
        assert pool.used == 0, f"{pool.used} connection(s) of the pool still in use"
    assert db._open_transactions == 0, f"{db._open_transactions} transaction(s) still open"
    await wait_for_no_server_transactions(db)
    await wait_for_no_running_statements(db)
    # The next query works (on a fresh or a reused connection).
    rows = (await db.execute_sql_async("SELECT 1")).fetchall()
    assert [tuple(row) for row in rows] == [(1,)], rows
    if pool is not None:
        assert pool.used == 0, f"{pool.used} connection(s) in use after a plain query"


async def give_back_all(db: peewee_async.AsyncDatabase, held: list[Any]) -> None:
    """Give the connections ``held`` back to the pool; then nothing leaked, and every connection is free."""
    pool = db.pool
    assert pool is not None
    for conn in held:
        pool.release(conn)
    await assert_no_leaks(db)
    assert pool.freesize == pool.size


async def wait_for_no_server_transactions(db: peewee_async.AsyncDatabase) -> None:
    """Wait (up to SERVER_CATCH_UP seconds) until the server shows none of our sessions in a transaction."""
    deadline = time.monotonic() + SERVER_CATCH_UP
    while True:
        open_now = server_transactions(db)
        if not open_now:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"the server still shows our sessions inside a transaction: {open_now}")
        await asyncio.sleep(0.01)


async def wait_for_no_running_statements(db: peewee_async.AsyncDatabase) -> None:
    """Wait until no statement of ours runs on the server.

    A server goes on with a statement whose client closed the connection (a
    cancelled one) until it next writes to it: an autocommit INSERT can commit
    after the cancellation was raised. Checking rows before then would race.
    """
    deadline = time.monotonic() + SERVER_CATCH_UP
    while True:
        running = server_statements(db)
        if not running:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"statements of ours still run on the server: {running}")
        await asyncio.sleep(0.005)


def server_statements(db: peewee_async.AsyncDatabase) -> list[Any]:
    """Statements of ``db``'s database that the server is running (not counting ours here)."""
    if isinstance(db, peewee.PostgresqlDatabase):
        cursor = _monitor_sql(
            "postgres",
            "SELECT pid, state, query FROM pg_stat_activity WHERE datname = %s "
            "AND state NOT LIKE 'idle%%' AND pid <> pg_backend_pid()",
            (db.database,),
        )
        return list(cursor.fetchall())
    if isinstance(db, peewee.MySQLDatabase):
        cursor = _monitor_sql(
            "mysql",
            "SELECT id, command, info FROM information_schema.processlist "
            "WHERE db = %s AND command NOT IN ('Sleep', 'Daemon') AND id <> CONNECTION_ID()",
            (db.database,),
        )
        return list(cursor.fetchall())
    return []  # SQLite: a statement runs in our own process, and the pool waits for it


def server_transactions(db: peewee_async.AsyncDatabase) -> list[Any]:
    """Sessions of ``db``'s database that the server sees inside a transaction (not counting ours here)."""
    if isinstance(db, peewee.PostgresqlDatabase):
        cursor = _monitor_sql(
            "postgres",
            "SELECT pid, state, query FROM pg_stat_activity WHERE datname = %s "
            "AND state LIKE 'idle in transaction%%' AND pid <> pg_backend_pid()",
            (db.database,),
        )
        return list(cursor.fetchall())
    if isinstance(db, peewee.MySQLDatabase):
        # Not information_schema.innodb_trx: InnoDB refreshes that table only
        # when nobody read it for 0.1 s, so checks in a loop would all see the
        # first one's data (and make other readers see stale data too). The
        # engine status is made afresh for each read.
        monitor = _monitor("mysql")
        status = monitor.execute_sql("SHOW ENGINE INNODB STATUS").fetchone()[2]
        active = set()
        for block in status.split("---TRANSACTION ")[1:]:
            found = re.search(r"(?:MySQL|MariaDB) thread id (\d+)", block)
            if "ACTIVE" in block.split("\n", 1)[0] and found:
                active.add(int(found.group(1)))
        ours = monitor.execute_sql(
            "SELECT id, command, info FROM information_schema.processlist "
            "WHERE db = %s AND id <> CONNECTION_ID()",
            (db.database,),
        )
        return [row for row in ours.fetchall() if row[0] in active]
    if isinstance(db, peewee.SqliteDatabase):
        pool = db.pool
        idle = list(getattr(pool, "_free", [])) if pool is not None else []
        return [conn for conn in idle if pool is not None and pool.in_transaction(conn)]
    raise TypeError(f"no server check for {type(db).__name__}")


_monitors: dict[str, peewee.Database] = {}


def _monitor(server: str) -> peewee.Database:
    """A plain sync peewee connection to ``server``, outside every pool under test."""
    if server not in _monitors:
        settings = server_settings(server)
        name = settings.pop("database")
        cls = peewee.PostgresqlDatabase if server == "postgres" else peewee.MySQLDatabase
        _monitors[server] = cls(name, autoconnect=True, **settings)
    return _monitors[server]


def _monitor_sql(server: str, sql: str, params: tuple[Any, ...]) -> Any:
    """``sql`` run by the monitor of ``server``; once more on a new connection if its own broke.

    The server, or the PgBouncer in front of it, may have restarted since the
    monitor's last query (the scaling-out tests restart them).
    """
    monitor = _monitor(server)
    try:
        return monitor.execute_sql(sql, params)
    except (peewee.OperationalError, peewee.InterfaceError):
        try:
            monitor.close()
        except peewee.DatabaseError:
            monitor._state.reset()
        return monitor.execute_sql(sql, params)


@atexit.register
def _close_monitors() -> None:
    for monitor in _monitors.values():
        monitor.close()
