"""Every Manager method against the real servers, results read back from the database.

Where it is easy, a result is compared with what sync peewee returns for the
same query (run inside ``objects.allow_sync()``).
"""

import asyncio
import uuid

import peewee
import pytest

import peewee_async

from .conftest import BACKENDS, make_database
from .models import (
    CompositeKeyModel,
    NaturalKeyModel,
    TestModel,
    TestModelAlpha,
    TestModelBeta,
    TestModelGamma,
    UUIDTestModel,
)

# -- models of this module (bound with bind_models) --------------------------


class RParent(peewee.Model):
    name = peewee.CharField()

    class Meta:
        table_name = "rparent"


class RChild(peewee.Model):
    parent = peewee.ForeignKeyField(RParent, backref="children")
    name = peewee.CharField()

    class Meta:
        table_name = "rchild"


class RBlocker(peewee.Model):
    """References RParent at the database level only, so peewee's recursive delete cannot know it."""

    parent_id = peewee.IntegerField()

    class Meta:
        table_name = "rblocker"
        depends_on = (RParent,)
        constraints = (peewee.SQL("FOREIGN KEY (parent_id) REFERENCES rparent (id)"),)


def sync_rows(objects, query):
    """What sync peewee returns for ``query``."""
    with objects.allow_sync():
        return list(query.clone())


async def make_texts(objects, *texts):
    return [await objects.create(TestModel, text=text, data=f"data-{text}") for text in texts]


async def make_tree(objects):
    """alpha1 -> (beta1 -> gamma1, gamma2), (beta2 -> gamma3); alpha2 -> beta3 -> gamma4."""
    alpha1 = await objects.create(TestModelAlpha, text="alpha1")
    alpha2 = await objects.create(TestModelAlpha, text="alpha2")
    beta1 = await objects.create(TestModelBeta, alpha=alpha1, text="beta1")
    beta2 = await objects.create(TestModelBeta, alpha=alpha1, text="beta2")
    beta3 = await objects.create(TestModelBeta, alpha=alpha2, text="beta3")
    gammas = [
        await objects.create(TestModelGamma, beta=beta, text=text)
        for beta, text in [(beta1, "gamma1"), (beta1, "gamma2"), (beta2, "gamma3"), (beta3, "gamma4")]
    ]
    return alpha1, alpha2, [beta1, beta2, beta3], gammas


async def texts_of(objects, model):
    rows = await objects.execute(model.select(model.text).order_by(model.text).tuples())
    return [row[0] for row in rows]


# -- get ----------------------------------------------------------------------


async def test_get_by_kwargs(objects):
    _, second, _ = await make_texts(objects, "one", "two", "three")
    got = await objects.get(TestModel, text="two")
    assert isinstance(got, TestModel)
    assert (got.id, got.text, got.data) == (second.id, "two", "data-two")


async def test_get_by_expression(objects):
    first, second = await make_texts(objects, "one", "two")
    got = await objects.get(TestModel, TestModel.id == second.id)
    assert (got.id, got.text) == (second.id, "two")
    got = await objects.get(TestModel, TestModel.text.startswith("on"), TestModel.data == "data-one")
    assert got.id == first.id


async def test_get_by_query(objects):
    _, second = await make_texts(objects, "one", "two")
    got = await objects.get(TestModel.select().where(TestModel.id == second.id))
    assert (got.id, got.text) == (second.id, "two")
    # a query and lookups together
    got = await objects.get(TestModel.select().where(TestModel.id > 0), text="two")
    assert got.id == second.id


async def test_get_by_int_primary_key(objects):
    first, second = await make_texts(objects, "one", "two")
    assert (await objects.get(TestModel, second.id)).text == "two"
    assert (await objects.get(TestModel, first.id)).text == "one"


async def test_get_matches_sync_get(objects):
    await make_texts(objects, "one", "two")
    got = await objects.get(TestModel, text="one")
    with objects.allow_sync():
        expected = TestModel.get(TestModel.text == "one")
    assert got == expected
    assert got.__data__ == expected.__data__


async def test_get_missing_raises_the_models_does_not_exist(objects):
    await make_texts(objects, "one")
    for call in (
        objects.get(TestModel, text="nope"),
        objects.get(TestModel, TestModel.id == -1),
        objects.get(TestModel.select().where(TestModel.text == "nope")),
        objects.get(TestModel, 987654),
    ):
        with pytest.raises(TestModel.DoesNotExist) as excinfo:
            await call
        assert type(excinfo.value) is TestModel.DoesNotExist
        assert isinstance(excinfo.value, peewee.DoesNotExist)
        assert not isinstance(excinfo.value, TestModelAlpha.DoesNotExist)


async def test_get_rejects_what_is_not_a_model_or_query(objects):
    with pytest.raises(TypeError):
        await objects.get("TestModel", id=1)


# -- create -------------------------------------------------------------------


async def test_create_sets_serial_primary_key(objects):
    first = await objects.create(TestModel, text="one")
    second = await objects.create(TestModel, text="two", data="payload")
    assert isinstance(first.id, int) and isinstance(second.id, int)
    assert second.id > first.id
    rows = await objects.execute(TestModel.select().order_by(TestModel.id).tuples())
    assert rows == [(first.id, "one", ""), (second.id, "two", "payload")]
    assert not first.dirty_fields


async def test_create_with_uuid_primary_key(objects):
    created = await objects.create(UUIDTestModel, text="u")
    assert isinstance(created.id, uuid.UUID)
    explicit_id = uuid.uuid4()
    explicit = await objects.create(UUIDTestModel, id=explicit_id, text="explicit")
    assert explicit.id == explicit_id
    got = await objects.get(UUIDTestModel, id=created.id)
    assert (got.id, got.text) == (created.id, "u")
    got = await objects.get(UUIDTestModel, UUIDTestModel.id == explicit_id)
    assert got.text == "explicit"
    assert await objects.count(UUIDTestModel.select()) == 2


async def test_create_with_natural_char_primary_key(objects):
    created = await objects.create(NaturalKeyModel, key="alpha-key", value=7)
    assert created.key == "alpha-key"
    got = await objects.get(NaturalKeyModel, key="alpha-key")
    assert (got.key, got.value) == ("alpha-key", 7)
    with pytest.raises(peewee.IntegrityError):
        await objects.create(NaturalKeyModel, key="alpha-key", value=8)
    assert await objects.execute(NaturalKeyModel.select().tuples()) == [("alpha-key", 7)]


async def test_create_update_delete_with_composite_primary_key(objects):
    created = await objects.create(CompositeKeyModel, left=1, right=2, label="first")
    await objects.create(CompositeKeyModel, left=1, right=3, label="second")
    assert created._pk == (1, 2)
    got = await objects.get(CompositeKeyModel, left=1, right=2)
    assert got.label == "first"
    got.label = "changed"
    assert await objects.update(got) == 1
    rows = await objects.execute(CompositeKeyModel.select().order_by(CompositeKeyModel.right).tuples())
    assert rows == [(1, 2, "changed"), (1, 3, "second")]
    assert await objects.delete(got) == 1
    rows = await objects.execute(CompositeKeyModel.select().tuples())
    assert rows == [(1, 3, "second")]


# -- update -------------------------------------------------------------------


async def test_update_all_fields(objects):
    obj, other = await make_texts(objects, "one", "other")
    obj.text = "uno"
    obj.data = "new data"
    assert await objects.update(obj) == 1
    fresh = await objects.get(TestModel, id=obj.id)
    assert (fresh.text, fresh.data) == ("uno", "new data")
    untouched = await objects.get(TestModel, id=other.id)
    assert (untouched.text, untouched.data) == ("other", "data-other")


async def test_update_only_fields(objects):
    (obj,) = await make_texts(objects, "one")
    obj.text = "ignored"
    obj.data = "written"
    assert await objects.update(obj, only=[TestModel.data]) == 1
    fresh = await objects.get(TestModel, id=obj.id)
    assert (fresh.text, fresh.data) == ("one", "written")


async def test_update_only_field_names(objects):
    (obj,) = await make_texts(objects, "one")
    obj.text = "written"
    obj.data = "ignored"
    assert await objects.update(obj, only=("text",)) == 1
    fresh = await objects.get(TestModel, id=obj.id)
    assert (fresh.text, fresh.data) == ("written", "data-one")


async def test_update_returns_zero_for_a_missing_row(objects):
    (obj,) = await make_texts(objects, "one")
    await objects.execute(TestModel.delete().where(TestModel.id == obj.id))
    obj.data = "nothing to update"
    assert await objects.update(obj) == 0
    assert await objects.count(TestModel.select()) == 0


async def test_update_unique_violation_keeps_row(objects):
    _, second = await make_texts(objects, "one", "two")
    second.text = "one"
    with pytest.raises(peewee.IntegrityError):
        await objects.update(second)
    assert await texts_of(objects, TestModel) == ["one", "two"]


# -- delete -------------------------------------------------------------------


async def test_delete_plain(objects):
    first, _ = await make_texts(objects, "one", "two")
    assert await objects.delete(first) == 1
    with pytest.raises(TestModel.DoesNotExist):
        await objects.get(TestModel, id=first.id)
    assert await texts_of(objects, TestModel) == ["two"]
    assert await objects.delete(first) == 0


async def test_delete_with_dependents_not_recursive_fails_and_keeps_rows(objects):
    alpha1, *_ = await make_tree(objects)
    with pytest.raises(peewee.IntegrityError):
        await objects.delete(alpha1)
    assert await texts_of(objects, TestModelAlpha) == ["alpha1", "alpha2"]
    assert await texts_of(objects, TestModelBeta) == ["beta1", "beta2", "beta3"]


async def test_delete_recursive_sets_nullable_dependents_to_null(objects):
    alpha1, _, betas, _ = await make_tree(objects)
    assert await objects.delete(alpha1, recursive=True) == 1
    assert await texts_of(objects, TestModelAlpha) == ["alpha2"]
    assert await texts_of(objects, TestModelBeta) == ["beta3"]
    rows = await objects.execute(
        TestModelGamma.select(TestModelGamma.text, TestModelGamma.beta).order_by(TestModelGamma.text).tuples()
    )
    # gammas of the deleted betas stay, their nullable foreign key set to NULL
    assert rows == [("gamma1", None), ("gamma2", None), ("gamma3", None), ("gamma4", betas[2].id)]


async def test_delete_recursive_with_delete_nullable_deletes_them(objects):
    alpha1, _, betas, _ = await make_tree(objects)
    assert await objects.delete(alpha1, recursive=True, delete_nullable=True) == 1
    assert await texts_of(objects, TestModelAlpha) == ["alpha2"]
    assert await texts_of(objects, TestModelBeta) == ["beta3"]
    rows = await objects.execute(TestModelGamma.select(TestModelGamma.text, TestModelGamma.beta).tuples())
    assert rows == [("gamma4", betas[2].id)]


async def test_delete_recursive_matches_sync_delete_instance(objects):
    async_tree = await make_tree(objects)
    await objects.delete(async_tree[0], recursive=True)
    after_async = sync_rows(objects, TestModelGamma.select().order_by(TestModelGamma.id).dicts())
    await objects.execute(TestModelGamma.delete())
    await objects.execute(TestModelBeta.delete())
    await objects.execute(TestModelAlpha.delete())
    sync_tree = await make_tree(objects)
    with objects.allow_sync():
        sync_tree[0].delete_instance(recursive=True)
    after_sync = sync_rows(objects, TestModelGamma.select().order_by(TestModelGamma.id).dicts())
    assert [(r["text"], r["beta"] is None) for r in after_async] == [
        (r["text"], r["beta"] is None) for r in after_sync
    ]


async def test_failing_recursive_delete_leaves_all_rows(objects, bind_models):
    bind_models(RParent, RChild, RBlocker)
    parent = await objects.create(RParent, name="parent")
    await objects.create(RChild, parent=parent, name="child1")
    await objects.create(RChild, parent=parent, name="child2")
    await objects.create(RBlocker, parent_id=parent.id)
    with pytest.raises(peewee.IntegrityError):
        await objects.delete(parent, recursive=True)
    # the children were deleted first, then the parent failed: all is rolled back
    assert await objects.execute(RParent.select(RParent.name).tuples()) == [("parent",)]
    children = await objects.execute(RChild.select(RChild.name).order_by(RChild.name).tuples())
    assert children == [("child1",), ("child2",)]
    # without the blocker the same delete goes through
    await objects.execute(RBlocker.delete())
    assert await objects.delete(parent, recursive=True) == 1
    assert await objects.count(RParent.select()) == 0
    assert await objects.count(RChild.select()) == 0


# -- get_or_create / create_or_get ------------------------------------------


async def test_get_or_create_existing(objects):
    (existing,) = await make_texts(objects, "one")
    obj, created = await objects.get_or_create(TestModel, text="one", defaults={"data": "unused"})
    assert created is False
    assert (obj.id, obj.text, obj.data) == (existing.id, "one", "data-one")
    assert await objects.count(TestModel.select()) == 1


async def test_get_or_create_new_with_defaults(objects):
    obj, created = await objects.get_or_create(TestModel, text="new", defaults={"data": "from defaults"})
    assert created is True
    assert isinstance(obj.id, int)
    fresh = await objects.get(TestModel, id=obj.id)
    assert (fresh.text, fresh.data) == ("new", "from defaults")
    again, created_again = await objects.get_or_create(TestModel, text="new")
    assert created_again is False
    assert again.id == obj.id


async def test_get_or_create_concurrent(objects):
    results = await asyncio.gather(
        *(objects.get_or_create(TestModel, text="contended", defaults={"data": f"t{i}"}) for i in range(20))
    )
    rows = await objects.execute(TestModel.select().where(TestModel.text == "contended"))
    assert len(rows) == 1
    assert [created for _, created in results].count(True) == 1
    assert {obj.id for obj, _ in results} == {rows[0].id}
    winner = next(obj for obj, created in results if created)
    assert rows[0].data == winner.data


async def test_create_or_get(objects):
    obj, created = await objects.create_or_get(TestModel, text="key", data="first")
    assert created is True
    again, created_again = await objects.create_or_get(TestModel, text="key", data="second")
    assert created_again is False
    assert (again.id, again.text, again.data) == (obj.id, "key", "first")
    assert await objects.execute(TestModel.select(TestModel.text, TestModel.data).tuples()) == [
        ("key", "first")
    ]


async def test_create_or_get_by_primary_key(objects):
    _, created = await objects.create_or_get(NaturalKeyModel, key="k", value=1)
    assert created is True
    again, created_again = await objects.create_or_get(NaturalKeyModel, key="k", value=2)
    assert created_again is False
    assert (again.key, again.value) == ("k", 1)


# -- execute: select -----------------------------------------------------------


async def test_execute_select_model_instances(objects):
    made = await make_texts(objects, "a", "b", "c")
    query = TestModel.select().order_by(TestModel.id)
    rows = await objects.execute(query)
    assert isinstance(rows, list)
    assert all(type(row) is TestModel for row in rows)
    assert [(r.id, r.text, r.data) for r in rows] == [(m.id, m.text, m.data) for m in made]
    assert [r.__data__ for r in rows] == [r.__data__ for r in sync_rows(objects, query)]


async def test_execute_select_dicts_tuples_namedtuples(objects):
    made = await make_texts(objects, "a", "b")
    base = TestModel.select(TestModel.id, TestModel.text).order_by(TestModel.id)
    dicts = await objects.execute(base.dicts())
    assert dicts == [{"id": m.id, "text": m.text} for m in made]
    assert dicts == sync_rows(objects, base.dicts())
    tuples = await objects.execute(base.tuples())
    assert tuples == [(m.id, m.text) for m in made]
    assert tuples == sync_rows(objects, base.tuples())
    named = await objects.execute(base.namedtuples())
    assert [(n.id, n.text) for n in named] == [(m.id, m.text) for m in made]
    assert named == sync_rows(objects, base.namedtuples())


async def test_execute_select_objects(objects, db):
    await make_tree(objects)
    query = (
        TestModelBeta.select(TestModelBeta.text, TestModelAlpha.text.alias("alpha_text"))
        .join(TestModelAlpha)
        .order_by(TestModelBeta.text)
        .objects()
    )
    rows = await objects.execute(query)
    assert all(type(row) is TestModelBeta for row in rows)
    assert [(r.text, r.alpha_text) for r in rows] == [
        ("beta1", "alpha1"),
        ("beta2", "alpha1"),
        ("beta3", "alpha2"),
    ]
    assert [(r.text, r.alpha_text) for r in sync_rows(objects, query)] == [
        (r.text, r.alpha_text) for r in rows
    ]


async def test_execute_join_attaches_model_instances(objects, db):
    alpha1, _, betas, _ = await make_tree(objects)
    query = (
        TestModelGamma.select(TestModelGamma, TestModelBeta, TestModelAlpha)
        .join(TestModelBeta)
        .join(TestModelAlpha)
        .order_by(TestModelGamma.text)
    )
    rows = await objects.execute(query)
    db.allow_sync = False  # reading the related instances must not query
    assert [(g.text, g.beta.text, g.beta.alpha.text) for g in rows] == [
        ("gamma1", "beta1", "alpha1"),
        ("gamma2", "beta1", "alpha1"),
        ("gamma3", "beta2", "alpha1"),
        ("gamma4", "beta3", "alpha2"),
    ]
    assert isinstance(rows[0].beta, TestModelBeta) and isinstance(rows[0].beta.alpha, TestModelAlpha)
    assert rows[0].beta.alpha.id == alpha1.id
    assert rows[3].beta.id == betas[2].id


async def test_execute_iterating_query_again_uses_cache(objects, db):
    made = await make_texts(objects, "a", "b", "c")
    query = TestModel.select().order_by(TestModel.id)
    rows = await objects.execute(query)
    dict_query = TestModel.select(TestModel.text).order_by(TestModel.id).dicts()
    dict_rows = await objects.execute(dict_query)
    empty_query = TestModel.select().where(TestModel.text == "none")
    assert await objects.execute(empty_query) == []
    db.allow_sync = False
    assert [o.id for o in query] == [m.id for m in made]
    assert [o.id for o in query] == [o.id for o in rows]
    assert len(query) == 3
    assert query[1].text == "b"
    assert list(dict_query) == dict_rows == [{"text": "a"}, {"text": "b"}, {"text": "c"}]
    assert list(empty_query) == []
    # a query that was never awaited still runs sync, and the guard stops it
    with pytest.raises(peewee_async.SyncQueryError):
        list(TestModel.select())


# -- execute: writes --------------------------------------------------------------


async def test_execute_insert_returns_primary_key(objects):
    pk = await objects.execute(TestModel.insert(text="inserted", data="d"))
    assert isinstance(pk, int)
    got = await objects.get(TestModel, id=pk)
    assert (got.text, got.data) == ("inserted", "d")
    natural_pk = await objects.execute(NaturalKeyModel.insert(key="nk", value=3))
    if objects.database.returning_clause:
        assert natural_pk == "nk"
    elif isinstance(objects.database, peewee.SqliteDatabase):
        # sync peewee gives the driver's lastrowid: SQLite's hidden rowid
        assert natural_pk == 1
    else:
        # sync peewee gives the driver's lastrowid, 0 for a table without auto-increment
        assert natural_pk == 0
    assert (await objects.get(NaturalKeyModel, key="nk")).value == 3


async def test_execute_insert_many(objects, backend):
    result = await objects.execute(
        TestModel.insert_many([{"text": "m1", "data": "x"}, {"text": "m2"}, {"text": "m3", "data": "z"}])
    )
    rows = await objects.execute(TestModel.select().order_by(TestModel.id).tuples())
    assert [row[1:] for row in rows] == [("m1", "x"), ("m2", ""), ("m3", "z")]
    ids = [row[0] for row in rows]
    if BACKENDS[backend][0] == "mysql":
        assert result == ids[0]  # lastrowid: the first row of a multi-row insert
    elif backend.startswith("sqlite"):
        assert result == ids[-1]  # lastrowid: the last row of a multi-row insert
    else:
        assert [tuple(row) for row in result] == [(pk,) for pk in ids]
    count = await objects.execute(
        TestModel.insert_many([("m4", ""), ("m5", "")], fields=[TestModel.text, TestModel.data]).as_rowcount()
    )
    assert count == 2
    assert await texts_of(objects, TestModel) == ["m1", "m2", "m3", "m4", "m5"]


async def test_execute_insert_from_select(objects):
    await make_texts(objects, "a", "b")
    query = NaturalKeyModel.insert_from(
        TestModel.select(TestModel.text, peewee.Value(5)), [NaturalKeyModel.key, NaturalKeyModel.value]
    ).as_rowcount()
    assert await objects.execute(query) == 2
    rows = await objects.execute(NaturalKeyModel.select().order_by(NaturalKeyModel.key).tuples())
    assert rows == [("a", 5), ("b", 5)]


async def test_execute_update_and_delete_return_row_counts(objects):
    await make_texts(objects, "a", "b", "c", "d")
    updated = await objects.execute(
        TestModel.update(data="changed").where(TestModel.text.in_(["a", "b", "c"]))
    )
    assert updated == 3
    rows = await objects.execute(
        TestModel.select(TestModel.text, TestModel.data).order_by(TestModel.text).tuples()
    )
    assert rows == [("a", "changed"), ("b", "changed"), ("c", "changed"), ("d", "data-d")]
    assert await objects.execute(TestModel.update(data="x").where(TestModel.text == "none")) == 0
    assert await objects.execute(TestModel.delete().where(TestModel.text.in_(["a", "d"]))) == 2
    assert await texts_of(objects, TestModel) == ["b", "c"]
    assert await objects.execute(TestModel.delete()) == 2
    assert await objects.count(TestModel.select()) == 0


async def test_execute_returning_postgres(objects, backend):
    if BACKENDS[backend][0] == "mysql":
        pytest.skip("RETURNING is PostgreSQL only")
    await make_texts(objects, "a", "b", "c")
    inserted = await objects.execute(
        TestModel.insert(text="r", data="ret").returning(TestModel.id, TestModel.text, TestModel.data)
    )
    assert len(inserted) == 1
    assert isinstance(inserted[0], TestModel)
    assert (inserted[0].text, inserted[0].data) == ("r", "ret")
    assert (await objects.get(TestModel, id=inserted[0].id)).text == "r"
    updated = await objects.execute(
        TestModel.update(data="upd")
        .where(TestModel.text.in_(["a", "b"]))
        .returning(TestModel.text, TestModel.data)
        .dicts()
    )
    assert sorted(updated, key=lambda row: row["text"]) == [
        {"text": "a", "data": "upd"},
        {"text": "b", "data": "upd"},
    ]
    deleted = await objects.execute(
        TestModel.delete().where(TestModel.text == "c").returning(TestModel.text).tuples()
    )
    assert deleted == [("c",)]
    assert await texts_of(objects, TestModel) == ["a", "b", "r"]
    selected = await objects.execute(
        TestModel.insert_many([{"text": "s1"}, {"text": "s2"}]).returning(TestModel.text).tuples()
    )
    assert sorted(selected) == [("s1",), ("s2",)]


# -- execute: raw and compound ------------------------------------------------------


async def test_execute_raw(objects):
    made = await make_texts(objects, "a", "b", "c")
    table = TestModel._meta.table_name
    p = objects.database.param
    query = TestModel.raw(f"SELECT * FROM {table} WHERE text IN ({p}, {p}) ORDER BY id", "a", "c")
    rows = await objects.execute(query)
    assert all(type(row) is TestModel for row in rows)
    assert [(r.id, r.text, r.data) for r in rows] == [
        (made[0].id, "a", "data-a"),
        (made[2].id, "c", "data-c"),
    ]
    dicts = await objects.execute(TestModel.raw(f"SELECT text FROM {table} ORDER BY text DESC").dicts())
    assert dicts == [{"text": "c"}, {"text": "b"}, {"text": "a"}]
    assert [r.text for r in sync_rows(objects, query)] == ["a", "c"]


async def test_execute_union_and_union_all(objects):
    await make_texts(objects, "a", "b", "c", "d")
    q1 = TestModel.select(TestModel.text).where(TestModel.text.in_(["a", "b"]))
    q2 = TestModel.select(TestModel.text).where(TestModel.text.in_(["b", "c"]))
    union = await objects.execute(q1 | q2)
    assert sorted(r.text for r in union) == ["a", "b", "c"]
    assert all(isinstance(r, TestModel) for r in union)
    union_all = await objects.execute((q1 + q2).tuples())
    assert sorted(union_all) == [("a",), ("b",), ("b",), ("c",)]
    assert sorted(union_all) == sorted(sync_rows(objects, (q1 + q2).tuples()))
    ordered = await objects.execute(q1.union(q2).order_by(peewee.SQL("text").desc()).dicts())
    assert ordered == [{"text": "c"}, {"text": "b"}, {"text": "a"}]


# -- prefetch ---------------------------------------------------------------------


async def test_prefetch_two_levels(objects, db):
    await make_tree(objects)
    alphas = await objects.prefetch(
        TestModelAlpha.select().order_by(TestModelAlpha.text),
        TestModelBeta.select().order_by(TestModelBeta.text),
        TestModelGamma.select().order_by(TestModelGamma.text),
    )
    db.allow_sync = False  # everything is loaded already
    tree = [(a.text, [(b.text, [g.text for g in b.gammas]) for b in a.betas]) for a in alphas]
    assert tree == [
        ("alpha1", [("beta1", ["gamma1", "gamma2"]), ("beta2", ["gamma3"])]),
        ("alpha2", [("beta3", ["gamma4"])]),
    ]
    assert alphas[0].betas[0].alpha is alphas[0]
    db.allow_sync = True
    with objects.allow_sync():
        expected = peewee.prefetch(
            TestModelAlpha.select().order_by(TestModelAlpha.text),
            TestModelBeta.select().order_by(TestModelBeta.text),
            TestModelGamma.select().order_by(TestModelGamma.text),
        )
        expected_tree = [(a.text, [(b.text, [g.text for g in b.gammas]) for b in a.betas]) for a in expected]
    assert tree == expected_tree


async def test_prefetch_without_subqueries_and_with_empty_backrefs(objects, db):
    lonely = await objects.create(TestModelAlpha, text="lonely")
    rows = await objects.prefetch(TestModelAlpha.select())
    assert [r.id for r in rows] == [lonely.id]
    rows = await objects.prefetch(TestModelAlpha.select(), TestModelBeta.select())
    db.allow_sync = False
    assert rows[0].betas == []


# -- count and scalar -----------------------------------------------------------


async def test_count(objects):
    await make_texts(objects, "a", "b", "c", "d", "e")
    assert await objects.count(TestModel.select()) == 5
    assert await objects.count(TestModel.select().where(TestModel.text > "b")) == 3
    limited = TestModel.select().order_by(TestModel.id).limit(2)
    assert await objects.count(limited) == 2
    assert await objects.count(limited, clear_limit=True) == 5
    assert await objects.count(TestModel.select().limit(3).offset(4)) == 1
    with objects.allow_sync():
        assert limited.count() == 2
        assert limited.count(clear_limit=True) == 5
    assert await objects.count(TestModel.select().where(TestModel.text == "none")) == 0
    grouped = TestModel.select(TestModel.data, peewee.fn.COUNT(TestModel.id)).group_by(TestModel.data)
    assert await objects.count(grouped) == 5


async def test_count_of_a_join_selecting_both_models(objects):
    # Both models have an `id` column: counted as selected, the derived table
    # would have two columns of that name, which MySQL refuses.
    alpha = await objects.create(TestModelAlpha, text="a")
    for text in ("b1", "b2"):
        await objects.create(TestModelBeta, alpha=alpha, text=text)
    joined = TestModelBeta.select(TestModelBeta, TestModelAlpha).join(TestModelAlpha)
    assert await objects.count(joined) == 2
    assert await objects.count(joined.where(TestModelAlpha.text == "none")) == 0


async def test_scalar(objects):
    made = await make_texts(objects, "a", "b", "c")
    assert await objects.scalar(TestModel.select(peewee.fn.MAX(TestModel.id))) == made[-1].id
    assert await objects.scalar(TestModel.select(peewee.fn.COUNT(TestModel.id))) == 3
    both = TestModel.select(peewee.fn.COUNT(TestModel.id), peewee.fn.MIN(TestModel.text))
    assert await objects.scalar(both, as_tuple=True) == (3, "a")
    with objects.allow_sync():
        assert both.scalar(as_tuple=True) == (3, "a")
    assert await objects.scalar(TestModel.select(TestModel.text).where(TestModel.text == "none")) is None
    assert await objects.scalar(TestModel.select(peewee.fn.MAX(TestModel.id)).where(TestModel.id < 0)) is None


# -- transactions through the Manager ---------------------------------------------


async def test_atomic_commits_and_rolls_back(objects):
    async with objects.atomic():
        await objects.create(TestModel, text="kept")
    with pytest.raises(RuntimeError):
        async with objects.atomic():
            await objects.create(TestModel, text="dropped")
            raise RuntimeError("roll back")
    assert await texts_of(objects, TestModel) == ["kept"]


async def test_transaction_and_savepoint(objects):
    async with objects.transaction():
        await objects.create(TestModel, text="outer")
        with pytest.raises(RuntimeError):
            async with objects.savepoint():
                await objects.create(TestModel, text="inner")
                raise RuntimeError("roll back to savepoint")
        async with objects.savepoint():
            await objects.create(TestModel, text="inner kept")
    assert await texts_of(objects, TestModel) == ["inner kept", "outer"]
    with pytest.raises(peewee_async.TransactionError):
        async with objects.savepoint():
            pass


# -- connect / close / allow_sync ----------------------------------------------------


async def test_connect_and_close(objects):
    assert not objects.is_connected
    await objects.connect()
    assert objects.is_connected
    await objects.connect()  # a second connect is harmless
    assert objects.is_connected
    await objects.close()
    assert not objects.is_connected
    await objects.close()  # and so is a second close
    await objects.create(TestModel, text="reopened")  # a query opens it again
    assert objects.is_connected
    assert await texts_of(objects, TestModel) == ["reopened"]


async def test_allow_sync_context(objects, db):
    await make_texts(objects, "a")
    db.allow_sync = False
    with pytest.raises(AssertionError):
        TestModel.select().count()
    with objects.allow_sync():
        assert TestModel.select().count() == 1
        assert db.is_closed() is False
    assert db.is_closed()  # the sync connection was closed on the way out
    assert db.allow_sync is False
    with pytest.raises(ZeroDivisionError), objects.allow_sync():
        1 / 0  # noqa: B018
    assert db.allow_sync is False
    with pytest.raises(peewee_async.SyncQueryError):
        TestModel.select().count()


# -- errors --------------------------------------------------------------------


async def test_integrity_error_on_duplicate_and_pool_is_fine(objects, db):
    await objects.create(TestModel, text="dup")
    for _ in range(3):
        with pytest.raises(peewee.IntegrityError):
            await objects.create(TestModel, text="dup")
    with pytest.raises(peewee.IntegrityError):
        async with objects.atomic():
            await objects.create(TestModel, text="in transaction")
            await objects.create(TestModel, text="dup")
    pool = db.pool
    assert pool is not None
    await pool.settle()
    assert pool.used == 0
    assert not db.in_transaction_async()
    # every connection still works
    results = await asyncio.gather(*(objects.count(TestModel.select()) for _ in range(8)))
    assert results == [1] * 8
    created = await objects.create(TestModel, text="after")
    assert (await objects.get(TestModel, id=created.id)).text == "after"
    assert await texts_of(objects, TestModel) == ["after", "dup"]


async def test_manager_without_database_raises_clear_error():
    with pytest.raises(peewee.ImproperlyConfigured, match=r"Manager needs a database"):
        peewee_async.Manager()
    with pytest.raises(peewee.ImproperlyConfigured, match=r"sync peewee database"):
        peewee_async.Manager(peewee.SqliteDatabase(":memory:"))


async def test_manager_subclass_with_class_attribute_database(db):
    class MyManager(peewee_async.Manager):
        database = db

    manager = MyManager()
    assert manager.database is db
    created = await manager.create(TestModel, text="from subclass")
    assert (await manager.get(TestModel, id=created.id)).text == "from subclass"


def other_family_database(backend: str) -> peewee_async.AsyncDatabase:
    """A database of another family than ``backend``'s (never connected)."""
    if backend == "sqlite":
        return peewee_async.PostgresqlDatabase("elsewhere")
    return peewee_async.SqliteDatabase(":memory:")


async def test_model_bound_to_another_database_runs_on_the_managers_of_its_family(objects, backend):
    """As in 0.x: one set of models, a Manager per database of the same kind."""
    other_db = make_database(backend)

    class Mirrored(peewee.Model):
        text = peewee.CharField(max_length=100, unique=True)
        data = peewee.TextField(default="")

        class Meta:
            database = other_db
            table_name = TestModel._meta.table_name

    made = await objects.create(Mirrored, text="x")
    assert (await objects.get(Mirrored, id=made.id)).text == "x"
    assert (await objects.get(TestModel, id=made.id)).text == "x"  # the Manager's database has it
    async with objects.atomic():
        await objects.update(made)
        assert await objects.count(Mirrored.select()) == 1
    assert len(await objects.execute(Mirrored.select())) == 1
    assert await objects.delete(made) == 1
    assert not other_db.is_connected  # nothing was sent to the model's own database


async def test_model_bound_to_a_database_of_another_family_raises_wrong_database(objects, backend):
    other_db = other_family_database(backend)

    class Elsewhere(peewee.Model):
        text = peewee.CharField()

        class Meta:
            database = other_db
            table_name = "elsewhere"

    calls = [
        lambda: objects.get(Elsewhere, id=1),
        lambda: objects.create(Elsewhere, text="x"),
        lambda: objects.execute(Elsewhere.select()),
        lambda: objects.execute(Elsewhere.insert(text="x")),
        lambda: objects.count(Elsewhere.select()),
        lambda: objects.scalar(Elsewhere.select(peewee.fn.COUNT(Elsewhere.id))),
        lambda: objects.get_or_create(Elsewhere, text="x"),
        lambda: objects.delete(Elsewhere(id=1, text="x")),
        lambda: objects.update(Elsewhere(id=1, text="x")),
        lambda: objects.prefetch(Elsewhere.select()),
    ]
    for call in calls:
        with pytest.raises(peewee_async.WrongDatabaseError, match="not to this manager's") as excinfo:
            await call()
        assert isinstance(excinfo.value, peewee.InterfaceError)
    assert not other_db.is_connected  # nothing was sent to the other database

    class SyncBound(peewee.Model):
        text = peewee.CharField()

        class Meta:
            database = peewee.SqliteDatabase(":memory:")

    with pytest.raises(peewee_async.WrongDatabaseError):
        await objects.execute(SyncBound.select())


# -- more ----------------------------------------------------------------------------


async def test_create_or_get_and_get_or_create_inside_a_transaction(objects):
    await objects.create(TestModel, text="existing", data="old")
    async with objects.atomic():
        obj, created = await objects.create_or_get(TestModel, text="existing", data="new")
        assert (created, obj.data) == (False, "old")
        # the failed insert is rolled back to a savepoint: the transaction goes on
        await objects.create(TestModel, text="after create_or_get")
        obj, created = await objects.get_or_create(TestModel, text="existing")
        assert created is False
        obj, created = await objects.get_or_create(TestModel, text="made inside")
        assert created is True
    assert await texts_of(objects, TestModel) == ["after create_or_get", "existing", "made inside"]


async def test_manager_runs_models_bound_to_no_database(objects, db):
    class Loose(peewee.Model):
        text = peewee.CharField()

        class Meta:
            table_name = "manager_loose"

    with db.bind_ctx([Loose]), objects.allow_sync():
        db.create_tables([Loose])
    try:
        assert Loose._meta.database is None
        created = await objects.create(Loose, text="loose")
        assert (await objects.get(Loose, id=created.id)).text == "loose"
        created.text = "changed"
        assert await objects.update(created) == 1
        assert await objects.execute(Loose.select(Loose.text).tuples()) == [("changed",)]
        assert await objects.count(Loose.select()) == 1
        assert await objects.delete(created) == 1
        assert await objects.scalar(Loose.select(peewee.fn.COUNT(Loose.id))) == 0
    finally:
        with db.bind_ctx([Loose]), objects.allow_sync():
            db.drop_tables([Loose])


async def test_prefetch_with_model_classes(objects):
    await make_tree(objects)
    alphas = await objects.prefetch(
        TestModelAlpha.select().order_by(TestModelAlpha.id), TestModelBeta, TestModelGamma
    )
    assert sorted(
        (a.text, sorted((b.text, sorted(g.text for g in b.gammas)) for b in a.betas)) for a in alphas
    ) == [
        ("alpha1", [("beta1", ["gamma1", "gamma2"]), ("beta2", ["gamma3"])]),
        ("alpha2", [("beta3", ["gamma4"])]),
    ]


async def test_count_distinct_matches_sync(objects):
    for text, data in [("a", "x"), ("b", "x"), ("c", "y")]:
        await objects.create(TestModel, text=text, data=data)
    query = TestModel.select(TestModel.data).distinct()
    assert await objects.count(query) == 2
    with objects.allow_sync():
        assert query.count() == 2


async def test_get_with_dicts_query(objects):
    (obj,) = await make_texts(objects, "a")
    got = await objects.get(TestModel.select(TestModel.id, TestModel.text).dicts(), text="a")
    assert got == {"id": obj.id, "text": "a"}


async def test_update_only_save_dirty(objects, bind_models):
    class Dirty(peewee.Model):
        a = peewee.CharField()
        b = peewee.CharField()

        class Meta:
            only_save_dirty = True
            table_name = "manager_dirty"

    bind_models(Dirty)
    obj = await objects.create(Dirty, a="a", b="b")
    assert await objects.update(obj) == 0  # nothing changed, nothing written
    await objects.execute(Dirty.update(b="changed elsewhere"))
    obj.a = "A"
    assert await objects.update(obj) == 1
    assert await objects.execute(Dirty.select(Dirty.a, Dirty.b).tuples()) == [("A", "changed elsewhere")]


async def test_count_compound_select(objects):
    await make_texts(objects, "a", "b", "c", "d")
    q1 = TestModel.select(TestModel.text).where(TestModel.text.in_(["a", "b"]))
    q2 = TestModel.select(TestModel.text).where(TestModel.text.in_(["b", "c"]))
    assert await objects.count(q1 | q2) == 3
    assert await objects.count(q1 + q2) == 4
    with objects.allow_sync():
        assert (q1 | q2).count() == 3


async def test_get_or_create_reraises_integrity_error_when_nothing_matches(objects):
    await objects.create(TestModel, text="taken", data="first")
    with pytest.raises(peewee.IntegrityError):
        await objects.get_or_create(TestModel, data="other", defaults={"text": "taken"})
    async with objects.atomic():
        with pytest.raises(peewee.IntegrityError):
            await objects.get_or_create(TestModel, data="other", defaults={"text": "taken"})
        await objects.create(TestModel, text="same transaction")
    rows = await objects.execute(
        TestModel.select(TestModel.text, TestModel.data).order_by(TestModel.text).tuples()
    )
    assert rows == [("same transaction", ""), ("taken", "first")]


async def test_update_of_an_unsaved_instance_raises(objects):
    with pytest.raises(ValueError, match="no primary key"):
        await objects.update(TestModel(text="never saved"))
    assert await objects.count(TestModel.select()) == 0


async def test_prefetch_join_type_and_filtered_subquery(objects, db):
    await make_tree(objects)
    lonely = await objects.create(TestModelAlpha, text="alpha3")
    for prefetch_type in (peewee.PREFETCH_TYPE.WHERE, peewee.PREFETCH_TYPE.JOIN):
        alphas = await objects.prefetch(
            TestModelAlpha.select().order_by(TestModelAlpha.text),
            TestModelBeta.select().where(TestModelBeta.text != "beta2").order_by(TestModelBeta.text),
            prefetch_type=prefetch_type,
        )
        db.allow_sync = False
        assert [(a.text, [b.text for b in a.betas]) for a in alphas] == [
            ("alpha1", ["beta1"]),
            ("alpha2", ["beta3"]),
            ("alpha3", []),
        ]
        assert alphas[2].id == lonely.id
        db.allow_sync = True
    with pytest.raises(ValueError, match="Unrecognized"):
        await objects.prefetch(TestModelAlpha.select(), TestModelBeta.select(), bogus=True)


async def test_execute_table_queries_without_model(objects, db):
    await make_texts(objects, "a", "b")
    table = peewee.Table(TestModel._meta.table_name, ("id", "text", "data"))
    rows = await objects.execute(table.select(table.text, table.data).order_by(table.text))
    assert rows == [{"text": "a", "data": "data-a"}, {"text": "b", "data": "data-b"}]
    assert await objects.execute(table.update(data="t").where(table.text == "a")) == 1
    assert await objects.scalar(table.select(table.data).where(table.text == "a")) == "t"
    assert await objects.count(table.select()) == 2
    value = peewee.Value(41)
    if db.driver.name == "asyncpg":
        # asyncpg has the server infer each parameter's type, and `$1 + $2` gives it none.
        with pytest.raises(peewee.ProgrammingError, match="operator is not unique"):
            await objects.scalar(peewee.Select(columns=[value + 1]))
        value = value.cast("int")
    assert await objects.scalar(peewee.Select(columns=[value + 1])) == 42
    with objects.allow_sync():
        assert list(table.bind(db).select(table.text).order_by(table.text).tuples()) == [("a",), ("b",)]
