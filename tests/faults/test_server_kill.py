"""Connections killed on the server: ``pg_terminate_backend`` / MySQL ``KILL``, and SQLite's closed.

Only sessions of this test's own pool are killed: their ids are read from the
pool's connections.
"""

from __future__ import annotations

import asyncio
import pathlib
import uuid
from collections.abc import AsyncIterator

import pytest

import peewee_async
from peewee_async import ConnectionLost

from ..models import TestModel
from .server_checks import (
    assert_recovered,
    fill_pool,
    idle_sessions,
    is_postgres,
    kill_sessions,
    session_id_sql,
    session_of,
    sleep_sql,
    wait_running,
)

pytestmark = pytest.mark.direct_server

KILL_BACKENDS = [
    "postgres", "postgres-pool", "psycopg", "psycopg-pool", "mysql", "mysql-pool", "asyncmy", "asyncmy-pool",
]  # fmt: skip
on_servers = pytest.mark.parametrize("backend", KILL_BACKENDS, indirect=True)


def pool_size(backend: str) -> int:
    return 3 if backend.endswith("-pool") else 1


@on_servers
@pytest.mark.parametrize("loop_ran", [False, True], ids=["at-once", "after-loop-ran"])
async def test_idle_connections_killed_are_replaced(db, objects, backend, observer, loop_ran):
    size = pool_size(backend)
    await fill_pool(db, backend, size)
    assert db.pool.size == size
    killed = await idle_sessions(db, backend)
    assert len(killed) == size

    kill_sessions(backend, killed)
    if loop_ran:
        await asyncio.sleep(0.05)  # the driver may notice the closed sockets by itself

    # The next query outside a transaction just works, on a new connection.
    await objects.create(TestModel, text="after-kill")
    new = (await db.execute_sql_async(session_id_sql(backend))).fetchone()[0]
    assert new not in {session.id for session in killed}
    await assert_recovered(db, backend, observer, ["after-kill"], grow_to=size)


@on_servers
async def test_killed_idle_inside_transaction(db, objects, backend, observer):
    await objects.create(TestModel, text="before")
    with pytest.raises(ConnectionLost, match="rolled the transaction back") as raised:
        async with objects.atomic():
            await objects.create(TestModel, text="lost-1")
            session = session_of(backend, db._current_transactions().connection)
            kill_sessions(backend, [session])
            await objects.create(TestModel, text="lost-2")
    message = str(raised.value)
    assert "was lost" in message and "run the whole transaction again" in message
    assert db.describe() in message
    assert not db.in_transaction_async()
    await assert_recovered(db, backend, observer, ["before"], grow_to=pool_size(backend))


@on_servers
async def test_transaction_never_continues_on_a_new_connection(db, objects, backend, observer):
    """Errors swallowed inside the block: every later statement, and the COMMIT, still fail."""
    with pytest.raises(ConnectionLost, match="was lost earlier"):
        async with objects.atomic() as transaction:
            await objects.create(TestModel, text="lost-1")
            kill_sessions(backend, [session_of(backend, db._current_transactions().connection)])
            with pytest.raises(ConnectionLost):
                await objects.create(TestModel, text="lost-2")
            for _ in range(2):
                with pytest.raises(ConnectionLost, match="was lost earlier"):
                    await objects.create(TestModel, text="lost-3")
            with pytest.raises(ConnectionLost, match="was lost earlier"):
                await transaction.commit()
    await assert_recovered(db, backend, observer, [], grow_to=pool_size(backend))


@on_servers
async def test_killed_during_a_statement(db, objects, backend, observer):
    tag = f"kill-{uuid.uuid4().hex}"
    task = asyncio.create_task(db.execute_sql_async(sleep_sql(backend, 3, tag)))
    sid = await wait_running(observer, backend, tag)
    kill = f"SELECT pg_terminate_backend({sid})" if is_postgres(backend) else f"KILL {sid}"
    await observer.execute_sql_async(kill)
    with pytest.raises(ConnectionLost, match="may or may not have run"):
        await task
    await assert_recovered(db, backend, observer, [], grow_to=pool_size(backend))


@on_servers
async def test_killed_before_commit_is_not_silent(db, objects, backend, observer):
    """A connection that dies before COMMIT: leaving the block raises, nothing is committed."""
    with pytest.raises(ConnectionLost, match="rolled the transaction back"):
        async with objects.atomic():
            await objects.create(TestModel, text="lost")
            kill_sessions(backend, [session_of(backend, db._current_transactions().connection)])
    await assert_recovered(db, backend, observer, [], grow_to=pool_size(backend))


# -- SQLite: a connection closed under the pool ------------------------------


@pytest.fixture
async def sqlite_db(tmp_path: pathlib.Path) -> AsyncIterator[peewee_async.SqliteDatabase]:
    database = peewee_async.SqliteDatabase(tmp_path / "x.db")
    with database.bind_ctx([TestModel]):
        database.create_tables([TestModel])
        database.close()
        yield database
        await database.close_async()


async def test_sqlite_closed_idle_connection_is_replaced(sqlite_db):
    objects = peewee_async.Manager(sqlite_db)
    await objects.create(TestModel, text="before")
    (conn,) = sqlite_db.pool._free
    await conn.raw.close()  # closed behind the pool's back (its thread ends)
    await objects.create(TestModel, text="after")
    assert [m.text for m in await objects.execute(TestModel.select().order_by(TestModel.id))] == [
        "before",
        "after",
    ]
    assert sqlite_db.pool.used == 0 and sqlite_db.pool.size == 1


async def test_sqlite_closed_inside_transaction(sqlite_db):
    objects = peewee_async.Manager(sqlite_db)
    with pytest.raises(ConnectionLost, match="rolled the transaction back"):
        async with objects.atomic():
            await objects.create(TestModel, text="lost")
            await sqlite_db._current_transactions().connection.raw.close()
            await objects.create(TestModel, text="lost-2")
    await sqlite_db.pool.settle()
    assert sqlite_db.pool.used == 0
    assert await objects.count(TestModel.select()) == 0
    assert sqlite_db.pool.size == 1


@pytest.mark.parametrize("backend", ["postgres-pool"], indirect=True)
async def test_a_new_connection_on_the_socket_number_of_a_killed_one(db, objects, backend):
    """aiopg: a connection opened before the pool drops a killed one gets its socket number.

    It connects, and dropping the dead one leaves the new one's registration
    with the event loop alone.
    """
    await fill_pool(db, backend, 2)
    pool = db.pool
    first, second = await pool.acquire(), await pool.acquire()
    killed = session_of(backend, first)
    pool.release(first)
    kill_sessions(backend, [killed])
    await asyncio.sleep(0.05)  # aiopg reads the server's goodbye; libpq closes the socket
    fresh = await asyncio.wait_for(pool._connect(), 10)  # as a busy pool opens one
    try:
        assert session_of(backend, fresh).fd == killed.fd
        pool.release(second)
        # The next statements drop the dead connection and run on live ones, the new one too.
        for _ in range(4):
            result = await asyncio.wait_for(db.execute_sql_async("SELECT 3"), 10)
            assert result.fetchone()[0] == 3
        result = await asyncio.wait_for(pool.execute(fresh, "SELECT 4", ()), 10)
        assert result.fetchone()[0] == 4
    finally:
        pool.release(fresh)


@pytest.mark.parametrize("backend", ["postgres-pool"], indirect=True)
async def test_a_new_connection_on_the_socket_number_of_one_not_yet_read(db, objects, backend):
    """aiopg: a socket closed under a connection before aiopg read from it again.

    Its number is reused by the next connection, while the event loop still
    has the dead one's reader: the new connection opens all the same, works,
    and closing the dead one leaves the new one's reader alone.
    """
    await fill_pool(db, backend, 1)
    pool = db.pool
    dead = await pool.acquire()
    number = dead.raw._fileno
    dead.raw._conn.close()  # libpq's socket gone; aiopg has not seen it yet
    fresh = await asyncio.wait_for(pool._connect(), 10)
    try:
        assert fresh.raw._fileno == number
        pool._discard(dead)
        result = await asyncio.wait_for(pool.execute(fresh, "SELECT 5", ()), 10)
        assert result.fetchone()[0] == 5
    finally:
        pool.release(fresh)
