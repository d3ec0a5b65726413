"""The three seams: the driver contract and the registry, the one place that picks a connection,
the one place that compiles (and its statement cache)."""

from __future__ import annotations

import inspect
import pathlib
import tomllib

import peewee
import psycopg2
import psycopg2.errors
import pymysql
import pytest

import peewee_async
import peewee_asyncext
from peewee_async import db_url
from peewee_async.databases import registry
from peewee_async.databases.driver import ErrorMap, dbapi_errors
from peewee_async.intent import Intent
from peewee_async.testing import rollback

from .models import TestModel


def test_every_public_database_class_is_one_row_of_the_table() -> None:
    exported = {
        cls
        for module in (peewee_async, peewee_asyncext)
        for cls in (getattr(module, name) for name in module.__all__)
        if inspect.isclass(cls)
        and issubclass(cls, peewee_async.AsyncDatabase)
        and cls is not peewee_async.AsyncDatabase
    }
    rows = {entry.database_class: entry for entry in registry.TABLE}
    assert exported == set(rows)
    pyproject = pathlib.Path(__file__).parent.parent / "pyproject.toml"
    extras = tomllib.loads(pyproject.read_text())["project"]["optional-dependencies"]
    for cls, entry in rows.items():
        assert entry.family in ("postgresql", "mysql", "sqlite")
        assert issubclass(cls, peewee.Database)
        assert entry.driver == cls.driver.name
        assert entry.extra in extras, f"{cls.__name__}: no pip extra {entry.extra!r} in pyproject.toml"


def test_the_url_schemes_come_from_the_table() -> None:
    assert db_url.schemes == {
        "sqlite": peewee_async.SqliteDatabase,
        "postgres": peewee_async.PostgresqlDatabase,
        "postgresql": peewee_async.PostgresqlDatabase,
        "postgres+pool": peewee_async.PooledPostgresqlDatabase,
        "postgresql+pool": peewee_async.PooledPostgresqlDatabase,
        "postgres+asyncpg": peewee_async.AsyncpgDatabase,
        "postgresql+asyncpg": peewee_async.AsyncpgDatabase,
        "postgres+asyncpg+pool": peewee_async.PooledAsyncpgDatabase,
        "postgresql+asyncpg+pool": peewee_async.PooledAsyncpgDatabase,
        "postgres+psycopg": peewee_async.PsycopgDatabase,
        "postgresql+psycopg": peewee_async.PsycopgDatabase,
        "postgres+psycopg+pool": peewee_async.PooledPsycopgDatabase,
        "postgresql+psycopg+pool": peewee_async.PooledPsycopgDatabase,
        "mysql": peewee_async.MySQLDatabase,
        "mysql+pool": peewee_async.PooledMySQLDatabase,
        "mysql+asyncmy": peewee_async.AsyncmyDatabase,
        "mysql+asyncmy+pool": peewee_async.PooledAsyncmyDatabase,
    }
    assert registry.schemes()["postgresqlext+pool"] is peewee_asyncext.PooledPostgresqlExtDatabase
    assert registry.schemes()["postgresext+asyncpg+pool"] is peewee_asyncext.PooledAsyncpgExtDatabase
    assert registry.schemes()["postgresqlext+psycopg"] is peewee_asyncext.PsycopgExtDatabase
    with pytest.raises(ValueError, match="already name another database class"):
        registry.registered("mysql")(peewee_async.MySQLDatabase)


def test_driver_errors_are_translated_by_class_along_the_mro() -> None:
    errors = ErrorMap(dbapi_errors(psycopg2))
    unique = psycopg2.errors.UniqueViolation("duplicate key value violates unique constraint")
    translated = errors.translate(unique)
    assert type(translated) is peewee.IntegrityError
    assert translated.orig is unique  # type: ignore[union-attr]
    assert str(translated) == str(unique)
    assert type(ErrorMap(dbapi_errors(pymysql)).translate(pymysql.err.OperationalError(2013, "x"))) is (
        peewee.OperationalError
    )

    class IntegrityError(Exception):
        """Not a driver's: a name alone does not make it one."""

    assert errors.translate(IntegrityError("x")) is None
    assert errors.translate(ValueError("x")) is None


async def test_our_state_never_lands_on_the_drivers_connection(db, objects) -> None:
    """Some drivers' connections take no new attributes: what we keep is on the holder."""
    await objects.create(TestModel, text="a")
    async with objects.atomic():
        await objects.get(TestModel, text="a")
    async with objects.iterate(TestModel.select()) as rows:
        assert [row.text async for row in rows] == ["a"]
    pool = db.pool
    assert pool is not None
    for conn in pool.connections():
        assert not [name for name in getattr(conn.raw, "__dict__", {}) if "peewee" in name]


async def test_one_place_picks_the_connection_for_every_intent(db, objects) -> None:
    """Outside a transaction each intent borrows from the pool; inside, the transaction's connection."""
    for intent in Intent:
        assert await db._connection(intent) == (db.pool, None)  # None: borrow one for the statement
        source, conn, borrowed = await db._hold(intent)
        assert borrowed and source is db.pool
        source.release(conn)
    async with objects.atomic():
        held = db._current_transactions()
        for intent in Intent:
            assert await db._connection(intent) == (held.pool, held.connection)
            assert await db._hold(intent) == (held.pool, held.connection, False)


async def test_iterate_inside_rollback(db, objects) -> None:
    """The test helper's shared transaction is a connection source like the pool: loops run on it."""
    async with rollback(db):
        await objects.create(TestModel, text="inside")
        async with objects.iterate(TestModel.select()) as rows:
            assert [row.text async for row in rows] == ["inside"]
        assert await objects.count(TestModel.select()) == 1
    assert await objects.count(TestModel.select()) == 0


def test_statement_cache_size_is_checked_and_zero_keeps_none() -> None:
    with pytest.raises(ValueError, match="statement_cache_size must be 0 or more, got -1"):
        peewee_async.SqliteDatabase(":memory:", statement_cache_size=-1)
    database = peewee_async.SqliteDatabase(":memory:", statement_cache_size=0)
    database.statement_cache.put(("key",), "statement")
    assert len(database.statement_cache) == 0


async def test_shortcuts_work_with_no_statement_cache(db, objects) -> None:
    db.statement_cache.max_size = 0
    made = await objects.create(TestModel, text="a")
    assert (await objects.get(TestModel, id=made.id)).text == "a"
    assert await objects.count(TestModel.select()) == 1
    assert len(db.statement_cache) == 0
