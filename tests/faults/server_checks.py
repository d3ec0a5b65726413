"""What the fault tests look at on the server, and the check that follows every fault.

Everything is filtered to this test run's database (``server_settings``' name)
and to sessions other than the observer's own, so parallel test runs on the
same servers are never looked at, let alone killed.
"""

from __future__ import annotations

import asyncio
import select
import time
from dataclasses import dataclass
from typing import Any

import peewee_async

from ..conftest import BACKENDS, make_database, server_settings
from ..models import TestModel


def is_postgres(backend: str) -> bool:
    return BACKENDS[backend][0] == "postgres"


def sleep_sql(backend: str, seconds: float, tag: str) -> str:
    """A statement that sleeps on the server, tagged so that it can be found in the session list."""
    fn = "pg_sleep" if is_postgres(backend) else "SLEEP"
    return f"SELECT {fn}({seconds}), '{tag}'"


def session_id_sql(backend: str) -> str:
    return "SELECT pg_backend_pid()" if is_postgres(backend) else "SELECT CONNECTION_ID()"


@dataclass(frozen=True)
class Session:
    """A connection of our pool, as the server knows it (``id``) and as the OS does (``fd``)."""

    id: int
    fd: int


def session_of(backend: str, conn: Any) -> Session:
    """The server session and socket of one connection of the async pool, read without a query."""
    driver = BACKENDS[backend][1].driver
    raw = conn.raw
    if driver.name == "aiopg":
        return Session(raw.raw.get_backend_pid(), raw.raw.fileno())
    if driver.name == "psycopg":
        return Session(raw.info.backend_pid, raw.pgconn.socket)
    if driver.name == "asyncpg":
        return Session(raw.get_server_pid(), raw._transport.get_extra_info("socket").fileno())
    # aiomysql keeps a StreamWriter, asyncmy its transport.
    transport = raw._writer.transport if hasattr(raw, "_writer") else raw._transport
    return Session(raw.thread_id(), transport.get_extra_info("socket").fileno())


async def idle_sessions(db: peewee_async.AsyncDatabase, backend: str) -> list[Session]:
    """The sessions of every idle connection in ``db``'s pool."""
    pool = db.pool
    assert pool is not None
    held = [await pool.acquire() for _ in range(pool.freesize)]
    try:
        return [session_of(backend, conn) for conn in held]
    finally:
        for conn in held:
            pool.release(conn)


async def fill_pool(db: peewee_async.AsyncDatabase, backend: str, count: int) -> None:
    """Make the pool open ``count`` connections, by running that many statements side by side."""
    await asyncio.gather(*(db.execute_sql_async(sleep_sql(backend, 0.1, "fill")) for _ in range(count)))


def kill_sessions(backend: str, sessions: list[Session]) -> None:
    """Kill our sessions server-side, and wait until each socket of ours sees it.

    Sync on purpose: the event loop runs nothing meanwhile, so the driver has
    not read the end of the stream yet when the next query starts.
    """
    killer = make_database("postgres" if is_postgres(backend) else "mysql")
    killer.connect()
    try:
        for session in sessions:
            if is_postgres(backend):
                killer.execute_sql("SELECT pg_terminate_backend(%s)", (session.id,))
            else:
                killer.execute_sql(f"KILL {int(session.id)}")
    finally:
        killer.close()
    for session in sessions:
        readable, _, _ = select.select([session.fd], [], [], 5)
        assert readable, f"session {session.id} was killed, but its socket does not show it"


async def running_sessions(observer: peewee_async.AsyncDatabase, backend: str, tag: str) -> list[int]:
    """Sessions of our database (other than the observer's) running a statement that contains ``tag``."""
    name = server_settings(BACKENDS[backend][0])["database"]
    if is_postgres(backend):
        sql = (
            "SELECT pid FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid() "
            "AND state = 'active' AND position(%s in query) > 0"
        )
    else:
        sql = (
            "SELECT id FROM information_schema.processlist WHERE db = %s AND id <> CONNECTION_ID() "
            "AND command = 'Query' AND LOCATE(%s, info) > 0"
        )
    cursor = await observer.execute_sql_async(sql, (name, tag))
    return [int(row[0]) for row in cursor.fetchall()]


async def wait_running(observer: peewee_async.AsyncDatabase, backend: str, tag: str) -> int:
    """The session that runs the statement tagged ``tag``, once it has started."""
    for _ in range(250):
        found = await running_sessions(observer, backend, tag)
        if found:
            return found[0]
        await asyncio.sleep(0.02)
    raise AssertionError(f"no session started the statement tagged {tag!r}")


async def sessions_in_transaction(observer: peewee_async.AsyncDatabase, backend: str) -> list[int]:
    """Sessions of our database (other than the observer's) inside a transaction."""
    name = server_settings(BACKENDS[backend][0])["database"]
    if is_postgres(backend):
        sql = (
            "SELECT pid FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid() "
            "AND (state LIKE 'idle in transaction%%' OR backend_xid IS NOT NULL)"
        )
    else:
        # InnoDB caches this table for 0.1 s: callers poll it.
        sql = (
            "SELECT t.trx_mysql_thread_id FROM information_schema.innodb_trx t "
            "JOIN information_schema.processlist p ON p.id = t.trx_mysql_thread_id "
            "WHERE p.db = %s AND p.id <> CONNECTION_ID()"
        )
    cursor = await observer.execute_sql_async(sql, (name,))
    return [int(row[0]) for row in cursor.fetchall()]


async def wait_no_transaction(observer: peewee_async.AsyncDatabase, backend: str) -> None:
    """Wait until no session of ours is inside a transaction.

    The server ends a session whose client went away only once it notices
    (the next read on its socket), a moment after the fault: poll, up to 10 s.
    """
    deadline = time.monotonic() + 10
    while True:
        found = await sessions_in_transaction(observer, backend)
        if not found:
            return
        assert time.monotonic() < deadline, f"sessions {found} are still inside a transaction"
        await asyncio.sleep(0.15)


async def committed_texts(observer: peewee_async.AsyncDatabase) -> list[str]:
    cursor = await observer.execute_sql_async(f"SELECT text FROM {TestModel._meta.table_name}")
    return sorted(row[0] for row in cursor.fetchall())


async def assert_recovered(
    db: peewee_async.AsyncDatabase,
    backend: str,
    observer: peewee_async.AsyncDatabase,
    rows: list[str],
    grow_to: int = 0,
) -> dict[str, int]:
    """The check after every fault; returns the counts it checked.

    Every connection is back in the pool, no session of ours is left inside a
    transaction, the table holds exactly ``rows`` (nothing rolled back is
    visible), the next query works, and the pool can open ``grow_to``
    connections again.
    """
    pool = db.pool
    assert pool is not None
    await pool.settle()
    assert pool.used == 0, f"{pool.used} connection(s) not given back to the pool"
    await wait_no_transaction(observer, backend)
    assert await committed_texts(observer) == sorted(rows)
    assert (await db.execute_sql_async("SELECT 1")).fetchone() == (1,)
    if grow_to:
        await fill_pool(db, backend, grow_to)
        assert pool.size == grow_to
    assert pool.used == 0
    return {"used": pool.used, "free": pool.freesize, "size": pool.size, "rows": len(rows)}
