"""The compiled shapes and the direct row builder give exactly what peewee gives.

Each fast path (``get``, ``create``, ``update``, ``delete``, ``count`` of a
model, and model rows of a plain select, executed or streamed) is compared
with peewee's own path: sync peewee inside ``objects.allow_sync()``, and the
generic async path (a ``.objects()`` select goes through peewee's own cursor
wrapper). The SQL and parameters each path sends are compared too, read from
the ``peewee`` logger. Then the cases where a cached statement must not be
reused: fields added and removed, another table name or schema, another
database, ``init()``.
"""

from __future__ import annotations

import contextlib
import datetime
import decimal
import logging
import re
import uuid
from collections.abc import Iterator
from typing import Any

import peewee
import pytest

import peewee_async
from peewee_async import shapes

from .conftest import BACKENDS, make_database, server_settings
from .models import CompositeKeyModel, NaturalKeyModel, UUIDTestModel


class CommaListField(peewee.TextField):
    """Its own db_value and python_value: a list stored as text."""

    def db_value(self, value: Any) -> Any:
        return None if value is None else ",".join(value)

    def python_value(self, value: Any) -> Any:
        return None if value is None else [part for part in value.split(",") if part]


class UpperField(peewee.CharField):
    """Its own adapt(): every value read or written goes through it."""

    def adapt(self, value: Any) -> Any:
        return value.upper() if isinstance(value, str) else value


class LowerSQLField(peewee.CharField):
    """A db_value that is SQL, not a value: peewee writes LOWER(%s)."""

    def db_value(self, value: Any) -> Any:
        return None if value is None else peewee.fn.LOWER(value)


class Kind(peewee.Model):
    name = peewee.CharField(max_length=20)

    class Meta:
        table_name = "fast_kind"


class Every(peewee.Model):
    char = peewee.CharField(max_length=50)
    text = peewee.TextField(default="")
    integer = peewee.IntegerField(default=0)
    big = peewee.BigIntegerField(null=True)
    small = peewee.SmallIntegerField(null=True)
    real = peewee.FloatField(null=True)
    double = peewee.DoubleField(null=True)
    amount = peewee.DecimalField(max_digits=10, decimal_places=3, null=True)
    flag = peewee.BooleanField(default=False)
    moment = peewee.DateTimeField(default=datetime.datetime.now)
    day = peewee.DateField(null=True)
    clock = peewee.TimeField(null=True)
    uid = peewee.UUIDField(null=True)
    blob = peewee.BlobField(null=True)
    kind = peewee.ForeignKeyField(Kind, null=True, backref="everys")
    renamed = peewee.IntegerField(column_name="other_name", default=7)
    tags = CommaListField(default=list)
    shout = UpperField(max_length=20, null=True)

    class Meta:
        table_name = "fast_every"


class Lowered(peewee.Model):
    name = LowerSQLField(max_length=20)

    class Meta:
        table_name = "fast_lowered"


class CamelCaseThing(peewee.Model):
    label = peewee.CharField(max_length=20)

    class Meta:
        legacy_table_names = False  # table camel_case_thing


class OnlyDirty(peewee.Model):
    first = peewee.IntegerField(default=0)
    second = peewee.IntegerField(default=0)

    class Meta:
        table_name = "fast_only_dirty"
        only_save_dirty = True


class Spare(peewee.Model):
    """Same columns as OnlyDirty, another table: for table-name changes."""

    first = peewee.IntegerField(default=0)
    second = peewee.IntegerField(default=0)

    class Meta:
        table_name = "fast_spare"


class Schemed(peewee.Model):
    label = peewee.CharField(max_length=20)

    class Meta:
        table_name = "fast_schemed"


class Growing(peewee.Model):
    label = peewee.CharField(max_length=20)

    class Meta:
        table_name = "fast_growing"


class SoftDeleted(peewee.Model):
    """Overrides select(): get() must honour it."""

    label = peewee.CharField(max_length=20)
    deleted = peewee.BooleanField(default=False)

    @classmethod
    def select(cls, *fields: Any) -> Any:
        return super().select(*fields).where(cls.deleted == False)  # noqa: E712


class Awkward(peewee.Model):
    """Field names no Python variable can have: the row builder writes code for each shape.

    peewee's own row machinery reads the second one into an attribute ``it``:
    its rows go peewee's way.
    """

    vars()["from"] = peewee.CharField(max_length=20)
    vars()["it's \\ {x}"] = peewee.IntegerField(column_name="its", null=True)

    class Meta:
        table_name = "fast_awkward"


class Initialised(peewee.Model):
    """Overrides __init__: rows must be made through it."""

    label = peewee.CharField(max_length=20)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.seen = True


FAST_MODELS = [
    Kind,
    Every,
    Lowered,
    CamelCaseThing,
    OnlyDirty,
    Spare,
    Schemed,
    Growing,
    SoftDeleted,
    Awkward,
    Initialised,
]


@pytest.fixture
def models(backend: str, db: peewee_async.AsyncDatabase, bind_models: Any) -> None:
    """FAST_MODELS bound to ``db``, their tables empty."""
    bind_models(*FAST_MODELS)


def sync(objects: peewee_async.Manager, fn: Any) -> Any:
    with objects.allow_sync():
        return fn()


def state(instance: Any) -> tuple[Any, ...]:
    """Everything of an instance that peewee's row machinery sets, with value types."""
    data = instance.__data__
    return (
        type(instance),
        list(data),  # key order too
        data,
        {name: type(value) for name, value in data.items()},
        instance._dirty,
        instance.__rel__,
        sorted(vars(instance)),
        instance._pk,
    )


def comparable(param: Any) -> Any:
    """A parameter as a value that compares by content (psycopg2 and psycopg 3 wrap bytes in Binary)."""
    param = getattr(param, "adapted", param)  # psycopg2's wrappers
    if type(param).__module__.startswith("psycopg."):
        param = getattr(param, "obj", param)  # psycopg 3's
    return bytes(param) if isinstance(param, memoryview) else param


@contextlib.contextmanager
def statements() -> Iterator[list[tuple[str, list[Any]]]]:
    """The (sql, params) of each statement sent meanwhile, sync or async, as peewee logs them."""
    sent: list[tuple[str, list[Any]]] = []

    class Handler(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if isinstance(record.msg, tuple):
                sql, params = record.msg
                # In peewee's parameter style, whatever the driver's ($1 for asyncpg).
                sql = re.sub(r"\$\d+", "%s", sql)
                sent.append((sql, [comparable(param) for param in params or ()]))

    logger = logging.getLogger("peewee")
    handler = Handler(logging.DEBUG)
    previous = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    try:
        yield sent
    finally:
        logger.removeHandler(handler)
        logger.setLevel(previous)


@pytest.fixture
def every_values(backend: str) -> Any:
    """``every_values(n, kind=None)``: values for every field of Every, different for each n.

    No bytes on MySQL: aiomysql 0.3 cannot escape bytes parameters with PyMySQL 1.2.
    """

    def make(n: int, kind: Any = None) -> dict[str, Any]:
        values = _every_values(n, kind)
        if backend.startswith("mysql"):
            values["blob"] = None
        return values

    return make


def _every_values(n: int, kind: Any) -> dict[str, Any]:
    return {
        "char": f"char {n}",
        "text": f"text {n}" * n,
        "integer": n,
        "big": 2**40 + n,
        "small": n % 100,
        "real": n + 0.5,
        "double": n / 3,
        "amount": decimal.Decimal(f"{n}.125"),
        "flag": bool(n % 2),
        "moment": datetime.datetime(2024, 1, 2, 3, 4, n % 60),  # MySQL DATETIME keeps no fraction
        "day": datetime.date(2024, 2, n % 28 + 1),
        "clock": datetime.time(1, 2, n % 60),
        "uid": uuid.UUID(int=n),
        "blob": bytes([n % 256, 0, 255]),
        "kind": kind,
        "renamed": -n,
        "tags": [f"t{n}", "x"],
        "shout": f"loud {n}",
    }


# -- get ---------------------------------------------------------------------


async def test_get_matches_sync_peewee_for_every_field_type(objects, models, every_values):
    kind = await objects.create(Kind, name="k")
    created = [await objects.create(Every, **every_values(n, kind if n % 2 else None)) for n in range(1, 4)]
    created.append(await objects.create(Every, char="defaults only", moment=datetime.datetime(2020, 1, 1)))
    for row in created:
        with statements() as sent_fast:
            fast = await objects.get(Every, id=row.id)
        with statements() as sent_sync:
            reference = sync(objects, lambda row=row: Every.get(id=row.id))
        assert state(fast) == state(reference)
        assert sent_fast == sent_sync
        generic = (await objects.execute(Every.select().where(Every.id == row.id).objects()))[0]
        assert state(fast) == state(generic)
    assert created[0].kind_id == kind.id and (await objects.get(Every, id=created[0].id)).kind == kind


@pytest.mark.parametrize(
    "lookup",
    [
        lambda row: ((row.id,), {}),
        lambda row: ((Every.id == row.id,), {}),
        lambda row: ((Every.char == row.char, Every.integer == row.integer), {}),
        lambda row: ((), {"char": row.char}),
        lambda row: ((), {"integer": row.integer, "char": row.char}),
        lambda row: ((Every.flag == row.flag,), {"uid": row.uid, "amount": row.amount}),
        lambda row: ((), {"kind": row.kind_id, "moment": row.moment}),
        lambda row: ((), {"renamed": row.renamed, "shout": "loud 2"}),  # UpperField adapts it
        lambda row: ((), {"day": row.day, "clock": row.clock, "blob": row.blob}),
        lambda row: ((), {"kind": row.kind}),  # a model instance: generic path
        lambda row: ((), {"big": None, "char": row.char}),  # IS NULL: generic path
        lambda row: ((), {"char__ilike": row.char.upper()}),  # a lookup operator: generic path
        lambda row: ((Every.integer > 1,), {}),  # not an equality: generic path
        # Values of another type than the field's: converted as peewee converts them.
        lambda row: ((), {"integer": str(row.integer), "id": str(row.id)}),
        lambda row: ((Every.flag == 0,), {"small": float(row.small)}),
        lambda row: ((Every.integer == row.integer,), {"amount": str(row.amount)}),
    ],
)
async def test_get_lookups_send_peewees_sql(objects, models, lookup, every_values):
    kind = await objects.create(Kind, name="k")
    row = await objects.create(Every, **{**every_values(2, kind), "big": None})
    await objects.create(Every, **every_values(5))
    args, kwargs = lookup(row)
    for _ in range(2):  # compiled, then from the cache
        with statements() as sent_fast:
            fast = await objects.get(Every, *args, **kwargs)
        with statements() as sent_sync:
            reference = sync(objects, lambda: Every.get(*args, **kwargs))
        assert state(fast) == state(reference)
        assert sent_fast == sent_sync
        # Of the same types too (True == 1 and 1 == 1.0: the lists alone would not tell).
        assert [list(map(type, params)) for _, params in sent_fast] == [
            list(map(type, params)) for _, params in sent_sync
        ]


async def test_get_missing_raises_peewees_does_not_exist(objects, models):
    with pytest.raises(Every.DoesNotExist) as fast:
        await objects.get(Every, char="nobody")
    with pytest.raises(Every.DoesNotExist) as reference:
        sync(objects, lambda: Every.get(char="nobody"))
    assert str(fast.value) == str(reference.value)
    p = objects.database.param
    # The database's SQL context writes LIMIT, and an OFFSET of 0, as numbers (compiler.NumbersContext).
    assert f'WHERE ("t1"."char" = {p}) LIMIT 1 OFFSET 0' in str(fast.value).replace("`", '"')
    with pytest.raises(Every.DoesNotExist) as by_pk:
        await objects.get(Every, 12345)
    assert "Params: [12345]" in str(by_pk.value)


async def test_get_value_written_as_sql_takes_peewees_path(objects, models):
    row = await objects.create(Lowered, name="MiXed")
    with statements() as sent:
        found = await objects.get(Lowered, name="MIXED")
    assert found.id == row.id and found.name == "mixed"
    assert "LOWER(" in sent[0][0]


async def test_get_keeps_an_overridden_select(objects, models):
    gone = await objects.create(SoftDeleted, label="gone", deleted=True)
    with pytest.raises(SoftDeleted.DoesNotExist):
        await objects.get(SoftDeleted, id=gone.id)
    with pytest.raises(SoftDeleted.DoesNotExist):
        await objects.get(SoftDeleted, gone.id)


async def test_rows_of_a_model_with_its_own_init_go_through_it(objects, models):
    row = await objects.create(Initialised, label="a")
    assert (await objects.get(Initialised, id=row.id)).seen
    assert all(item.seen for item in await objects.execute(Initialised.select()))


async def test_get_with_natural_and_uuid_keys(objects):
    natural = await objects.create(NaturalKeyModel, key="k1", value=3)
    found = await objects.get(NaturalKeyModel, key="k1")
    assert state(found) == state(sync(objects, lambda: NaturalKeyModel.get(key="k1")))
    assert found.value == natural.value
    made = await objects.create(UUIDTestModel, text="u")
    found_uuid = await objects.get(UUIDTestModel, id=made.id)
    assert state(found_uuid) == state(sync(objects, lambda: UUIDTestModel.get(id=made.id)))
    assert isinstance(found_uuid.id, uuid.UUID)
    # A string primary key value is converted by the field, as peewee does.
    assert (await objects.get(UUIDTestModel, id=str(made.id))).id == made.id


# -- select rows ---------------------------------------------------------------


async def test_select_rows_match_peewees_wrapper(objects, models, every_values):
    kind = await objects.create(Kind, name="k")
    for n in range(1, 6):
        await objects.create(Every, **every_values(n, kind if n % 2 else None))
    await objects.create(Every, char="sparse", moment=datetime.datetime(2020, 1, 1))
    queries = [
        Every.select().order_by(Every.id),
        Every.select(Every.id, Every.amount, Every.clock, Every.tags).order_by(Every.id),
        Every.select(Every.shout, Every.kind, Every.flag).where(Every.integer > 1).order_by(Every.id),
        Every.select(Every.day).order_by(Every.id),
    ]
    for query in queries:
        fast = await objects.execute(query.clone())
        generic = await objects.execute(query.clone().objects())
        reference = sync(objects, lambda query=query: list(query.clone()))
        streamed = [row async for row in objects.iterate(query.clone(), chunk_size=4)]
        assert [state(row) for row in fast] == [state(row) for row in reference]
        assert [state(row) for row in fast] == [state(row) for row in generic]
        assert [state(row) for row in streamed] == [state(row) for row in reference]


@pytest.mark.parametrize("row_type", ["dicts", "tuples", "namedtuples"])
async def test_dict_and_tuple_rows_of_every_field_type_match_peewees(objects, models, every_values, row_type):
    """The row builders of dicts and tuples convert each column as peewee's wrappers do.

    They leave a value of the one type its field returns unchanged as it is,
    and convert every other (a date read back as text, an int for a bool,
    None, a custom python_value), so each field type and None are in here.
    """
    kind = await objects.create(Kind, name="k")
    for n in range(1, 4):
        await objects.create(Every, **every_values(n, kind if n % 2 else None))
    await objects.create(Every, char="sparse", moment=datetime.datetime(2020, 1, 1), shout="quiet")
    for _ in range(2):  # compiled, then from the cache
        query = getattr(Every.select().order_by(Every.id), row_type)()
        fast = await objects.execute(query)
        reference = sync(
            objects, lambda row_type=row_type: list(getattr(Every.select().order_by(Every.id), row_type)())
        )
        assert fast == reference
        assert [
            [type(value) for value in (row.values() if row_type == "dicts" else row)] for row in fast
        ] == [[type(value) for value in (row.values() if row_type == "dicts" else row)] for row in reference]


async def test_select_rows_convert_a_column_with_any_value_to_convert(objects, models):
    # shout: None stays None, "X" goes through UpperField.adapt; flag: a MySQL
    # integer goes through bool, a PostgreSQL bool is kept.
    await objects.create(Every, char="a", moment=datetime.datetime(2020, 1, 1), shout=None)
    await objects.create(Every, char="b", moment=datetime.datetime(2020, 1, 1), shout="x")
    fast = await objects.execute(Every.select(Every.shout, Every.flag).order_by(Every.id))
    assert [row.shout for row in fast] == [None, "X"]
    assert [row.flag for row in fast] == [False, False]
    assert all(type(row.flag) is bool for row in fast)


async def test_select_rows_of_fields_named_unlike_python_variables(objects, models):
    odd = "it's \\ {x}"
    assert list(Awkward._meta.fields) == ["id", "from", odd]
    assert shapes.row_builder(Awkward, [Awkward.id, Awkward._meta.fields["from"]]) is not None
    assert shapes.row_builder(Awkward, list(Awkward._meta.sorted_fields)) is None
    await objects.create(Awkward, **{"from": "a", odd: 1})
    await objects.create(Awkward, **{"from": "b"})
    for query in (Awkward.select(Awkward.id, Awkward._meta.fields["from"]), Awkward.select()):
        query = query.order_by(Awkward.id)
        fast = await objects.execute(query.clone())
        reference = sync(objects, lambda query=query: list(query.clone()))
        assert [state(row) for row in fast] == [state(row) for row in reference]
    assert [row.__data__["from"] for row in fast] == ["a", "b"]
    found = await objects.get(Awkward, **{"from": "b"})
    assert state(found) == state(reference[1])


async def test_iterating_an_executed_select_reads_its_rows_again(db, objects, models):
    for label in "abc":
        await objects.create(CamelCaseThing, label=label)
    query = CamelCaseThing.select().order_by(CamelCaseThing.id)
    rows = await objects.execute(query)
    db.allow_sync = False  # iterating must not run the query again
    assert [row.label for row in query] == ["a", "b", "c"]
    assert len(query) == 3 and query[1].label == "b"
    assert [state(row) for row in query] == [state(row) for row in rows]


# -- create, update, delete, count ------------------------------------------------


async def test_create_matches_sync_create(objects, models, every_values):
    kind = await objects.create(Kind, name="k")
    for n in (1, 2):
        values = every_values(n, kind)
        with statements() as sent_fast:
            fast = await objects.create(Every, **values)
        with statements() as sent_sync:
            reference = sync(objects, lambda values=values: Every.create(**values))
        assert fast.id != reference.id
        reference.id = fast.id
        reference._dirty.clear()
        assert state(fast) == state(reference)
        assert sent_fast == sent_sync
        stored = await objects.get(Every, id=fast.id)
        stored_reference = sync(objects, lambda r=reference: Every.get(id=r.id))
        stored_reference.id = fast.id
        stored_reference._dirty.clear()
        assert state(stored) == state(stored_reference)


@pytest.mark.parametrize(
    "model, values",
    [
        (CamelCaseThing, {"label": "camel"}),
        (NaturalKeyModel, {"key": "natural", "value": 4}),
        (UUIDTestModel, {"text": "uuid"}),
        (UUIDTestModel, {"id": uuid.UUID(int=77), "text": "given uuid"}),
        (CompositeKeyModel, {"left": 1, "right": 2, "label": "composite"}),
        (Lowered, {"name": "LowerMe"}),
        (Every, {"char": "callable default left to peewee"}),
    ],
)
async def test_create_of_other_keys_and_options(objects, models, model, values):
    pk_names = {field.name for field in model._meta.get_primary_keys()}

    def without_keys(instance: Any) -> dict[str, Any]:
        return {k: v for k, v in instance.__data__.items() if k not in pk_names and k != "moment"}

    reference = model(**values)
    with objects.allow_sync():
        reference.save(force_insert=True)
        stored_reference = model.get_by_id(reference._pk)
        reference.delete_instance()
    fast = await objects.create(model, **values)
    assert without_keys(fast) == without_keys(reference)
    assert fast._dirty == reference._dirty == set()
    assert fast._pk is not None and type(fast._pk) is type(reference._pk)
    if "id" in values:
        assert fast.id == values["id"]
    stored = sync(objects, lambda: model.get_by_id(fast._pk))
    assert without_keys(stored) == without_keys(stored_reference)


async def test_update_matches_sync_save(objects, models, every_values):
    row = await objects.create(Every, **every_values(1))
    twin = sync(objects, lambda: Every.create(**every_values(1)))
    for instance in (row, twin):
        instance.char = "changed"
        instance.amount = decimal.Decimal("9.5")
        instance.tags = ["a", "b"]
        instance.kind = None
    with statements() as sent_fast:
        assert await objects.update(row) == 1
    with statements() as sent_sync:
        assert sync(objects, twin.save) == 1
    assert row._dirty == twin._dirty == set()
    assert [params[:-1] for _, params in sent_fast] == [params[:-1] for _, params in sent_sync]
    assert [sql for sql, _ in sent_fast] == [sql for sql, _ in sent_sync]
    stored = await objects.get(Every, id=row.id)
    assert state(stored)[:-1] == state(sync(objects, lambda: Every.get(id=row.id)))[:-1]
    assert stored.tags == ["a", "b"] and stored.char == "changed"


async def test_update_only_dirty_fields(objects, models):
    row = await objects.create(OnlyDirty, first=1, second=2)
    row.second = 5
    with statements() as sent:
        assert await objects.update(row) == 1
    assert sent[0][0].count("=") == 2  # SET second = ..., WHERE id = ...
    assert sent[0][1] == [5, row.id]
    assert await objects.update(row) == 0  # nothing dirty: nothing sent
    row.first = 3
    assert await objects.update(row, only=[OnlyDirty.first]) == 1
    assert (await objects.get(OnlyDirty, id=row.id)).__data__ == {"id": row.id, "first": 3, "second": 5}


async def test_update_and_delete_with_composite_and_natural_keys(objects):
    pair = await objects.create(CompositeKeyModel, left=1, right=2, label="a")
    pair.label = "b"
    assert await objects.update(pair) == 1
    assert (await objects.get(CompositeKeyModel, left=1, right=2)).label == "b"
    assert await objects.delete(pair) == 1
    natural = await objects.create(NaturalKeyModel, key="n", value=1)
    natural.value = 2
    assert await objects.update(natural) == 1
    assert (await objects.get(NaturalKeyModel, key="n")).value == 2
    assert await objects.delete(natural) == 1
    assert await objects.count(NaturalKeyModel.select()) == 0


async def test_delete_matches_sync_delete_instance(objects, models, every_values):
    row = await objects.create(Every, **every_values(1))
    twin = sync(objects, lambda: Every.create(**every_values(2)))
    with statements() as sent_fast:
        assert await objects.delete(row) == 1
    with statements() as sent_sync:
        assert sync(objects, twin.delete_instance) == 1
    assert [sql for sql, _ in sent_fast] == [sql for sql, _ in sent_sync]
    assert await objects.delete(row) == 0
    assert await objects.count(Every.select()) == 0


async def test_count_matches_the_generic_count(objects, models, monkeypatch):
    for label in "abcd":
        await objects.create(CamelCaseThing, label=label)
    with statements() as sent_fast:
        assert await objects.count(CamelCaseThing.select()) == 4
    with monkeypatch.context() as patch:
        patch.setattr(shapes, "count_statement", lambda *args: None)
        with statements() as sent_generic:
            assert await objects.count(CamelCaseThing.select()) == 4
    assert sent_fast == sent_generic
    assert sync(objects, lambda: CamelCaseThing.select().count()) == 4
    # Anything more than the whole table is counted the generic way.
    assert await objects.count(CamelCaseThing.select().where(CamelCaseThing.label > "a")) == 3
    assert await objects.count(CamelCaseThing.select().limit(2)) == 2
    assert await objects.count(CamelCaseThing.select().limit(2), clear_limit=True) == 4
    assert await objects.count(CamelCaseThing.select(CamelCaseThing.label).distinct()) == 4
    assert await objects.count(CamelCaseThing.select().order_by(CamelCaseThing.label)) == 4
    assert await objects.count(CamelCaseThing.select().join(Kind, on=True)) == 0  # no Kind rows


# -- when a compiled statement must not be reused --------------------------------


async def test_fields_added_and_removed(db, objects, models):
    first = await objects.create(Growing, label="one")
    assert list((await objects.get(Growing, id=first.id)).__data__) == ["id", "label"]
    with objects.allow_sync():
        db.execute_sql("ALTER TABLE fast_growing ADD COLUMN extra INTEGER")
    try:
        await _with_extra_field(objects, first)
    finally:
        with objects.allow_sync():
            db.execute_sql("ALTER TABLE fast_growing DROP COLUMN extra")


async def _with_extra_field(objects: peewee_async.Manager, first: Any) -> None:
    extra = peewee.IntegerField(null=True)
    Growing._meta.add_field("extra", extra)
    try:
        made = await objects.create(Growing, label="two", extra=5)
        found = await objects.get(Growing, id=made.id)
        assert found.__data__ == {"id": made.id, "label": "two", "extra": 5}
        assert state(found) == state(sync(objects, lambda: Growing.get(id=made.id)))
        assert (await objects.execute(Growing.select().order_by(Growing.id)))[0].__data__ == {
            "id": first.id,
            "label": "one",
            "extra": None,
        }
        found.extra = 6
        assert await objects.update(found) == 1
    finally:
        Growing._meta.remove_field("extra")
        del Growing.extra
    found = await objects.get(Growing, id=made.id)
    assert found.__data__ == {"id": made.id, "label": "two"}
    assert [list(row.__data__) for row in await objects.execute(Growing.select())] == [["id", "label"]] * 2


async def test_table_name_changed(objects, models):
    await objects.create(OnlyDirty, first=1, second=1)
    await objects.create(Spare, first=2, second=2)
    mine = (await objects.execute(OnlyDirty.select()))[0]
    assert (await objects.get(OnlyDirty, id=mine.id)).first == 1
    spare = (await objects.execute(Spare.select()))[0]
    OnlyDirty._meta.set_table_name("fast_spare")
    try:
        assert (await objects.get(OnlyDirty, id=spare.id)).first == 2
        assert await objects.count(OnlyDirty.select()) == 1
        made = await objects.create(OnlyDirty, first=3, second=3)
        assert await objects.count(Spare.select()) == 2
        assert await objects.delete(made) == 1
    finally:
        OnlyDirty._meta.set_table_name("fast_only_dirty")
    assert [row.first for row in await objects.execute(OnlyDirty.select())] == [1]
    assert await objects.count(OnlyDirty.select()) == 1


async def test_schema_set(backend, objects, models):
    if backend.startswith("sqlite"):
        pytest.skip("a schema on SQLite names an attached database")
    row = await objects.create(Schemed, label="s")
    schema = "public" if BACKENDS[backend][0] == "postgres" else server_settings("mysql")["database"]
    Schemed._meta.schema = schema
    try:
        with statements() as sent:
            assert (await objects.get(Schemed, id=row.id)).label == "s"
        assert schema in sent[0][0]
        assert await objects.count(Schemed.select()) == 1
    finally:
        Schemed._meta.schema = None
    with statements() as sent:
        assert (await objects.get(Schemed, id=row.id)).label == "s"
    assert schema not in sent[0][0]


async def test_model_bound_to_another_database(backend, db, objects, models):
    row = await objects.create(Kind, name="k")
    other = make_database(backend)
    try:
        Kind.bind(other)
        # Another database of the same family: the Manager runs the query on its own.
        assert (await objects.get(Kind, id=row.id)).name == "k"
        assert not other.is_connected
        others = peewee_async.Manager(other)
        assert (await others.get(Kind, id=row.id)).name == "k"
        made = await others.create(Kind, name="other")
        assert await others.count(Kind.select()) == 2
        assert other.pool is not None and other.pool.size >= 1
    finally:
        Kind.bind(db)
        await other.close_async()
    assert (await objects.get(Kind, id=made.id)).name == "other"


async def test_model_bound_to_no_database_runs_on_the_managers(db, objects, models):
    Kind.bind(None)
    try:
        made = await objects.create(Kind, name="unbound")
        assert made.id is not None
        assert (await objects.get(Kind, id=made.id)).name == "unbound"
        with pytest.raises(peewee_async.WrongDatabaseError, match="bound to no database"):
            await peewee_async.get_object(Kind, Kind.id == made.id)
    finally:
        Kind.bind(db)


async def test_database_init_forgets_compiled_statements(db, objects, models):
    row = await objects.create(Kind, name="k")
    await objects.get(Kind, id=row.id)
    assert len(db.statement_cache)
    db.init(db.database, **db.connect_params)
    assert len(db.statement_cache) == 0
    assert (await objects.get(Kind, id=row.id)).name == "k"


async def test_the_statement_cache_prunes_the_least_recently_used(db, objects, models, every_values, caplog):
    db.statement_cache.max_size = 3
    row = await objects.create(Every, **every_values(1))
    kept = (Every, ("get", False, "char"))
    with caplog.at_level(logging.INFO, logger="peewee.async"):
        for name in ("integer", "text", "flag", "renamed"):
            assert (await objects.get(Every, char=row.char)).id == row.id  # used again: kept
            found = await objects.get(Every, **{name: getattr(row, name)})
            assert found.id == row.id
            assert len(db.statement_cache) <= 3
            assert kept in db.statement_cache
    pruned = [r for r in caplog.records if "pruning the least recently used" in r.getMessage()]
    # Four statements were pruned (insert, integer, text, flag): a line for each
    # cache-full of them, not one for each.
    assert 0 < len(pruned) < 4
    assert "statement_cache_size=3" in pruned[0].getMessage()
    db.statement_cache.clear()
    assert len(db.statement_cache) == 0
    assert (await objects.get(Every, char=row.char)).id == row.id


# The drivers that keep a cursor per connection (aiopg, psycopg).
@pytest.mark.parametrize("backend", ["postgres", "postgres-pool", "psycopg", "psycopg-pool"], indirect=True)
async def test_postgres_connection_keeps_a_cursor_only_for_small_results(backend, db, objects, models):
    await objects.execute(Kind.insert_many([{"name": f"k{n}"} for n in range(150)]))
    await objects.get(Kind, name="k1")
    kept = [c.kept for c in db.pool._free]
    assert any(cursor is not None and not cursor.closed for cursor in kept)
    assert len(await objects.execute(Kind.select())) == 150
    # A big result is not held by an idle connection until its next statement.
    assert all(c.kept is None for c in db.pool._free)
    assert (await objects.get(Kind, name="k2")).name == "k2"


async def test_update_with_an_expression_value_takes_peewees_path(objects, models):
    row = await objects.create(OnlyDirty, first=1, second=2)
    row.first = OnlyDirty.first + 10
    with statements() as sent:
        assert await objects.update(row) == 1
    assert f'"first" + {objects.database.param}' in sent[0][0].replace("`", '"')
    assert (await objects.get(OnlyDirty, id=row.id)).first == 11
