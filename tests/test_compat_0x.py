"""What applications written against the 0.6-0.12 releases do, beyond the 0.5 reference."""

from __future__ import annotations

import asyncio
from typing import Any

import peewee
import pytest

import peewee_async

from .conftest import BACKENDS, make_database, server_settings
from .models import TestModel


def _deferred_arguments(backend: str) -> tuple[type[peewee_async.AsyncDatabase], str, dict[str, Any]]:
    server, cls, extra = BACKENDS[backend]
    settings = server_settings(server)
    name = settings.pop("database")
    # register_hstore is a constructor argument of peewee's ext class, not an init() one.
    extra = {key: value for key, value in extra.items() if key != "register_hstore"}
    return cls, name, {**settings, **extra}


async def test_deferred_init_takes_the_pool_options(backend: str) -> None:
    """``Database(None)`` at import, ``init(name, max_connections=..., ...)`` at startup."""
    cls, name, arguments = _deferred_arguments(backend)
    db = cls(None)
    db.init(
        name,
        **{
            **arguments,
            "max_connections": 2,
            "min_connections": 2,
            "acquire_timeout": 3,
            "connect_timeout": 5,
            "query_timeout": 7,
            "statement_cache_size": 5,
        },
    )
    assert (
        db.max_connections,
        db.min_connections,
        db.acquire_timeout,
        db.connect_timeout,
        db.query_timeout,
        db.statement_cache_size,
    ) == (2, 2, 3, 5, 7, 5)
    assert db.statement_cache.max_size == 5
    assert "max_connections" not in db.connect_params
    try:
        await db.connect_async()
        assert db.pool is not None
        assert (db.pool.max_size, db.pool.size) == (2, 2)  # both opened at the start
        assert (await db.execute_sql_async("SELECT 1")).fetchone() == (1,)
    finally:
        await db.close_async()


async def test_init_keeps_the_options_it_is_not_given(backend: str) -> None:
    cls, name, arguments = _deferred_arguments(backend)
    db = cls(name, **{**arguments, "max_connections": 3, "query_timeout": 9})
    db.init(name, **{key: value for key, value in arguments.items() if key != "max_connections"})
    assert (db.max_connections, db.query_timeout) == (3, 9)  # not reset to their defaults
    without_max = {key: value for key, value in arguments.items() if key != "max_connections"}
    db.init(name, **{**without_max, "query_timeout": None})
    assert (db.max_connections, db.query_timeout) == (3, None)


def test_connection_timeout_is_the_0x_name_of_connect_timeout() -> None:
    db = peewee_async.PooledPostgresqlDatabase("test", connection_timeout=4)
    assert db.connect_timeout == 4 and "connection_timeout" not in db.connect_params
    db.init("test", connection_timeout=6)
    assert db.connect_timeout == 6
    with pytest.raises(TypeError, match="connect_timeout or connection_timeout"):
        peewee_async.PooledPostgresqlDatabase("test", connect_timeout=1, connection_timeout=2)


def test_init_checks_the_options_as_the_constructor_does() -> None:
    db = peewee_async.PooledMySQLDatabase(None)
    with pytest.raises(ValueError, match="max_connections must be at least 1, got 0"):
        db.init("test", max_connections=0)
    with pytest.raises(ValueError, match="min_connections must be between 0 and max_connections=2"):
        db.init("test", max_connections=2, min_connections=3)
    with pytest.raises(ValueError, match="statement_cache_size must be 0 or more"):
        db.init("test", statement_cache_size=-5)
    sqlite = peewee_async.SqliteDatabase(None)
    with pytest.raises(ValueError, match="in-memory database"):
        sqlite.init(":memory:", max_connections=2)


async def test_transaction_depth_and_connection(db: peewee_async.AsyncDatabase) -> None:
    objects = peewee_async.Manager(db)
    assert (db.transaction_depth_async(), db.transaction_conn_async()) == (0, None)
    async with objects.atomic():
        assert db.transaction_depth_async() == 1
        conn = db.transaction_conn_async()
        held = db._current_transactions()
        assert held is not None and conn is held.connection.raw and conn is not None
        async with objects.atomic():
            assert db.transaction_depth_async() == 2
            assert db.transaction_conn_async() is conn

        async def child() -> tuple[int, Any]:
            return db.transaction_depth_async(), db.transaction_conn_async()

        assert await asyncio.create_task(child()) == (0, None)  # a child task is outside it
        assert db.transaction_depth_async() == 1
    assert (db.transaction_depth_async(), db.transaction_conn_async()) == (0, None)


async def test_get_or_none(objects: peewee_async.Manager) -> None:
    made = await objects.create(TestModel, text="here")
    assert (await objects.get_or_none(TestModel, text="here")).id == made.id
    assert (await objects.get_or_none(TestModel, TestModel.id == made.id)).text == "here"
    assert (await objects.get_or_none(TestModel.select().where(TestModel.text == "here"))).id == made.id
    assert await objects.get_or_none(TestModel, text="missing") is None
    assert await objects.get_or_none(TestModel.select().where(TestModel.text == "missing")) is None
    with pytest.raises(TypeError, match="get\\(\\) takes a model class or a model select query"):
        await objects.get_or_none("not a model")


@pytest.mark.parametrize("proxy_class", [peewee.Proxy, peewee.DatabaseProxy])
async def test_a_manager_over_a_proxy_initialised_later(
    backend: str, proxy_class: type[peewee.Proxy]
) -> None:
    """``Manager(proxy)`` at import and ``proxy.initialize(db)`` at startup, models bound to the proxy."""
    proxy = proxy_class()
    objects = peewee_async.Manager(proxy)

    class ProxiedNote(peewee.Model):
        text = peewee.CharField()

        class Meta:
            database = proxy
            table_name = "compat_proxied_note"

    with pytest.raises(peewee.InterfaceError, match="proxy that was not initialised"):
        await objects.get(ProxiedNote, id=1)
    db = make_database(backend)
    proxy.initialize(db)
    ProxiedNote.create_table()
    db.close()
    try:
        note = await objects.create(ProxiedNote, text="a")
        assert (await objects.get(ProxiedNote, id=note.id)).text == "a"
        async with objects.atomic():
            await objects.create(ProxiedNote, text="b")
        assert await objects.count(ProxiedNote.select()) == 2
        assert [
            n.text for n in await peewee_async.execute(ProxiedNote.select().order_by(ProxiedNote.text))
        ] == [
            "a",
            "b",
        ]
        async with objects.iterate(ProxiedNote.select()) as rows:
            assert len([row async for row in rows]) == 2
    finally:
        await objects.close()
        ProxiedNote.drop_table()
        db.close()


def test_a_manager_over_a_proxy_of_a_sync_database() -> None:
    proxy = peewee.Proxy()
    proxy.initialize(peewee.SqliteDatabase(":memory:"))
    with pytest.raises(peewee.ImproperlyConfigured, match="sync peewee database"):
        peewee_async.Manager(proxy)
    later = peewee.Proxy()
    objects = peewee_async.Manager(later)
    later.initialize(peewee.SqliteDatabase(":memory:"))
    with pytest.raises(peewee.ImproperlyConfigured, match="sync peewee database"):
        objects.atomic()


class Boom(Exception):
    """A block's own error."""


async def test_close_inside_a_transaction_cuts_it_off(db: peewee_async.AsyncDatabase) -> None:
    objects = peewee_async.Manager(db)
    with pytest.raises(peewee_async.ConnectionLost, match="rolled the transaction back"):
        async with objects.atomic():
            await objects.create(TestModel, text="cut")
            await objects.close()
            await objects.create(TestModel, text="after")
    assert await objects.count(TestModel.select()) == 0  # reopened; nothing was committed
    await objects.close()
    await objects.connect()
    assert (await db.execute_sql_async("SELECT 1")).fetchone() == (1,)


async def test_a_block_raising_its_own_error_keeps_it_after_close(db: peewee_async.AsyncDatabase) -> None:
    objects = peewee_async.Manager(db)
    with pytest.raises(Boom):
        async with objects.atomic():
            async with objects.atomic():  # a savepoint, cut off with its transaction
                await objects.create(TestModel, text="cut")
                await objects.close()
                raise Boom
    assert await objects.count(TestModel.select()) == 0


async def test_close_from_another_task_cuts_its_transaction_off(db: peewee_async.AsyncDatabase) -> None:
    objects = peewee_async.Manager(db)
    inside, go_on = asyncio.Event(), asyncio.Event()

    async def work() -> None:
        async with objects.atomic():
            await objects.create(TestModel, text="cut")
            inside.set()
            await go_on.wait()

    task = asyncio.create_task(work())
    await inside.wait()
    await asyncio.wait_for(objects.close(), 10)  # does not wait for the block to end
    go_on.set()
    with pytest.raises(peewee_async.ConnectionLost):
        await task  # its COMMIT
    assert await objects.count(TestModel.select()) == 0
    assert db._open_transactions == 0


async def test_an_option_unknown_to_the_class_and_its_driver_is_named(backend: str) -> None:
    db = make_database(backend, max_conections=4)
    try:
        with pytest.raises(TypeError) as raised:
            await db.connect_async()
        message = str(raised.value)
        assert "max_conections" in message  # the driver's own words name it
        assert "did you mean 'max_connections'?" in message
        assert f"The options of {type(db).__name__} itself are max_connections, min_connections" in message
        assert db.pool is None
    finally:
        await db.close_async()
