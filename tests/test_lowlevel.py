"""The low-level API of 0.x: module functions that run on each model's own database.

The ``db`` fixture binds the shared models to the backend under test, so no
Manager is involved: every call finds the database through the model.
"""

import uuid

import peewee
import pytest

import peewee_async

from .models import (
    CompositeKeyModel,
    NaturalKeyModel,
    TestModel,
    TestModelAlpha,
    TestModelBeta,
    TestModelGamma,
    UUIDTestModel,
)


def sync_rows(db, query):
    """What sync peewee returns for ``query``."""
    previous = db.allow_sync
    db.allow_sync = True
    try:
        return list(query.clone())
    finally:
        db.close()
        db.allow_sync = previous


async def texts_of(model):
    rows = await peewee_async.execute(model.select(model.text).order_by(model.text).tuples())
    return [row[0] for row in rows]


async def make_tree():
    """alpha1 -> (beta1 -> gamma1, gamma2), (beta2 -> gamma3); alpha2 -> beta3 -> gamma4."""
    alpha1 = await peewee_async.create_object(TestModelAlpha, text="alpha1")
    alpha2 = await peewee_async.create_object(TestModelAlpha, text="alpha2")
    beta1 = await peewee_async.create_object(TestModelBeta, alpha=alpha1, text="beta1")
    beta2 = await peewee_async.create_object(TestModelBeta, alpha=alpha1, text="beta2")
    beta3 = await peewee_async.create_object(TestModelBeta, alpha=alpha2, text="beta3")
    for beta, text in [(beta1, "gamma1"), (beta1, "gamma2"), (beta2, "gamma3"), (beta3, "gamma4")]:
        await peewee_async.create_object(TestModelGamma, beta=beta, text=text)
    return alpha1, alpha2, [beta1, beta2, beta3]


# -- execute ------------------------------------------------------------------------


async def test_execute_select_insert_update_delete(db):
    pk = await peewee_async.execute(TestModel.insert(text="a", data="1"))
    assert isinstance(pk, int)
    await peewee_async.execute(TestModel.insert_many([{"text": "b"}, {"text": "c", "data": "3"}]))
    rows = await peewee_async.execute(TestModel.select().order_by(TestModel.text))
    assert [type(r) for r in rows] == [TestModel] * 3
    assert [(r.text, r.data) for r in rows] == [("a", "1"), ("b", ""), ("c", "3")]
    assert rows[0].id == pk
    assert [r.__data__ for r in rows] == [
        r.__data__ for r in sync_rows(db, TestModel.select().order_by(TestModel.text))
    ]

    assert await peewee_async.execute(TestModel.update(data="u").where(TestModel.text != "a")) == 2
    dicts = await peewee_async.execute(
        TestModel.select(TestModel.text, TestModel.data).order_by(TestModel.text).dicts()
    )
    assert dicts == [{"text": "a", "data": "1"}, {"text": "b", "data": "u"}, {"text": "c", "data": "u"}]
    assert await peewee_async.execute(TestModel.delete().where(TestModel.text == "b")) == 1
    assert await texts_of(TestModel) == ["a", "c"]


async def test_execute_raw_and_compound(db):
    for text in ("a", "b", "c"):
        await peewee_async.create_object(TestModel, text=text)
    table = TestModel._meta.table_name
    raw = await peewee_async.execute(
        TestModel.raw(f"SELECT * FROM {table} WHERE text <> {db.param} ORDER BY text", "b")
    )
    assert [(type(r), r.text) for r in raw] == [(TestModel, "a"), (TestModel, "c")]
    q1 = TestModel.select(TestModel.text).where(TestModel.text << ["a", "b"])
    q2 = TestModel.select(TestModel.text).where(TestModel.text << ["b", "c"])
    assert sorted(await peewee_async.execute((q1 | q2).tuples())) == [("a",), ("b",), ("c",)]
    assert sorted(await peewee_async.execute((q1 + q2).tuples())) == [("a",), ("b",), ("b",), ("c",)]


async def test_execute_caches_rows_on_the_query(db):
    await peewee_async.create_object(TestModel, text="a")
    query = TestModel.select()
    rows = await peewee_async.execute(query)
    db.allow_sync = False
    assert [r.text for r in query] == [r.text for r in rows] == ["a"]


# -- get_object -------------------------------------------------------------------


async def test_get_object_by_expression_and_query(db):
    first = await peewee_async.create_object(TestModel, text="one", data="d1")
    second = await peewee_async.create_object(TestModel, text="two", data="d2")
    got = await peewee_async.get_object(TestModel, TestModel.id == second.id)
    assert (got.id, got.text, got.data) == (second.id, "two", "d2")
    got = await peewee_async.get_object(TestModel, TestModel.text == "one", TestModel.data == "d1")
    assert got.id == first.id
    got = await peewee_async.get_object(TestModel.select().where(TestModel.text == "two"))
    assert got.id == second.id
    got = await peewee_async.get_object(TestModel.select(), TestModel.data == "d1")
    assert got.id == first.id
    assert (await peewee_async.get_object(TestModel, first.id)).text == "one"
    with pytest.raises(TestModel.DoesNotExist) as excinfo:
        await peewee_async.get_object(TestModel, TestModel.text == "missing")
    assert isinstance(excinfo.value, peewee.DoesNotExist)
    with pytest.raises(TestModel.DoesNotExist):
        await peewee_async.get_object(TestModel.select().where(TestModel.id == -1))


# -- create_object ----------------------------------------------------------------


async def test_create_object(db):
    obj = await peewee_async.create_object(TestModel, text="new", data="payload")
    assert isinstance(obj.id, int)
    assert await peewee_async.execute(TestModel.select().tuples()) == [(obj.id, "new", "payload")]
    with pytest.raises(peewee.IntegrityError):
        await peewee_async.create_object(TestModel, text="new")
    assert await peewee_async.count(TestModel.select()) == 1


async def test_create_object_other_primary_keys(db):
    uuid_obj = await peewee_async.create_object(UUIDTestModel, text="u")
    assert isinstance(uuid_obj.id, uuid.UUID)
    assert (await peewee_async.get_object(UUIDTestModel, UUIDTestModel.id == uuid_obj.id)).text == "u"
    natural = await peewee_async.create_object(NaturalKeyModel, key="k", value=4)
    assert natural.key == "k"
    assert await peewee_async.execute(NaturalKeyModel.select().tuples()) == [("k", 4)]
    await peewee_async.create_object(CompositeKeyModel, left=5, right=6, label="c")
    got = await peewee_async.get_object(
        CompositeKeyModel, CompositeKeyModel.left == 5, CompositeKeyModel.right == 6
    )
    assert got.label == "c"


# -- update_object -------------------------------------------------------------------


async def test_update_object(db):
    obj = await peewee_async.create_object(TestModel, text="one", data="d")
    other = await peewee_async.create_object(TestModel, text="other", data="o")
    obj.text = "uno"
    obj.data = "changed"
    assert await peewee_async.update_object(obj) == 1
    rows = await peewee_async.execute(TestModel.select().order_by(TestModel.id).tuples())
    assert rows == [(obj.id, "uno", "changed"), (other.id, "other", "o")]


async def test_update_object_only(db):
    obj = await peewee_async.create_object(TestModel, text="one", data="d")
    obj.text = "not written"
    obj.data = "written"
    assert await peewee_async.update_object(obj, only=[TestModel.data]) == 1
    fresh = await peewee_async.get_object(TestModel, TestModel.id == obj.id)
    assert (fresh.text, fresh.data) == ("one", "written")
    obj.text = "by name"
    obj.data = "not written either"
    assert await peewee_async.update_object(obj, only=["text"]) == 1
    fresh = await peewee_async.get_object(TestModel, TestModel.id == obj.id)
    assert (fresh.text, fresh.data) == ("by name", "written")


async def test_update_object_does_not_call_overridden_save(db, bind_models):
    calls = []

    class Saving(peewee.Model):
        text = peewee.CharField()

        class Meta:
            table_name = "lowlevel_saving"

        def save(self, *args, **kwargs):
            calls.append("save")
            return super().save(*args, **kwargs)

    bind_models(Saving)
    obj = await peewee_async.create_object(Saving, text="a")
    obj.text = "b"
    assert await peewee_async.update_object(obj) == 1
    assert calls == []
    assert await peewee_async.execute(Saving.select(Saving.text).tuples()) == [("b",)]


# -- delete_object -------------------------------------------------------------------


async def test_delete_object(db):
    obj = await peewee_async.create_object(TestModel, text="gone")
    await peewee_async.create_object(TestModel, text="stays")
    assert await peewee_async.delete_object(obj) == 1
    assert await texts_of(TestModel) == ["stays"]
    assert await peewee_async.delete_object(obj) == 0


async def test_delete_object_recursive(db):
    alpha1, _, betas = await make_tree()
    assert await peewee_async.delete_object(alpha1, recursive=True) == 1
    assert await texts_of(TestModelAlpha) == ["alpha2"]
    assert await texts_of(TestModelBeta) == ["beta3"]
    rows = await peewee_async.execute(
        TestModelGamma.select(TestModelGamma.text, TestModelGamma.beta).order_by(TestModelGamma.text).tuples()
    )
    assert rows == [("gamma1", None), ("gamma2", None), ("gamma3", None), ("gamma4", betas[2].id)]


async def test_delete_object_recursive_delete_nullable(db):
    alpha1, _, _ = await make_tree()
    assert await peewee_async.delete_object(alpha1, recursive=True, delete_nullable=True) == 1
    assert await texts_of(TestModelBeta) == ["beta3"]
    assert await texts_of(TestModelGamma) == ["gamma4"]


# -- prefetch ----------------------------------------------------------------------


async def test_prefetch(db):
    await make_tree()
    alphas = await peewee_async.prefetch(
        TestModelAlpha.select().order_by(TestModelAlpha.text),
        TestModelBeta.select().order_by(TestModelBeta.text),
        TestModelGamma.select().order_by(TestModelGamma.text),
    )
    db.allow_sync = False
    assert [(a.text, [(b.text, [g.text for g in b.gammas]) for b in a.betas]) for a in alphas] == [
        ("alpha1", [("beta1", ["gamma1", "gamma2"]), ("beta2", ["gamma3"])]),
        ("alpha2", [("beta3", ["gamma4"])]),
    ]
    # the reverse direction: each gamma gets its beta attached
    db.allow_sync = True
    gammas = await peewee_async.prefetch(
        TestModelGamma.select().order_by(TestModelGamma.text), TestModelBeta.select()
    )
    db.allow_sync = False
    assert [(g.text, g.beta.text) for g in gammas] == [
        ("gamma1", "beta1"),
        ("gamma2", "beta1"),
        ("gamma3", "beta2"),
        ("gamma4", "beta3"),
    ]


# -- count and scalar ----------------------------------------------------------------


async def test_count(db):
    for text in "abcde":
        await peewee_async.create_object(TestModel, text=text)
    assert await peewee_async.count(TestModel.select()) == 5
    assert await peewee_async.count(TestModel.select().where(TestModel.text >= "d")) == 2
    limited = TestModel.select().order_by(TestModel.text).limit(3)
    assert await peewee_async.count(limited) == 3
    assert await peewee_async.count(limited, clear_limit=True) == 5
    assert await peewee_async.count(TestModel.select().where(TestModel.text == "z")) == 0


async def test_scalar(db):
    objs = [await peewee_async.create_object(TestModel, text=text) for text in "abc"]
    assert await peewee_async.scalar(TestModel.select(peewee.fn.MAX(TestModel.id))) == objs[-1].id
    assert await peewee_async.scalar(TestModel.select(peewee.fn.MIN(TestModel.text))) == "a"
    pair = TestModel.select(peewee.fn.COUNT(TestModel.id), peewee.fn.MAX(TestModel.text))
    assert await peewee_async.scalar(pair, as_tuple=True) == (3, "c")
    assert await peewee_async.scalar(TestModel.select(TestModel.id).where(TestModel.id < 0)) is None


# -- transactions --------------------------------------------------------------------


async def test_atomic_transaction_savepoint_functions(db):
    async with peewee_async.atomic(db):
        await peewee_async.create_object(TestModel, text="committed")
    with pytest.raises(RuntimeError):
        async with peewee_async.transaction(db):
            await peewee_async.create_object(TestModel, text="rolled back")
            raise RuntimeError
    async with peewee_async.transaction(db):
        with pytest.raises(RuntimeError):
            async with peewee_async.savepoint(db):
                await peewee_async.create_object(TestModel, text="savepoint rolled back")
                raise RuntimeError
        await peewee_async.create_object(TestModel, text="after savepoint")
    assert await texts_of(TestModel) == ["after savepoint", "committed"]


# -- the database comes from the model -----------------------------------------------


async def test_unbound_model_raises_wrong_database(db):
    class Unbound(peewee.Model):
        text = peewee.CharField()

    for call in (
        lambda: peewee_async.execute(Unbound.select()),
        lambda: peewee_async.get_object(Unbound, Unbound.id == 1),
        lambda: peewee_async.create_object(Unbound, text="x"),
        lambda: peewee_async.update_object(Unbound(id=1, text="x")),
        lambda: peewee_async.delete_object(Unbound(id=1, text="x")),
        lambda: peewee_async.prefetch(Unbound.select()),
        lambda: peewee_async.count(Unbound.select()),
        lambda: peewee_async.scalar(Unbound.select()),
    ):
        with pytest.raises(peewee_async.WrongDatabaseError, match="bound to no database"):
            await call()


async def test_model_bound_to_sync_database_raises_wrong_database(db):
    class SyncBound(peewee.Model):
        text = peewee.CharField()

        class Meta:
            database = peewee.SqliteDatabase(":memory:")

    with pytest.raises(peewee_async.WrongDatabaseError, match="sync peewee database"):
        await peewee_async.execute(SyncBound.select())
    with pytest.raises(peewee_async.WrongDatabaseError, match="sync peewee database"):
        await peewee_async.create_object(SyncBound, text="x")


async def test_models_on_a_database_proxy(db):
    proxy = peewee.DatabaseProxy()

    class Proxied(peewee.Model):
        text = peewee.CharField()

        class Meta:
            database = proxy
            table_name = "lowlevel_proxied"

    proxy.initialize(db)
    previous = db.allow_sync
    try:
        Proxied.create_table()
        db.close()
        obj = await peewee_async.create_object(Proxied, text="via proxy")
        assert (await peewee_async.get_object(Proxied, Proxied.id == obj.id)).text == "via proxy"
        assert await peewee_async.count(Proxied.select()) == 1
    finally:
        db.allow_sync = True
        Proxied.drop_table()
        db.close()
        db.allow_sync = previous
