"""Read replicas: which statements run on a replica, which on the primary, and a replica that is down.

The routing tests run every class but SQLite against the primary and replica
of ``scripts/servers.py`` with the replica's replay paused: a row committed
on the primary then is not on the replica, so each read shows where it ran.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import AsyncIterator
from typing import Any

import peewee
import pytest

import peewee_async
from peewee_async import AsyncDatabase, Manager

from . import replication, servers
from .conftest import BACKENDS, SCRIPT_SERVERS, _require_server, make_database
from .models import ALL_MODELS, TestModel

pytestmark = SCRIPT_SERVERS


@pytest.fixture(params=replication.REPLICATED)
async def cluster(request: pytest.FixtureRequest) -> AsyncIterator[tuple[str, AsyncDatabase, AsyncDatabase]]:
    """``(backend, primary, replica)`` on the script's servers, ALL_MODELS bound to the primary and empty."""
    backend: str = request.param
    primary, replica = replication.cluster(backend)
    with primary.bind_ctx(ALL_MODELS):
        replication.reset(primary, backend)
        replication.caught_up(backend)
        try:
            yield backend, primary, replica
            for database in (primary, replica):
                if database.pool is not None:
                    await database.pool.settle()
                    assert database.pool.used == 0, f"a connection of {database!r} was not given back"
        finally:
            replication.resume_replay(backend)
            await primary.close_async()
            replication.reset(primary, backend)


def _where(db: AsyncDatabase, backend: str) -> Any:
    """A query answering the port of the server that runs it."""
    return peewee.Select(columns=[peewee.SQL(replication.port_sql(backend))]).bind(db)


def _texts(rows: Any) -> list[str]:
    return sorted(row.text for row in rows)


async def test_reads_run_on_the_replica_and_the_rest_on_the_primary(
    cluster: tuple[str, AsyncDatabase, AsyncDatabase],
) -> None:
    backend, db, replica = cluster
    objects = Manager(db)
    primary_port = servers.script_server(replication.names(backend)[0])["port"]
    replica_port = servers.script_server(replication.names(backend)[1])["port"]
    await objects.create(TestModel, text="old", data="1")
    replication.caught_up(backend)
    replication.pause_replay(backend)
    # Committed on the primary only, while the replica lags.
    await objects.create(TestModel, text="new", data="2")
    where = _where(db, backend)

    # Every kind of read outside a transaction: on the replica, which lacks "new".
    assert await objects.scalar(where) == replica_port
    assert _texts(await objects.execute(TestModel.select())) == ["old"]
    assert await objects.count(TestModel.select()) == 1
    with pytest.raises(TestModel.DoesNotExist):
        await objects.get(TestModel, text="new")
    assert await objects.get_or_none(TestModel, TestModel.text == "new") is None
    async with objects.iterate(TestModel.select()) as rows:
        assert [row.text async for row in rows] == ["old"]
    assert _texts(await objects.prefetch(TestModel.select())) == ["old"]
    assert _texts(await objects.execute(TestModel.raw("SELECT * FROM testmodel"))) == ["old"]
    assert await peewee_async.count(TestModel.select()) == 1
    assert _texts(await peewee_async.execute(TestModel.select())) == ["old"]
    by_text = objects.prepare(lambda text: TestModel.select().where(TestModel.text == text))
    locked = objects.prepare(lambda text: TestModel.select().where(TestModel.text == text).for_update())
    for _ in range(2):  # read, then bound into the plan
        assert await by_text.count("new") == 0
        assert await by_text.get_or_none("new") is None
        assert _texts(await by_text.execute("old")) == ["old"]

    # Inside a transaction: the primary, which reads its own writes.
    async with objects.atomic():
        assert await objects.scalar(where) == primary_port
        assert (await objects.get(TestModel, text="new")).data == "2"
        assert await objects.count(TestModel.select()) == 2
        assert await by_text.count("new") == 1

    # Pinned to the primary: this task and the tasks it starts meanwhile.
    async with objects.primary():
        assert await objects.scalar(where) == primary_port
        assert await objects.count(TestModel.select()) == 2
        assert await asyncio.create_task(objects.count(TestModel.select())) == 2
        async with objects.iterate(TestModel.select()) as rows:
            assert sorted([row.text async for row in rows]) == ["new", "old"]
    with db.reads_on_primary():
        assert await objects.count(TestModel.select()) == 2
    assert await objects.count(TestModel.select()) == 1  # the block is over

    # What a replica cannot run goes to the primary: locking selects, raw writes.
    assert _texts(await objects.execute(TestModel.select().where(TestModel.text == "new").for_update())) == [
        "new"
    ]
    for _ in range(2):
        assert _texts(await locked.execute("new")) == ["new"]
    async with objects.primary():
        assert await by_text.count("new") == 1
    raw_write = TestModel.raw("UPDATE testmodel SET data = %s WHERE text = %s", "3", "new")
    await objects.execute(raw_write)
    async with objects.primary():
        assert (await objects.get(TestModel, text="new")).data == "3"

    # get_or_create misses the row on the replica, fails to insert it on the
    # primary, and then finds it there: never a wrong "created".
    instance, created = await objects.get_or_create(TestModel, text="new", defaults={"data": "x"})
    assert (instance.data, created) == ("3", False)
    instance, created = await objects.create_or_get(TestModel, text="new", data="y")
    assert (instance.data, created) == ("3", False)

    replication.resume_replay(backend)
    replication.caught_up(backend)
    assert await objects.count(TestModel.select()) == 2
    assert replica.pool is not None and db.pool is not None


async def test_reads_take_the_replicas_in_turn(cluster: tuple[str, AsyncDatabase, AsyncDatabase]) -> None:
    backend, _, _ = cluster
    first = replication.cluster(backend)[1]
    second = replication.cluster(backend)[1]
    primary = replication.cluster(backend)[0]
    primary.init(primary.database, replicas=[first, second])
    assert primary.replicas == (first, second)
    objects = Manager(primary)
    with primary.bind_ctx(ALL_MODELS):
        try:
            for _ in range(4):
                await objects.count(TestModel.select())
            for replica in (first, second):
                assert replica.pool is not None, "a replica took no read"
            assert primary.pool is None  # reads alone never open the primary's pool
        finally:
            await primary.close_async()
    assert first.pool is None and second.pool is None  # closed with the primary


async def test_a_replica_bounds_its_reads_with_its_own_query_timeout(
    cluster: tuple[str, AsyncDatabase, AsyncDatabase],
) -> None:
    """The server that runs a read bounds it: the replica's query_timeout, for reads as for streams."""
    backend, db, replica = cluster
    replica.query_timeout = 0.3
    objects = Manager(db)
    sleep = "pg_sleep" if BACKENDS[backend][0] == "postgres" else "SLEEP"

    def sleeping(seconds: float) -> Any:
        return peewee.Select(columns=[peewee.SQL(f"{sleep}({seconds})")]).bind(db)

    on_replica = re.escape(f"query_timeout=0.3s on {replica.describe()}")
    with pytest.raises(peewee_async.QueryTimeout, match=on_replica):
        await objects.scalar(sleeping(2))
    with pytest.raises(peewee_async.QueryTimeout, match=on_replica):
        async with objects.iterate(sleeping(2)) as rows:
            async for _ in rows:
                pass
    async with objects.primary():  # the primary has no query_timeout
        await objects.scalar(sleeping(0.5))


# -- a replica that cannot be reached ------------------------------------------


@pytest.fixture(params=replication.REPLICATED)
def replicated_backend(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    _require_server(BACKENDS[name][0])
    return name


async def test_a_replica_that_is_down_is_skipped_and_tried_again_later(
    replicated_backend: str, caplog: pytest.LogCaptureFixture
) -> None:
    backend = replicated_backend
    # Nothing listens on port 1: each connection is refused at once.
    gone = make_database(backend, port=1, connect_timeout=2)
    db = make_database(backend, replicas=[gone], replica_retry_after=0.3)
    objects = Manager(db)
    async with objects.primary():
        port = await objects.scalar(_where(db, backend))  # the server's own, behind any pooler

    def logged(text: str) -> list[logging.LogRecord]:
        return [record for record in caplog.records if text in record.getMessage()]

    try:
        with caplog.at_level(logging.DEBUG, logger="peewee.async"):
            for _ in range(3):
                assert await objects.scalar(_where(db, backend)) == port
            (warning,) = logged("Reads skip the replica")
            assert warning.levelno == logging.WARNING
            assert ":1)" in warning.getMessage()  # names the replica
            assert not logged("still unreachable")  # not tried again within replica_retry_after
            await asyncio.sleep(0.35)
            assert await objects.scalar(_where(db, backend)) == port
            assert len(logged("still unreachable")) == 1
            assert len(logged("Reads skip the replica")) == 1
        assert gone.pool is None
        assert db.pool is not None and db.pool.used == 0
    finally:
        await db.close_async()


# -- settings ------------------------------------------------------------------


def test_replicas_are_checked_when_given() -> None:
    pg = peewee_async.PooledPostgresqlDatabase
    replica = pg("app", host="replica")
    with pytest.raises(TypeError, match="SQLite has no replication"):
        peewee_async.SqliteDatabase(":memory:", replicas=[peewee_async.SqliteDatabase(":memory:")])
    with pytest.raises(TypeError, match=r"write replicas=\[replica\]"):
        pg("app", replicas=replica)
    with pytest.raises(TypeError, match="must be a peewee_async database object"):
        pg("app", replicas=["postgresql://replica/app"])
    with pytest.raises(TypeError, match="must run on aiopg too"):
        pg("app", replicas=[peewee_async.PooledAsyncpgDatabase("app", host="replica")])
    with pytest.raises(TypeError, match="must run on aiopg too"):
        pg("app", replicas=[peewee_async.PooledMySQLDatabase("app", host="replica")])
    with pytest.raises(TypeError, match="replicas of its own"):
        pg("app", replicas=[pg("app", replicas=[replica])])
    with pytest.raises(ValueError, match="replica_retry_after"):
        pg("app", replicas=[replica], replica_retry_after=-1)
    db = pg("app", replicas=[replica])
    with pytest.raises(TypeError, match="cannot be a replica of itself"):
        db.init("app", replicas=[db])
    assert db.replicas == (replica,)
    db.init("other", host="primary")  # keeps its replicas
    assert db.replicas == (replica,)
    db.init("other", replicas=[])
    assert db.replicas == ()
    assert pg("app").replicas == ()
