"""peewee_asyncext: the fields of ``playhouse.postgres_ext`` through the async API.

JSON, JSONB, HStore and array columns must come back from the Manager exactly as
sync peewee reads them from the same database object, and their operators (JSON
lookups, containment, HStore keys, array indexes) must run on the async
connections. Sync code in the tests runs only inside ``objects.allow_sync()``:
everything else has ``allow_sync = False``, so an async call that fell back to
the sync connection would fail.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import peewee
import playhouse.postgres_ext
import pytest
from playhouse.postgres_ext import ArrayField, BinaryJSONField, HStoreField, JSONField

import peewee_async
import peewee_asyncext

from .conftest import BACKENDS, _require_server, make_database, server_settings

EXT_BACKENDS = [
    name for name, (_, cls, _) in BACKENDS.items() if issubclass(cls, peewee_asyncext.PostgresqlExtDatabase)
]


@pytest.fixture(params=EXT_BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    """Overrides conftest's ``backend`` in this module: peewee_asyncext is PostgreSQL only.

    conftest's ``db``, ``objects`` and ``bind_models``, leak checks included, then
    run on the two ext classes instead of skipping the other four backends.
    """
    name: str = request.param
    _require_server(BACKENDS[name][0])
    return name


class ExtDocument(peewee.Model):
    name = peewee.CharField(max_length=100, unique=True)
    data = JSONField(null=True)
    meta = BinaryJSONField(null=True)
    tags = HStoreField(null=True)
    labels = ArrayField(peewee.TextField, null=True)
    matrix = ArrayField(peewee.IntegerField, dimensions=2, null=True)


class ExtJsonOnly(peewee.Model):
    name = peewee.CharField(max_length=100)
    data = JSONField(null=True)
    meta = BinaryJSONField(null=True)


class ExtHStoreOnly(peewee.Model):
    tags = HStoreField(null=True)


NESTED: dict[str, Any] = {
    "kind": "article",
    "title": "Café ☕ naïve — 日本語 🎉",
    "ключ": "значение",
    "quotes": 'He said "hi" \\ and left',
    "nested": {"level": {"deeper": [1, 2.5, None, True, False, {"k": "v"}]}},
    "list": ["a", "b", ["c", {"d": "é"}]],
    "empty": {"dict": {}, "list": []},
    "big": 12345678901234,
}
META: dict[str, Any] = {
    "owner": {"name": "Zoë", "roles": ["admin", "éditeur"]},
    "flag": True,
    "score": 4.25,
    "items": [{"sku": "A1", "qty": 2}, {"sku": "B2", "qty": 0}],
}
TAGS: dict[str, str | None] = {
    "colour": "bleu",
    "ключ": "значение ✓",
    "quote": 'a"b\\c',
    "empty": "",
    "none": None,
}
LABELS = ["ñandú", "δ ω", 'with "quote"', "comma,inside", "{braces}", "🎉"]
MATRIX = [[1, 2, 3], [4, 5, 6]]


@pytest.fixture
def objects(
    objects: peewee_async.Manager,
    db: peewee_async.AsyncDatabase,
    bind_models: Callable[..., None],
) -> Iterator[peewee_async.Manager]:
    """conftest's Manager with ExtDocument bound and created, and sync queries forbidden."""
    bind_models(ExtDocument)
    db.allow_sync = False
    try:
        yield objects
    finally:
        db.allow_sync = True


def read_sync(objects: peewee_async.Manager, build: Callable[[], peewee.BaseQuery]) -> list[Any]:
    """What sync peewee returns for the query ``build()`` on the same database object."""
    with objects.allow_sync():
        return list(build())


async def read_both(
    objects: peewee_async.Manager, build: Callable[[], peewee.BaseQuery]
) -> tuple[list[Any], list[Any]]:
    """``(async rows, sync rows)`` of one query, each built afresh."""
    return await objects.execute(build()), read_sync(objects, build)


def row_of(objects: peewee_async.Manager, pk: int) -> dict[str, Any]:
    """The row ``pk`` of ExtDocument as sync peewee reads it."""
    with objects.allow_sync():
        return dict(ExtDocument.get_by_id(pk).__data__)


async def make_documents(objects: peewee_async.Manager) -> None:
    """Three documents that the query tests tell apart."""
    await objects.create(
        ExtDocument,
        name="first",
        data=NESTED,
        meta=META,
        tags=TAGS,
        labels=LABELS,
        matrix=MATRIX,
    )
    await objects.create(
        ExtDocument,
        name="second",
        data={"kind": "note", "nested": {"level": {"deeper": []}}, "list": ["x"]},
        meta={"owner": {"name": "Ana"}, "items": [{"sku": "C3", "qty": 1}]},
        tags={"colour": "rouge", "size": "L"},
        labels=["δ ω", "δ"],
        matrix=[[7, 8], [9, 10]],
    )
    await objects.create(ExtDocument, name="empty")


# -- round trips ---------------------------------------------------------------


async def test_create_and_get_round_trip(objects: peewee_async.Manager) -> None:
    created = await objects.create(
        ExtDocument, name="doc", data=NESTED, meta=META, tags=TAGS, labels=LABELS, matrix=MATRIX
    )
    assert isinstance(created.id, int)

    fetched = await objects.get(ExtDocument, id=created.id)
    assert fetched.data == NESTED
    assert fetched.meta == META
    assert fetched.tags == TAGS
    assert fetched.labels == LABELS
    assert fetched.matrix == MATRIX
    assert dict(fetched.__data__) == row_of(objects, created.id)


async def test_null_columns_round_trip(objects: peewee_async.Manager) -> None:
    created = await objects.create(ExtDocument, name="nothing")
    fetched = await objects.get(ExtDocument, ExtDocument.name == "nothing")
    assert (fetched.data, fetched.meta, fetched.tags, fetched.labels, fetched.matrix) == (None,) * 5
    assert dict(fetched.__data__) == row_of(objects, created.id)


async def test_json_scalars_and_empty_containers(objects: peewee_async.Manager) -> None:
    values: list[Any] = ["plain string ✓", 0, -1.5, True, [], {}, [None]]
    for number, value in enumerate(values):
        await objects.create(ExtDocument, name=f"v{number}", data=value, meta=value)
    rows = await objects.execute(ExtDocument.select().order_by(ExtDocument.id))
    assert [(row.data, row.meta) for row in rows] == [(value, value) for value in values]
    with objects.allow_sync():
        sync_rows = list(ExtDocument.select().order_by(ExtDocument.id))
    assert [row.__data__ for row in rows] == [row.__data__ for row in sync_rows]


async def test_update_instance_writes_nested_changes(objects: peewee_async.Manager) -> None:
    created = await objects.create(ExtDocument, name="doc", data=NESTED, meta=META, tags=TAGS, labels=LABELS)
    doc = await objects.get(ExtDocument, id=created.id)

    doc.data["nested"]["level"]["deeper"].append({"added": "ajouté ✓"})
    doc.meta["owner"]["roles"] = []
    doc.tags = {**doc.tags, "nouveau": "ключ 2", "colour": None}
    doc.labels = [*doc.labels[1:], "ω"]
    doc.matrix = [[0]]
    assert await objects.update(doc) == 1

    fetched = await objects.get(ExtDocument, id=created.id)
    assert fetched.data["nested"]["level"]["deeper"][-1] == {"added": "ajouté ✓"}
    assert fetched.meta["owner"] == {"name": "Zoë", "roles": []}
    assert fetched.tags == {**TAGS, "nouveau": "ключ 2", "colour": None}
    assert fetched.labels == [*LABELS[1:], "ω"]
    assert fetched.matrix == [[0]]
    assert dict(fetched.__data__) == row_of(objects, created.id)


async def test_update_only_some_fields(objects: peewee_async.Manager) -> None:
    created = await objects.create(ExtDocument, name="doc", data=NESTED, meta=META)
    doc = await objects.get(ExtDocument, id=created.id)
    doc.data = {"replaced": True}
    doc.meta = {"replaced": "too"}
    assert await objects.update(doc, only=[ExtDocument.meta]) == 1

    fetched = await objects.get(ExtDocument, id=created.id)
    assert fetched.data == NESTED
    assert fetched.meta == {"replaced": "too"}


async def test_execute_update_and_insert_many(objects: peewee_async.Manager) -> None:
    await make_documents(objects)
    changed = await objects.execute(
        ExtDocument.update(data={"kind": "rewritten", "é": ["ü"]}, tags={"only": "one"}).where(
            ExtDocument.name == "second"
        )
    )
    assert changed == 1
    second = await objects.get(ExtDocument, name="second")
    assert second.data == {"kind": "rewritten", "é": ["ü"]}
    assert second.tags == {"only": "one"}

    await objects.execute(
        ExtDocument.insert_many(
            [
                {"name": "bulk-1", "data": {"n": 1}, "meta": [1, "un"], "tags": {"n": "1"}, "labels": []},
                {"name": "bulk-2", "data": [{"n": 2}], "meta": {"n": "deux"}, "tags": {}, "labels": ["2"]},
            ]
        )
    )

    def build() -> peewee.BaseQuery:
        return ExtDocument.select().order_by(ExtDocument.name).dicts()

    async_rows, sync_rows = await read_both(objects, build)
    assert async_rows == sync_rows
    bulk = {row["name"]: row for row in async_rows if row["name"].startswith("bulk")}
    assert bulk["bulk-1"]["meta"] == [1, "un"]
    assert bulk["bulk-2"]["data"] == [{"n": 2}]
    assert bulk["bulk-2"]["labels"] == ["2"]


async def test_atomic_rollback_keeps_the_old_document(objects: peewee_async.Manager) -> None:
    created = await objects.create(ExtDocument, name="doc", data=NESTED, tags=TAGS)
    with pytest.raises(RuntimeError, match="undo"):
        async with objects.atomic():
            doc = await objects.get(ExtDocument, id=created.id)
            doc.data = {"gone": True}
            doc.tags = {}
            await objects.update(doc)
            assert (await objects.get(ExtDocument, id=created.id)).data == {"gone": True}
            raise RuntimeError("undo")
    fetched = await objects.get(ExtDocument, id=created.id)
    assert (fetched.data, fetched.tags) == (NESTED, TAGS)


async def test_get_or_create_and_create_or_get_with_json(objects: peewee_async.Manager) -> None:
    doc, created = await objects.get_or_create(ExtDocument, name="goc", defaults={"meta": META, "tags": TAGS})
    assert created
    again, created_again = await objects.get_or_create(ExtDocument, name="goc", defaults={"meta": {}})
    assert not created_again
    assert again.id == doc.id
    assert (again.meta, again.tags) == (META, TAGS)

    existing, made = await objects.create_or_get(ExtDocument, name="goc", data={"ignored": 1})
    assert not made
    assert existing.id == doc.id
    assert existing.data is None


# -- JSON queries ----------------------------------------------------------------


async def test_json_key_lookups(objects: peewee_async.Manager) -> None:
    await make_documents(objects)

    def names(where: Any) -> Callable[[], peewee.BaseQuery]:
        return lambda: ExtDocument.select(ExtDocument.name).where(where).order_by(ExtDocument.name).tuples()

    cases = [
        (ExtDocument.data["kind"] == "article", [("first",)]),
        (ExtDocument.data["kind"] == "note", [("second",)]),
        (ExtDocument.data["title"] == NESTED["title"], [("first",)]),
        (ExtDocument.data["ключ"] == "значение", [("first",)]),
        (ExtDocument.meta["owner"]["name"] == "Zoë", [("first",)]),
        (ExtDocument.meta["owner"]["name"] == "Ana", [("second",)]),
        (ExtDocument.data["kind"] == "missing", []),
    ]
    by_index = ExtDocument.data["list"][0] == "x"
    if objects.database.driver.name == "asyncpg" and not hasattr(peewee, "Psycopg3Adapter"):
        # peewee 3.17 sends a path step as a parameter, which asyncpg has the
        # server type as text (a key): an array index is refused, naming it.
        with pytest.raises(peewee.DataError, match="expected str, got int"):
            await objects.execute(names(by_index)())
    else:
        cases.append((by_index, [("second",)]))
    for where, expected in cases:
        async_rows, sync_rows = await read_both(objects, names(where))
        assert async_rows == expected
        assert sync_rows == expected

    by_lookup = await objects.get(ExtDocument, ExtDocument.meta["owner"]["name"] == "Ana")
    assert by_lookup.name == "second"
    assert await objects.count(ExtDocument.select().where(ExtDocument.data["kind"].is_null(False))) == 2


async def test_json_lookups_in_the_select_list(objects: peewee_async.Manager) -> None:
    await make_documents(objects)

    owner = ExtDocument.meta.path("owner", "name")
    if objects.database.driver.name == "asyncpg" and not hasattr(peewee, "Psycopg3Adapter"):
        # peewee 3.17 sends a path as the text of an array ('{owner,name}'), which
        # asyncpg refuses for the text[] the server asks for, naming it.
        with pytest.raises(peewee.DataError, match="query argument"):
            await objects.execute(ExtDocument.select(owner))
        owner = ExtDocument.meta["owner"]["name"]

    def build() -> peewee.BaseQuery:
        return (
            ExtDocument.select(
                ExtDocument.name,
                ExtDocument.data["title"].alias("title"),
                ExtDocument.data["nested"]["level"].alias("level"),
                ExtDocument.meta["owner"]["roles"].alias("roles"),
                owner.alias("owner"),
            )
            .order_by(ExtDocument.name)
            .dicts()
        )

    async_rows, sync_rows = await read_both(objects, build)
    assert async_rows == sync_rows
    first = next(row for row in async_rows if row["name"] == "first")
    assert first["title"] == NESTED["title"]
    empty = next(row for row in async_rows if row["name"] == "empty")
    assert (empty["title"], empty["level"], empty["roles"], empty["owner"]) == (None, None, None, None)


async def test_jsonb_containment(objects: peewee_async.Manager) -> None:
    await make_documents(objects)

    def names(where: Any) -> Callable[[], peewee.BaseQuery]:
        return lambda: ExtDocument.select(ExtDocument.name).where(where).order_by(ExtDocument.name).tuples()

    cases = [
        (ExtDocument.meta.contains({"owner": {"name": "Zoë"}}), [("first",)]),
        (ExtDocument.meta.contains({"owner": {"roles": ["éditeur"]}}), [("first",)]),
        (ExtDocument.meta.contains({"items": [{"sku": "C3"}]}), [("second",)]),
        (ExtDocument.meta.contains({"owner": {}}), [("first",), ("second",)]),
        (ExtDocument.meta.contains({"owner": {"name": "nobody"}}), []),
        (ExtDocument.meta.has_key("flag"), [("first",)]),
        (ExtDocument.meta.contains_any("flag", "items"), [("first",), ("second",)]),
        (ExtDocument.meta.contains_all("flag", "items"), [("first",)]),
    ]
    for where, expected in cases:
        async_rows, sync_rows = await read_both(objects, names(where))
        assert async_rows == expected
        assert sync_rows == expected

    counted = await objects.count(ExtDocument.select().where(ExtDocument.meta.contains({"owner": {}})))
    assert counted == 2


# -- HStore and arrays -------------------------------------------------------------


async def test_hstore_contains_and_keys(objects: peewee_async.Manager) -> None:
    await make_documents(objects)

    def names(where: Any) -> Callable[[], peewee.BaseQuery]:
        return lambda: ExtDocument.select(ExtDocument.name).where(where).order_by(ExtDocument.name).tuples()

    cases = [
        (ExtDocument.tags.contains("colour"), [("first",), ("second",)]),
        (ExtDocument.tags.contains("ключ"), [("first",)]),
        (ExtDocument.tags.contains({"colour": "rouge"}), [("second",)]),
        (ExtDocument.tags.contains({"ключ": "значение ✓", "empty": ""}), [("first",)]),
        (ExtDocument.tags.contains(["colour", "size"]), [("second",)]),
        (ExtDocument.tags.contains_any("size", "quote"), [("first",), ("second",)]),
        (ExtDocument.tags["colour"] == "bleu", [("first",)]),
    ]
    for where, expected in cases:
        async_rows, sync_rows = await read_both(objects, names(where))
        assert async_rows == expected
        assert sync_rows == expected

    def keys() -> peewee.BaseQuery:
        return (
            ExtDocument.select(
                ExtDocument.name, ExtDocument.tags.keys().alias("keys"), ExtDocument.tags["quote"]
            )
            .where(ExtDocument.tags.is_null(False))
            .order_by(ExtDocument.name)
            .tuples()
        )

    async_rows, sync_rows = await read_both(objects, keys)
    assert async_rows == sync_rows
    assert [(name, sorted(found), quote) for name, found, quote in async_rows] == [
        ("first", sorted(TAGS), TAGS["quote"]),
        ("second", ["colour", "size"], None),
    ]


async def test_hstore_update_and_delete_expressions(objects: peewee_async.Manager) -> None:
    await make_documents(objects)
    await objects.execute(
        ExtDocument.update(tags=ExtDocument.tags.update(size="XL", nouveau="ω")).where(
            ExtDocument.name == "second"
        )
    )
    without = ExtDocument.tags.delete("colour", "ключ")
    delete = ExtDocument.update(tags=without).where(ExtDocument.name == "first")
    if objects.database.driver.name == "asyncpg" and not hasattr(peewee, "Psycopg3Adapter"):
        # peewee 3.17 sends the keys as one untyped parameter, which the server
        # takes for a single key: asyncpg refuses the list for it, naming it.
        with pytest.raises(peewee.DataError, match="query argument"):
            await objects.execute(delete)
        deleted: tuple[str, ...] = ()
    else:
        await objects.execute(delete)
        deleted = ("colour", "ключ")
    first = await objects.get(ExtDocument, name="first")
    second = await objects.get(ExtDocument, name="second")
    assert first.tags == {key: value for key, value in TAGS.items() if key not in deleted}
    assert second.tags == {"colour": "rouge", "size": "XL", "nouveau": "ω"}
    assert dict(first.__data__) == row_of(objects, first.id)


async def test_array_queries(objects: peewee_async.Manager) -> None:
    await make_documents(objects)

    def names(where: Any) -> Callable[[], peewee.BaseQuery]:
        return lambda: ExtDocument.select(ExtDocument.name).where(where).order_by(ExtDocument.name).tuples()

    cases = [
        (ExtDocument.labels.contains("ñandú"), [("first",)]),
        (ExtDocument.labels.contains("δ ω"), [("first",), ("second",)]),
        (ExtDocument.labels.contains("ñandú", "δ"), []),
        (ExtDocument.labels.contains_any("ñandú", "δ"), [("first",), ("second",)]),
        (ExtDocument.labels.contains('with "quote"', "{braces}"), [("first",)]),
    ]
    for where, expected in cases:
        async_rows, sync_rows = await read_both(objects, names(where))
        assert async_rows == expected
        assert sync_rows == expected

    def items() -> peewee.BaseQuery:
        return (
            ExtDocument.select(ExtDocument.labels[0], ExtDocument.labels[0:2], ExtDocument.matrix[1])
            .where(ExtDocument.labels.is_null(False))
            .order_by(ExtDocument.name)
            .tuples()
        )

    async_rows, sync_rows = await read_both(objects, items)
    assert async_rows == sync_rows
    assert async_rows[0][0] == "ñandú"
    assert async_rows[1][0] == "δ ω"


# -- the register_hstore option ------------------------------------------------------


@contextlib.asynccontextmanager
async def own_database(
    database: peewee_async.AsyncDatabase, models: list[type[peewee.Model]]
) -> AsyncIterator[peewee_async.Manager]:
    """A Manager on ``database`` with ``models`` bound and created; checks for leaks and drops them."""
    with database.bind_ctx(models):
        database.create_tables(models)
        database.close()
        database.allow_sync = False
        try:
            yield peewee_async.Manager(database)
            pool = database.pool
            assert pool is not None
            await pool.settle()
            assert pool.used == 0, f"{pool.used} connection(s) not given back to the pool"
        finally:
            database.allow_sync = True
            await database.close_async()
            database.drop_tables(models)
            database.close()


def test_register_hstore_is_on_by_default() -> None:
    for cls in (peewee_asyncext.PostgresqlExtDatabase, peewee_asyncext.PooledPostgresqlExtDatabase):
        assert cls("test").register_hstore is True
        assert cls("test", register_hstore=False).register_hstore is False
    # peewee's own class defaults to False; the async classes keep 0.x's default.
    assert playhouse.postgres_ext.PostgresqlExtDatabase("test")._register_hstore is False


async def test_default_database_decodes_hstore(backend: str) -> None:
    _, cls, extra = BACKENDS[backend]
    settings = server_settings("postgres")
    name = settings.pop("database")
    pool_args = {key: value for key, value in extra.items() if key != "register_hstore"}
    database = cls(name, **settings, **pool_args)
    assert database.register_hstore is True
    async with own_database(database, [ExtHStoreOnly]) as objects:
        created = await objects.create(ExtHStoreOnly, tags=TAGS)
        fetched = await objects.get(ExtHStoreOnly, id=created.id)
        assert fetched.tags == TAGS
        with objects.allow_sync():
            assert ExtHStoreOnly.get_by_id(created.id).tags == TAGS


async def test_register_hstore_false_still_handles_json(backend: str) -> None:
    database = make_database(backend, register_hstore=False)
    assert database.register_hstore is False
    async with own_database(database, [ExtJsonOnly]) as objects:
        created = await objects.create(ExtJsonOnly, name="json", data=NESTED, meta=META)
        fetched = await objects.get(ExtJsonOnly, ExtJsonOnly.meta["owner"]["name"] == "Zoë")
        assert fetched.id == created.id
        assert (fetched.data, fetched.meta) == (NESTED, META)

        fetched.meta = {**META, "flag": False}
        await objects.update(fetched)
        contained = await objects.execute(
            ExtJsonOnly.select().where(ExtJsonOnly.meta.contains({"flag": False}))
        )
        assert [row.id for row in contained] == [created.id]
        with objects.allow_sync():
            assert ExtJsonOnly.get_by_id(created.id).__data__ == contained[0].__data__
