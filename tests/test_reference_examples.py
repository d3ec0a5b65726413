"""The code examples of the 0.5 API reference, run as tests.

Each example is kept as written, changed only in

* connection settings: models use the fixture's database (``database = db`` in
  their Meta) and get a table name of their own, created fresh by
  ``bind_models`` (tests/models.py already owns a ``testmodel`` table);
* asyncio idioms that no longer exist or cannot run inside a test: no
  ``get_event_loop()``/``run_until_complete()`` (we just await), ``async def``
  instead of ``@asyncio.coroutine``/``yield from``, ``asyncio.current_task()``
  instead of ``asyncio.Task.current_task()``.

Printed output is captured and compared with the output the reference promises.
"""

import asyncio
import logging
from typing import Any

import peewee
import pytest

import peewee_async
from peewee_async import Manager, create_object, get_object, update_object

from .conftest import BACKENDS, server_settings

# -- Quickstart -------------------------------------------------------------------


async def test_quickstart(db, bind_models, capsys):
    database = db

    class TestModel(peewee.Model):
        text = peewee.CharField()

        class Meta:
            database = db
            table_name = "ref_quickstart"

    bind_models(TestModel)

    # Look, sync code is working!
    TestModel.create_table(True)
    TestModel.create(text="Yo, I can do it sync!")
    database.close()

    # Create async models manager:
    objects = peewee_async.Manager(database)

    # No need for sync anymore!
    database.set_allow_sync(False)

    async def handler():
        await objects.create(TestModel, text="Not bad. Watch this, I'm async!")
        all_objects = await objects.execute(TestModel.select())
        for obj in all_objects:
            print(obj.text)

    await handler()

    with pytest.raises(AssertionError):  # sync really is off now
        TestModel.select().count()

    # Clean up, can do it sync again:
    with objects.allow_sync():
        TestModel.drop_table(True)

    assert capsys.readouterr().out == "Yo, I can do it sync!\nNot bad. Watch this, I'm async!\n"
    with objects.allow_sync():
        assert not TestModel.table_exists()


# -- High-level API: the Manager section ---------------------------------------------


def page_block_model(db):
    class PageBlock(peewee.Model):
        key = peewee.CharField(max_length=40, unique=True)
        text = peewee.TextField(default="")

        class Meta:
            database = db
            table_name = "ref_pageblock"

    return PageBlock


async def test_manager_page_block_example(db, bind_models, capsys):
    loop = asyncio.get_running_loop()  # the reference makes a custom loop; a test runs on its own
    database = db
    objects = Manager(database, loop=loop)

    PageBlock = page_block_model(db)
    bind_models(PageBlock)
    PageBlock.create_table(True)

    objects.database.allow_sync = False  # this will raise AssertionError on ANY sync call

    async def my_async_func():
        # Add new page block
        await objects.create_or_get(PageBlock, key="title", text="Peewee is AWESOME with async!")

        # Get one by key
        title = await objects.get(PageBlock, key="title")
        print("Was:", title.text)

        # Save with new text
        title.text = "Peewee is SUPER awesome with async!"
        await objects.update(title)
        print("New:", title.text)

    await my_async_func()

    assert capsys.readouterr().out == (
        "Was: Peewee is AWESOME with async!\nNew: Peewee is SUPER awesome with async!\n"
    )
    with pytest.raises(AssertionError):
        PageBlock.select().count()
    rows = await objects.execute(PageBlock.select(PageBlock.key, PageBlock.text).tuples())
    assert rows == [("title", "Peewee is SUPER awesome with async!")]

    # Running it again finds the block by its key instead of creating it.
    await my_async_func()
    assert capsys.readouterr().out == (
        "Was: Peewee is SUPER awesome with async!\nNew: Peewee is SUPER awesome with async!\n"
    )
    assert await objects.count(PageBlock.select()) == 1


async def test_manager_allow_sync_logging_level(db, bind_models, caplog):
    objects = Manager(db)
    PageBlock = page_block_model(db)
    bind_models(PageBlock)
    await objects.create(PageBlock, key="k")

    objects.database.allow_sync = logging.ERROR

    with caplog.at_level(logging.DEBUG, logger="peewee.async"):
        assert PageBlock.select().count() == 1  # sync still runs, and is logged
    db.close()
    records = [r for r in caplog.records if r.name == "peewee.async"]
    assert records
    assert all(r.levelno == logging.ERROR for r in records)
    assert "Synchronous query" in records[0].getMessage()


async def test_manager_allow_sync_context_example(db, bind_models):
    objects = Manager(db)
    PageBlock = page_block_model(db)
    bind_models(PageBlock)
    with objects.allow_sync():
        PageBlock.drop_table(True)
    db.allow_sync = False

    with objects.allow_sync():
        PageBlock.create_table(True)

    assert db.allow_sync is False
    assert db.is_closed()
    await objects.create(PageBlock, key="after")
    assert await objects.scalar(PageBlock.select(PageBlock.key)) == "after"


async def test_manager_user_example(db, bind_models, capsys):
    class User(peewee.Model):
        username = peewee.CharField(max_length=40, unique=True)

        class Meta:
            database = db
            table_name = "ref_user"

    bind_models(User)

    objects = Manager(db)

    async def my_async_func():
        user0 = await objects.create(User, username="test")
        user1 = await objects.get(User, id=user0.id)
        user2 = await objects.get(User, username="test")
        # All should be the same
        # (the reference prints an undefined ``user3`` here; user0 is the third user)
        print(user1.id, user2.id, user0.id)
        return user0, user1, user2

    user0, user1, user2 = await my_async_func()
    assert isinstance(user0.id, int)
    assert capsys.readouterr().out == f"{user0.id} {user0.id} {user0.id}\n"
    assert user1 == user2 == user0
    assert user1.username == user2.username == "test"


async def test_manager_subclass_with_database_class_member(db, bind_models):
    PageBlock = page_block_model(db)
    bind_models(PageBlock)

    database = db

    class MyManager(Manager):
        database = db

    objects = MyManager()

    assert objects.database is database
    await objects.create(PageBlock, key="member", text="class attribute")
    block = await objects.get(PageBlock, key="member")
    assert block.text == "class attribute"


async def test_manager_get_example(db, bind_models):
    class MyModel(peewee.Model):
        text = peewee.CharField()

        class Meta:
            database = db
            table_name = "ref_mymodel"

    bind_models(MyModel)
    objects = Manager(db)
    await objects.create(MyModel, id=1, text="first")
    await objects.create(MyModel, id=2, text="second")

    async def my_async_func():
        obj1 = await objects.get(MyModel, id=1)
        obj2 = await objects.get(MyModel, MyModel.id == 1)
        obj3 = await objects.get(MyModel.select().where(MyModel.id == 1))
        return obj1, obj2, obj3

    # All will return MyModel instance with id = 1
    for obj in await my_async_func():
        assert isinstance(obj, MyModel)
        assert (obj.id, obj.text) == (1, "first")


async def test_manager_atomic_example(db, bind_models):
    PageBlock = page_block_model(db)
    bind_models(PageBlock)
    objects = Manager(db)

    async with objects.atomic():
        await objects.create(
            PageBlock,
            key="intro",
            text="There are more things in heaven and earth, Horatio, than are dreamt of in your philosophy.",
        )
        await objects.create(PageBlock, key="signature", text="William Shakespeare")

    rows = await objects.execute(
        PageBlock.select(PageBlock.key, PageBlock.text).order_by(PageBlock.key).tuples()
    )
    assert rows == [
        (
            "intro",
            "There are more things in heaven and earth, Horatio, than are dreamt of in your philosophy.",
        ),
        ("signature", "William Shakespeare"),
    ]

    # and all or nothing: a failing second create takes the first one with it
    with pytest.raises(peewee.IntegrityError):
        async with objects.atomic():
            await objects.create(PageBlock, key="epilogue", text="The rest is silence.")
            await objects.create(PageBlock, key="signature", text="duplicate key")
    assert await objects.count(PageBlock.select()) == 2


# -- Databases section -------------------------------------------------------------


def example_database(backend, name, settings):
    """The reference's constructor example for the backend's class, plus connection settings.

    The classes of the drivers that came later take the same arguments as the
    reference's class of their family.
    """
    if backend == "mysql":
        return peewee_async.MySQLDatabase(name, **settings), 1
    if backend == "mysql-pool":
        # The reference's PooledMySQLDatabase example spells the plain class:
        # database = MySQLDatabase('test', max_connections=10)
        return peewee_async.MySQLDatabase(name, max_connections=10, **settings), 10
    cls = BACKENDS[backend][1]
    pooled = backend.endswith("-pool")
    extra: dict[str, Any] = {"max_connections": 20} if pooled else {}
    if "ext" in backend:
        extra["register_hstore"] = False
    return cls(name, **extra, **settings), 20 if pooled else 1


async def test_database_constructor_examples(backend):
    if backend.startswith("sqlite"):
        pytest.skip("the reference's database examples are PostgreSQL and MySQL classes")
    settings = server_settings(BACKENDS[backend][0])
    name = settings.pop("database")
    database, max_connections = example_database(backend, name, settings)
    assert database.max_connections == max_connections
    if "ext" in backend:
        assert database.register_hstore is False
    try:
        await database.connect_async(loop=asyncio.get_running_loop(), timeout=10)
        assert database.is_connected
        cursor = await database.execute_sql_async("SELECT 1")
        assert [tuple(row) for row in cursor.fetchall()] == [(1,)]
        results = await asyncio.gather(*(database.execute_sql_async("SELECT 2") for _ in range(5)))
        assert [[tuple(row) for row in c.fetchall()] for c in results] == [[(2,)]] * 5
        assert database.pool.used == 0
    finally:
        await database.close_async()
    assert not database.is_connected


async def test_pooled_mysql_class_with_max_connections(backend):
    if BACKENDS[backend][0] != "mysql":
        pytest.skip("MySQL only")
    settings = server_settings("mysql")
    name = settings.pop("database")
    # The pooled class of the backend's driver.
    pooled = {"aiomysql": peewee_async.PooledMySQLDatabase, "asyncmy": peewee_async.PooledAsyncmyDatabase}
    database = pooled[BACKENDS[backend][1].driver.name](name, max_connections=10, **settings)
    assert database.max_connections == 10
    try:
        cursor = await database.execute_sql_async("SELECT 1")
        assert [tuple(row) for row in cursor.fetchall()] == [(1,)]
    finally:
        await database.close_async()


# -- Using async peewee with Tornado (the handlers' logic, without Tornado) ----------


def make_test_name_model(db):
    class TestNameModel(peewee.Model):
        name = peewee.CharField()

        class Meta:
            database = db
            table_name = "ref_testnamemodel"

        def __str__(self):
            return self.name

    return TestNameModel


async def tornado_setup(db, bind_models):
    database = db
    TestNameModel = make_test_name_model(db)
    bind_models(TestNameModel)

    # Create table, add some instances
    TestNameModel.create_table(True)
    TestNameModel.get_or_create(id=1, defaults={"name": "TestNameModel id=1"})
    TestNameModel.get_or_create(id=2, defaults={"name": "TestNameModel id=2"})
    TestNameModel.get_or_create(id=3, defaults={"name": "TestNameModel id=3"})
    database.close()

    objects = peewee_async.Manager(database)
    return TestNameModel, objects


class NotFound(Exception):
    """Stands in for tornado.web.HTTPError(404)."""


async def test_tornado_root_handler_get(db, bind_models):
    TestNameModel, objects = await tornado_setup(db, bind_models)

    async def get(obj_id):
        written = []
        if not obj_id:
            written.append("Please provide the 'id' query argument, i.e. ?id=1")
            return written
        try:
            obj = await objects.get(TestNameModel, id=obj_id)
            written.append({"id": obj.id, "name": obj.name})
        except TestNameModel.DoesNotExist:
            raise NotFound(404, "Object not found!") from None
        return written

    assert await get("1") == [{"id": 1, "name": "TestNameModel id=1"}]
    assert await get("3") == [{"id": 3, "name": "TestNameModel id=3"}]
    assert await get(None) == ["Please provide the 'id' query argument, i.e. ?id=1"]
    with pytest.raises(NotFound):
        await get("100")


async def test_tornado_create_handler(db, bind_models):
    TestNameModel, objects = await tornado_setup(db, bind_models)

    async def get_or_create(obj_id):
        async with objects.atomic():
            obj, created = await objects.get_or_create(  # noqa: RUF059 (as in the reference)
                TestNameModel,
                id=obj_id,
                defaults={"name": "TestNameModel id=%s" % obj_id},  # noqa: UP031
            )
        return obj

    async def get(obj_id):
        loop = asyncio.get_running_loop()
        task1 = asyncio.current_task()  # None under Tornado; a test runs in a task
        task2 = loop.create_task(get_or_create(obj_id))
        obj = await task2
        return {
            "task1": task1 and id(task1),
            "task2": task2 and id(task2),
            "obj": str(obj),
        }

    written = await get("100")
    assert written["task2"] is not None
    assert written["task2"] != written["task1"]
    assert written["obj"] == "TestNameModel id=100"  # newly created
    created = await objects.get(TestNameModel, id=100)
    assert created.name == "TestNameModel id=100"

    written = await get("2")
    assert written["obj"] == "TestNameModel id=2"  # existing
    rows = await objects.execute(TestNameModel.select().order_by(TestNameModel.id).tuples())
    assert rows == [
        (1, "TestNameModel id=1"),
        (2, "TestNameModel id=2"),
        (3, "TestNameModel id=3"),
        (100, "TestNameModel id=100"),
    ]


async def test_tornado_root_handler_post(db, bind_models):
    # On a fresh table: after the example's explicit ids 1-3 PostgreSQL's
    # sequence would still hand out 1, in sync peewee as well.
    TestNameModel = make_test_name_model(db)
    bind_models(TestNameModel)
    objects = peewee_async.Manager(db)

    async def post(name):
        obj = await objects.create(TestNameModel, name=name)
        return {"id": obj.id, "name": obj.name}

    first = await post("posted")
    second = await post("posted again")
    assert isinstance(first["id"], int)
    assert second["id"] > first["id"]
    assert first["name"] == "posted"
    rows = await objects.execute(TestNameModel.select().order_by(TestNameModel.id).tuples())
    assert rows == [(first["id"], "posted"), (second["id"], "posted again")]


# -- More examples: Using both sync and async calls ----------------------------------------


async def test_using_both_sync_and_async_calls(db, bind_models, capsys):
    database = db
    loop = asyncio.get_running_loop()

    class TestModel(peewee.Model):
        text = peewee.CharField()

        class Meta:
            database = db
            table_name = "ref_sync_async"

    bind_models(TestModel)

    # Create table synchronously!
    TestModel.create_table(True)
    # This is optional: close sync connection
    database.close()

    async def my_handler():
        obj1 = TestModel.create(text="Yo, I can do it sync!")
        obj2 = await peewee_async.create_object(TestModel, text="Not bad. Watch this, I'm async!")
        all_objects = await peewee_async.execute(TestModel.select())
        for obj in all_objects:
            print(obj.text)
        obj1.delete_instance()
        await peewee_async.delete_object(obj2)

    await database.connect_async(loop=loop)
    await my_handler()

    assert capsys.readouterr().out == "Yo, I can do it sync!\nNot bad. Watch this, I'm async!\n"
    database.close()
    assert await peewee_async.count(TestModel.select()) == 0
    with Manager(db).allow_sync():
        assert TestModel.select().count() == 0


# -- More examples: Using transactions ------------------------------------------------------


async def test_using_transactions(db, bind_models, capsys):
    database = db

    class TestModel(peewee.Model):
        text = peewee.CharField()

        class Meta:
            database = db
            table_name = "ref_transactions"

    bind_models(TestModel)

    async def test():
        obj = await create_object(TestModel, text="FOO")
        obj_id = obj.id

        try:
            async with database.atomic_async():
                obj.text = "BAR"
                await update_object(obj)
                raise Exception("Fake error")
        except Exception:
            res = await get_object(TestModel, TestModel.id == obj_id)
            print(res.text)  # Should print 'FOO', not 'BAR'

    await test()

    assert capsys.readouterr().out == "FOO\n"
    rows = await peewee_async.execute(TestModel.select(TestModel.text).tuples())
    assert rows == [("FOO",)]
