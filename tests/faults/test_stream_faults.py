"""Streaming (``objects.iterate``) under faults: cancellation at every step, killed sessions, a cut network.

After each fault: every connection is back in the pool, no session of ours is
left inside a transaction, and the next query works. A broken stream raises a
peewee error that says what happened; it never hangs.
"""

from __future__ import annotations

import asyncio

import peewee
import pytest

import peewee_async

from ..conftest import BACKENDS
from ..models import TestModel
from .cancelling import Outcome, assert_no_leaks, cancel_at_every_step
from .proxy import PROXIED_BACKENDS
from .server_checks import assert_recovered, is_postgres, kill_sessions, session_of

ROWS = [f"t{i}" for i in range(5)]
# Two rows a fetch: the five rows take three fetches and an empty one.
CHUNK = 2


async def texts(objects: peewee_async.Manager) -> list[str]:
    return [row.text for row in await objects.execute(TestModel.select().order_by(TestModel.text))]


def stream_all(objects: peewee_async.Manager) -> peewee_async.RowStream:
    return objects.iterate(TestModel.select().order_by(TestModel.text), chunk_size=CHUNK)


@pytest.mark.parametrize("in_transaction", [False, True], ids=["autocommit", "atomic"])
async def test_iterate_cancelled_at_every_step(db, objects, in_transaction):
    await objects.execute(TestModel.insert_many([{"text": text} for text in ROWS]))

    async def consume() -> list[str]:
        if not in_transaction:
            return [row.text async for row in stream_all(objects)]
        async with objects.atomic():
            seen = [row.text async for row in stream_all(objects)]
            # The transaction's connection takes statements again once the rows ran out.
            await objects.create(TestModel, text="after")
        return seen

    async def before() -> None:
        await objects.execute(TestModel.delete().where(TestModel.text == "after"))

    async def after(outcome: Outcome) -> None:
        if outcome.finished:
            assert outcome.result == ROWS
        stored = await texts(objects)
        if in_transaction and (outcome.finished or stored != ROWS):
            # A COMMIT under way when the cancel came is seen through: all or nothing.
            assert stored == sorted([*ROWS, "after"])
        else:
            assert stored == ROWS

    outcomes = await cancel_at_every_step(db, consume, after, before)
    # Cancels landed before, during and after the fetches, not only at the start.
    assert sum(o.cancelled for o in outcomes) >= 4, outcomes


def slow_rows(backend: str, rows: int, delay: float) -> peewee.RawQuery:
    """A select whose rows take ``delay`` seconds each for the server to make."""
    server = BACKENDS[backend][0]
    if server == "postgres":
        sql = f"SELECT n, pg_sleep({delay}) FROM generate_series(1, {rows}) AS n"
    elif server == "mysql":
        sql = f"SELECT seq, SLEEP({delay}) FROM seq_1_to_{rows}"
    else:
        sql = (
            f"WITH RECURSIVE c(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM c WHERE n < {rows}) "
            f"SELECT n, SLEEP({delay}) FROM c"
        )
    return TestModel.raw(sql).tuples()


async def test_query_timeout_stops_a_slow_fetch(db, objects, backend):
    """A fetch longer than query_timeout is stopped on the server, like a statement."""
    db.query_timeout = 0.3
    with pytest.raises(peewee_async.QueryTimeout, match="was stopped on the server"):
        async with asyncio.timeout(10):
            async for _ in objects.iterate(slow_rows(backend, 5, 0.5), chunk_size=1):
                pass
    db.query_timeout = None
    await assert_no_leaks(db)


# -- the stream's own session killed on the server ---------------------------

KILL_BACKENDS = [
    "postgres", "postgres-pool", "psycopg", "psycopg-pool", "mysql", "mysql-pool", "asyncmy", "asyncmy-pool",
]  # fmt: skip


def long_query(backend: str) -> peewee.RawQuery:
    """More rows than the socket buffers hold, made by the server itself."""
    if is_postgres(backend):
        sql = "SELECT n FROM generate_series(1, 2000000) AS n"
    else:
        sql = "SELECT seq FROM seq_1_to_2000000"
    return TestModel.raw(sql).tuples()


def stream_connection(db: peewee_async.AsyncDatabase) -> object:
    pool = db.pool
    assert pool is not None
    (conn,) = pool.streams
    return conn


@pytest.mark.direct_server
@pytest.mark.parametrize("backend", KILL_BACKENDS, indirect=True)
@pytest.mark.parametrize("in_transaction", [False, True], ids=["autocommit", "atomic"])
async def test_stream_session_killed(db, objects, backend, observer, in_transaction):
    await objects.create(TestModel, text="before")

    async def iterate_and_kill() -> None:
        seen = 0
        async for _ in objects.iterate(long_query(backend), chunk_size=100):
            seen += 1
            if seen == 150:
                kill_sessions(backend, [session_of(backend, stream_connection(db))])
        raise AssertionError(f"the stream ended normally after {seen} rows")

    with pytest.raises(peewee.OperationalError) as raised:
        async with asyncio.timeout(20):
            if in_transaction:
                async with objects.atomic():
                    await objects.create(TestModel, text="lost")
                    await iterate_and_kill()
            else:
                await iterate_and_kill()
    assert_clear(raised.value)
    if in_transaction:
        assert not db.in_transaction_async()
    await assert_recovered(db, backend, observer, ["before"], grow_to=3 if backend.endswith("-pool") else 1)


def assert_clear(error: BaseException) -> None:
    """A broken stream's error names what broke and what to do."""
    message = str(error)
    assert isinstance(error, peewee_async.ConnectionLost), f"{type(error).__name__}: {message}"
    assert "was lost" in message, message


# -- the network cut by the proxy mid-stream ---------------------------------


@pytest.mark.parametrize("backend", PROXIED_BACKENDS, indirect=True)
@pytest.mark.parametrize("in_transaction", [False, True], ids=["autocommit", "atomic"])
async def test_network_cut_mid_stream(faulty, backend, proxy, observer, in_transaction):
    objects = peewee_async.Manager(faulty)
    await objects.create(TestModel, text="before")

    async def iterate_and_cut() -> None:
        seen = 0
        async for _ in objects.iterate(long_query(backend), chunk_size=100):
            seen += 1
            if seen == 150:
                proxy.cut()
        raise AssertionError(f"the stream ended normally after {seen} rows")

    with pytest.raises(peewee.OperationalError) as raised:
        async with asyncio.timeout(20):
            if in_transaction:
                async with objects.atomic():
                    await objects.create(TestModel, text="lost")
                    await iterate_and_cut()
            else:
                await iterate_and_cut()
    assert_clear(raised.value)
    await assert_recovered(faulty, backend, observer, ["before"], grow_to=3)


@pytest.mark.parametrize("backend", PROXIED_BACKENDS, indirect=True)
async def test_network_stalls_mid_stream(faulty, backend, proxy, observer):
    objects = peewee_async.Manager(faulty)

    async def iterate_and_stall() -> None:
        seen = 0
        async for _ in objects.iterate(long_query(backend), chunk_size=100):
            seen += 1
            if seen == 150:
                proxy.stall()
        raise AssertionError(f"the stream ended normally after {seen} rows")

    with pytest.raises(peewee_async.QueryTimeout, match="did not answer"):
        async with asyncio.timeout(10):
            await iterate_and_stall()
    proxy.restore()
    await assert_recovered(faulty, backend, observer, [], grow_to=3)
