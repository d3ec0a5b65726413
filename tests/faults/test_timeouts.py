"""``query_timeout``: a statement that runs too long is stopped on the server and raises QueryTimeout."""

from __future__ import annotations

import pathlib
import uuid
from collections.abc import AsyncIterator

import peewee
import pytest

import peewee_async
from peewee_async import QueryTimeout

from ..conftest import make_database
from ..models import TestModel
from .server_checks import assert_recovered, running_sessions, session_id_sql, sleep_sql

TIMEOUT_BACKENDS = [
    "postgres", "postgres-pool", "psycopg", "psycopg-pool", "mysql", "mysql-pool", "asyncmy", "asyncmy-pool",
]  # fmt: skip
on_servers = pytest.mark.parametrize("backend", TIMEOUT_BACKENDS, indirect=True)

# Runs for minutes unless interrupted.
SLOW_SQLITE = (
    "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r WHERE n < 10000000000) "
    "SELECT count(*) FROM r"
)


@pytest.fixture
async def timed(backend: str, db: peewee_async.AsyncDatabase) -> AsyncIterator[peewee_async.AsyncDatabase]:
    """``db`` (models bound, tables empty, leak-checked) with a query_timeout of 0.5 s."""
    db.query_timeout = 0.5
    yield db


@on_servers
async def test_slow_statement_is_stopped_on_the_server(timed, backend, observer):
    tag = f"timeout-{uuid.uuid4().hex}"
    with pytest.raises(QueryTimeout) as raised:
        await timed.execute_sql_async(sleep_sql(backend, 5, tag))
    message = str(raised.value)
    assert "query_timeout=0.5s" in message and "stopped on the server" in message
    assert timed.describe() in message and tag in message
    assert isinstance(raised.value, peewee.OperationalError)
    # Right after the error, not a moment later: the server runs it no more.
    assert await running_sessions(observer, backend, tag) == []
    counts = await assert_recovered(timed, backend, observer, [])
    # The connection was kept: its statement ended with an error, not half-read.
    assert counts["size"] == 1


@on_servers
async def test_timeout_inside_a_transaction_rolls_it_back(timed, objects, backend, observer):
    await objects.create(TestModel, text="before")
    tag = f"timeout-{uuid.uuid4().hex}"
    with pytest.raises(QueryTimeout):
        async with objects.atomic():
            await objects.create(TestModel, text="rolled-back")
            await timed.execute_sql_async(sleep_sql(backend, 5, tag))
    assert await running_sessions(observer, backend, tag) == []
    await assert_recovered(timed, backend, observer, ["before"])


@on_servers
async def test_statements_within_the_timeout_run(timed, objects, backend, observer):
    """A statement that ends in time is not touched, nor is the connection's next one."""
    sid = (await timed.execute_sql_async(session_id_sql(backend))).fetchone()[0]
    for seconds in (0.3, 0.3):
        row = (await timed.execute_sql_async(sleep_sql(backend, seconds, "in-time"))).fetchone()
        assert row[1] == "in-time"
    assert (await timed.execute_sql_async(session_id_sql(backend))).fetchone()[0] == sid
    await assert_recovered(timed, backend, observer, [])


@on_servers
async def test_per_call_override(db, backend, observer):
    assert db.query_timeout is None
    tag = f"override-{uuid.uuid4().hex}"
    with pytest.raises(QueryTimeout, match=r"query_timeout=0.3s"):
        await db.execute_sql_async(sleep_sql(backend, 5, tag), query_timeout=0.3)
    assert await running_sessions(observer, backend, tag) == []
    await assert_recovered(db, backend, observer, [])


@pytest.mark.parametrize("backend", ["postgres-pool"], indirect=True)
def test_query_timeout_is_a_constructor_argument(backend):
    assert make_database(backend, query_timeout=2.5).query_timeout == 2.5
    assert make_database(backend).query_timeout is None


async def test_sqlite_slow_statement_is_interrupted(tmp_path: pathlib.Path):
    database = peewee_async.SqliteDatabase(tmp_path / "x.db", query_timeout=0.5)
    objects = peewee_async.Manager(database)
    with database.bind_ctx([TestModel]):
        database.create_tables([TestModel])
        database.close()
        try:
            await objects.create(TestModel, text="before")
            with pytest.raises(QueryTimeout, match="stopped on the server") as raised:
                async with objects.atomic():
                    await objects.create(TestModel, text="rolled-back")
                    await database.execute_sql_async(SLOW_SQLITE)
            assert "interrupted" in str(raised.value.__cause__)
            # The one connection is free at once: the statement no longer runs in its thread.
            assert [m.text for m in await objects.execute(TestModel.select())] == ["before"]
            assert database.pool.used == 0 and database.pool.size == 1
        finally:
            await database.close_async()
