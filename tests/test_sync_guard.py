"""The sync guard: ``allow_sync`` forbids, logs or allows the sync peewee API."""

from __future__ import annotations

import logging

import peewee
import pytest

import peewee_async
from peewee_async import SyncQueryError

from .models import TestModel

GUARD_LOGGER = "peewee.async"


class Boom(Exception):
    pass


class GuardedModel(peewee.Model):
    """A table that does not exist: creating it must be stopped by the guard."""

    text = peewee.CharField()


async def count_rows(objects: peewee_async.Manager) -> int:
    return await objects.count(TestModel.select())


# -- allow_sync = False ------------------------------------------------------


async def test_sync_select_raises(db, objects):
    await objects.create(TestModel, text="row")
    db.allow_sync = False
    with pytest.raises(SyncQueryError) as raised:
        list(TestModel.select())
    error = raised.value
    assert isinstance(error, AssertionError)
    assert isinstance(error, peewee.InterfaceError)
    message = str(error)
    assert "SELECT" in message and TestModel._meta.table_name in message
    assert "await" in message
    assert db.is_closed()  # the guard stopped it before a sync connection was opened


async def test_sync_insert_raises_and_writes_nothing(db, objects):
    db.allow_sync = False
    with pytest.raises(SyncQueryError, match="INSERT") as raised:
        TestModel.create(text="sync")
    assert "await" in str(raised.value)
    with pytest.raises(SyncQueryError, match="UPDATE"):
        TestModel.update(text="x").execute()
    with pytest.raises(SyncQueryError, match="DELETE"):
        TestModel.delete().execute()
    assert await count_rows(objects) == 0


async def test_sync_create_table_raises(db, objects):
    db.allow_sync = False
    with db.bind_ctx([GuardedModel]):
        with pytest.raises(SyncQueryError, match="CREATE TABLE") as raised:
            GuardedModel.create_table(safe=False)
        assert "await" in str(raised.value)
        # With safe=True, peewee may look the table up first (it does on MySQL): the
        # guard stops whichever statement comes first.
        with pytest.raises(SyncQueryError, match=r"CREATE TABLE|SELECT"):
            db.create_tables([GuardedModel])
    db.allow_sync = True
    try:
        assert GuardedModel._meta.table_name not in db.get_tables()
    finally:
        db.close()


async def test_sync_raw_sql_raises(db):
    db.allow_sync = False
    with pytest.raises(SyncQueryError, match="SELECT 42"):
        db.execute_sql("SELECT 42")


async def test_sync_atomic_fails_at_begin(db, objects):
    db.allow_sync = False
    with pytest.raises(SyncQueryError, match="BEGIN"):
        with db.atomic():
            TestModel.create(text="never")
    assert not db.in_transaction()
    assert db.transaction_depth() == 0
    assert db.is_closed()
    with pytest.raises(SyncQueryError, match="BEGIN"):
        with db.transaction():
            pass
    assert db.transaction_depth() == 0
    assert await count_rows(objects) == 0


async def test_sync_commit_and_rollback_are_guarded(db):
    # peewee sends these straight to a cursor, not through execute_sql.
    db.allow_sync = False
    with pytest.raises(SyncQueryError, match="COMMIT"):
        db.commit()
    with pytest.raises(SyncQueryError, match="ROLLBACK"):
        db.rollback()
    with pytest.raises(SyncQueryError, match="BEGIN"):
        db.begin()
    assert db.is_closed()


async def test_guard_stops_commit_of_a_sync_transaction_started_while_allowed(db, objects):
    with db.atomic() as transaction:
        TestModel.create(text="sync-uncommitted")
        db.allow_sync = False
        with pytest.raises(SyncQueryError, match="COMMIT"):
            db.commit()
        db.allow_sync = True
        transaction.rollback()
    db.close()
    assert await count_rows(objects) == 0


# -- allow_sync = a logging level --------------------------------------------


@pytest.mark.parametrize("level", [logging.WARNING, logging.ERROR, logging.INFO])
async def test_logging_level_logs_and_runs(db, objects, caplog, level):
    db.allow_sync = level
    assert db.allow_sync == level
    caplog.set_level(logging.DEBUG, logger=GUARD_LOGGER)
    try:
        TestModel.create(text="sync-logged")
        rows = [row.text for row in TestModel.select()]
    finally:
        db.close()
    assert rows == ["sync-logged"]
    guard_records = [r for r in caplog.records if r.name == GUARD_LOGGER]
    inserts = [r for r in guard_records if "INSERT" in r.getMessage()]
    selects = [r for r in guard_records if "SELECT" in r.getMessage()]
    assert len(inserts) == 1 and len(selects) == 1, [r.getMessage() for r in guard_records]
    for record in inserts + selects:
        assert record.levelno == level
        assert TestModel._meta.table_name in record.getMessage()
    assert await count_rows(objects) == 1


async def test_logging_level_logs_begin_and_commit(db, objects, caplog):
    db.allow_sync = logging.WARNING
    caplog.set_level(logging.WARNING, logger=GUARD_LOGGER)
    try:
        with db.atomic():
            TestModel.create(text="in-sync-transaction")
    finally:
        db.close()
    messages = [r.getMessage() for r in caplog.records if r.name == GUARD_LOGGER]
    assert any(m.endswith("BEGIN") for m in messages), messages
    assert any(m.endswith("COMMIT") for m in messages), messages
    assert await count_rows(objects) == 1


# -- setting the guard -------------------------------------------------------


async def test_set_allow_sync(db):
    assert db.allow_sync is True
    db.set_allow_sync(False)
    assert db.allow_sync is False
    with pytest.raises(SyncQueryError):
        db.execute_sql("SELECT 1")
    db.set_allow_sync(logging.WARNING)
    assert db.allow_sync == logging.WARNING
    db.set_allow_sync(True)
    assert db.allow_sync is True
    try:
        assert db.execute_sql("SELECT 1").fetchone()[0] == 1
    finally:
        db.close()


@pytest.mark.parametrize("value", ["yes", None, 0.5, "WARNING", [False]])
async def test_bad_allow_sync_value_raises_type_error(db, value):
    db.allow_sync = False
    with pytest.raises(TypeError, match="allow_sync"):
        db.allow_sync = value
    with pytest.raises(TypeError, match="allow_sync"):
        db.set_allow_sync(value)
    assert db.allow_sync is False  # unchanged


# -- Manager.allow_sync() ----------------------------------------------------


async def test_manager_allow_sync_allows_inside_and_restores_false(db, objects):
    db.allow_sync = False
    with objects.allow_sync():
        assert db.allow_sync is True
        TestModel.create(text="sync-inside")
        assert not db.is_closed()
    assert db.allow_sync is False
    assert db.is_closed()  # the sync connection was closed on exit
    with pytest.raises(SyncQueryError):
        list(TestModel.select())
    assert [m.text for m in await objects.execute(TestModel.select())] == ["sync-inside"]


async def test_manager_allow_sync_restores_a_level(db, objects):
    db.allow_sync = logging.ERROR
    with objects.allow_sync():
        assert db.allow_sync is True
        assert TestModel.select().count() == 0
    assert db.allow_sync == logging.ERROR
    assert db.is_closed()


async def test_manager_allow_sync_restores_when_the_block_raises(db, objects):
    db.allow_sync = False
    with pytest.raises(Boom):
        with objects.allow_sync():
            TestModel.create(text="before-error")
            raise Boom
    assert db.allow_sync is False
    assert db.is_closed()
    assert await count_rows(objects) == 1


async def test_manager_allow_sync_nested(db, objects):
    db.allow_sync = False
    with objects.allow_sync():
        with objects.allow_sync():
            TestModel.create(text="nested")
        assert db.allow_sync is True  # the outer block still allows
        assert TestModel.select().count() == 1
    assert db.allow_sync is False
    assert db.is_closed()


async def test_manager_allow_sync_when_already_allowed(db, objects):
    with objects.allow_sync():
        TestModel.create(text="a")
    assert db.allow_sync is True
    assert db.is_closed()


# -- the async API is unaffected ---------------------------------------------


async def test_async_api_works_while_sync_is_forbidden(db, objects):
    db.allow_sync = False
    obj = await objects.create(TestModel, text="async")
    assert (await objects.get(TestModel, id=obj.id)).text == "async"
    obj.data = "updated"
    assert await objects.update(obj) == 1
    assert (await objects.get(TestModel, TestModel.text == "async")).data == "updated"
    got, created = await objects.get_or_create(TestModel, text="async")
    assert (got.id, created) == (obj.id, False)
    made, created = await objects.create_or_get(TestModel, text="other")
    assert created
    async with objects.atomic():
        await objects.create(TestModel, text="in-atomic")
        async with objects.savepoint():
            await objects.create(TestModel, text="in-savepoint")
    with pytest.raises(Boom):
        async with objects.transaction():
            await objects.create(TestModel, text="rolled-back")
            raise Boom
    assert await objects.count(TestModel.select()) == 4
    assert await objects.scalar(TestModel.select(peewee.fn.COUNT(TestModel.id))) == 4
    await objects.execute(TestModel.update(data="bulk").where(TestModel.text != "async"))
    assert await objects.delete(made) == 1
    rows = await objects.execute(TestModel.select().order_by(TestModel.text))
    assert [(r.text, r.data) for r in rows] == [
        ("async", "updated"),
        ("in-atomic", "bulk"),
        ("in-savepoint", "bulk"),
    ]
    assert await peewee_async.count(TestModel.select()) == 3
    await db.execute_sql_async("SELECT 1")
    assert db.is_closed()  # no sync connection was ever opened
    assert db.allow_sync is False
