"""The MySQL family's drivers behave alike: aiomysql, and asyncmy where it would differ.

asyncmy differs from aiomysql in how it sends some parameters, how it reports
the server's warnings and how fast it reads from the socket; its driver module
adapts each. These tests run on both drivers, so that a difference shows as a
failure of one of them.
"""

from __future__ import annotations

import asyncio
import datetime
import decimal

import peewee
import pytest

import peewee_async
from peewee_async.databases import asyncmy as asyncmy_module

from .models import TestModel

MYSQL_BACKENDS = ["mysql", "mysql-pool", "asyncmy", "asyncmy-pool"]
on_mysql = pytest.mark.parametrize("backend", MYSQL_BACKENDS, indirect=True)


@on_mysql
async def test_lists_and_sets_are_sent_as_tuples(db):
    cursor = await db.execute_sql_async(
        "SELECT 2 IN %s, 3 IN %s, 4 IN %s, 5 IN %s", ((1, 2), [1, 3], {4, 6}, frozenset([6]))
    )
    assert [tuple(row) for row in cursor.fetchall()] == [(1, 1, 1, 0)]


@on_mysql
async def test_a_dict_is_refused_as_a_parameter(db):
    with pytest.raises(TypeError, match="dict can not be used as parameter"):
        await db.execute_sql_async("SELECT %s", ({"a": 1},))
    assert (await db.execute_sql_async("SELECT 1")).fetchone() == (1,)  # the connection goes on


@on_mysql
async def test_server_warnings_are_python_warnings(db):
    with pytest.warns(Warning, match="Incorrect datetime value"):
        cursor = await db.execute_sql_async("SELECT CAST('2024-02-30' AS DATE)")
    assert cursor.fetchall() == [(None,)]


@on_mysql
async def test_values_and_counts_come_back_as_pymysql_gives_them(db, objects):
    cursor = await db.execute_sql_async(
        "SELECT CAST(1.5 AS DECIMAL(4, 2)), CAST('2024-01-02 03:04:05.5' AS DATETIME(1)), "
        "CAST('-01:02:03' AS TIME), _binary'ab', JSON_OBJECT('a', 1), TRUE, b'101', NULL"
    )
    row = cursor.fetchone()
    expected = (
        decimal.Decimal("1.50"),
        datetime.datetime(2024, 1, 2, 3, 4, 5, 500000),
        -datetime.timedelta(hours=1, minutes=2, seconds=3),
        b"ab",
        '{"a": 1}',
        1,
        b"\x05",
        None,
    )
    assert tuple(row) == expected
    assert [type(value) for value in row] == [type(value) for value in expected]
    assert (cursor.rowcount, cursor.lastrowid) == (1, None)
    created = await objects.create(TestModel, text="counted")
    updated = await db.execute_sql_async("UPDATE testmodel SET data = 'x' WHERE id = %s", (created.id,))
    assert (updated.rowcount, updated.lastrowid, updated.description) == (1, 0, None)


@pytest.mark.parametrize("backend", ["asyncmy", "asyncmy-pool"], indirect=True)
async def test_a_stream_reads_the_socket_only_as_fast_as_its_rows_are_read(db, objects):
    """A loop that awaits other work between chunks holds a bounded part of the result, not all of it."""
    digits = " UNION ALL ".join(f"SELECT {d} AS d" for d in range(10))
    # 100,000 rows of about 200 bytes: some 20 MB from the server.
    sql = (
        f"SELECT a.d + 10 * b.d + 100 * c.d + 1000 * e.d + 10000 * f.d, REPEAT('x', 200) "
        f"FROM ({digits}) a, ({digits}) b, ({digits}) c, ({digits}) e, ({digits}) f"
    )
    largest = total = count = 0
    async for number, _ in objects.iterate(TestModel.raw(sql).tuples(), chunk_size=500):
        total += number
        count += 1
        if count % 500 == 0:
            await asyncio.sleep(0.001)  # the server meanwhile sends what TCP lets it
            largest = max(largest, *(received_ahead(conn.raw) for conn in db.pool.connections()))
    assert count == 100_000 and total == 100_000 * 99_999 // 2
    # A bound and one read of the socket (256 KiB) past it, not the 20 MB of the whole result.
    assert largest <= 2**19, f"the connection took in {largest:,} bytes ahead of the rows read"


def received_ahead(raw) -> int:
    """The size of what holds the bytes a connection received and has not read yet."""
    proto = getattr(raw, "_proto", None)
    if proto is not None:  # asyncmy's own protocol: its buffer starts at 256 KiB, and grows with the unread
        return len(proto.buffer)
    return len(raw._reader._buffer)  # asyncio's stream reader (older asyncmy versions)


@pytest.mark.parametrize("backend", ["asyncmy"], indirect=True)
async def test_big_rows_are_read_whole_with_reading_paused_in_between(db, objects):
    """A packet larger than the pause bound comes through: waiting for its rest reads again."""
    cursor = await db.execute_sql_async("SELECT REPEAT('y', 3000000), 7")
    assert [(len(text), n) for text, n in cursor.fetchall()] == [(3_000_000, 7)]
    rows = [row async for row in objects.iterate(TestModel.raw("SELECT REPEAT('z', 2000000), 8").tuples())]
    assert [(len(text), n) for text, n in rows] == [(2_000_000, 8)]


@pytest.mark.parametrize("backend", ["asyncmy", "asyncmy-pool"], indirect=True)
async def test_the_server_closing_an_idle_connection_is_seen_without_a_query(db, observer):
    await db.execute_sql_async("SELECT 1")
    conn = await db.pool.acquire()
    try:
        assert not db.driver.connection_lost(conn)
        await observer.execute_sql_async(f"KILL {db.driver.session_id(conn)}")  # type: ignore[attr-defined]
        for _ in range(100):  # the server closes the socket a moment after KILL returns
            if db.driver.connection_lost(conn):
                break
            await asyncio.sleep(0.02)
        assert db.driver.connection_lost(conn)
        await asyncio.sleep(0.05)  # the loop reads the goodbye: the driver still tells
        assert db.driver.connection_lost(conn) and db.driver.is_closed(conn)
    finally:
        db.pool.release(conn)
    assert (await db.execute_sql_async("SELECT 2")).fetchone() == (2,)  # on a new connection


def test_an_asyncmy_too_old_is_refused_naming_the_version_needed(monkeypatch):
    monkeypatch.setattr(asyncmy_module, "_SUPPORTED", False)
    monkeypatch.setattr(asyncmy_module, "_asyncmy_version", lambda: (0, 2, 9))
    message = r"asyncmy 0\.2\.9 is installed; peewee-async needs asyncmy 0\.2\.18 or later: pip install"
    with pytest.raises(peewee.ImproperlyConfigured, match=message):
        peewee_async.AsyncmyDatabase.driver.require()


def test_the_asyncmy_classes_are_exported():
    assert issubclass(peewee_async.PooledAsyncmyDatabase, peewee_async.AsyncmyDatabase)
    assert peewee_async.AsyncmyDatabase.family == peewee_async.MySQLDatabase.family == "mysql"
    assert peewee_async.AsyncmyDatabase.driver.name == "asyncmy"
