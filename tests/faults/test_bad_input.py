"""Hostile and awkward values: they travel as parameters, never as SQL, and round-trip exactly.

Values the server cannot store give a clear peewee error, leave the connection
usable and write nothing, not even part of a multi-row insert.
"""

from __future__ import annotations

from typing import Any

import peewee
import pytest

import peewee_async

from ..models import TestModel
from .cancelling import assert_no_leaks

TRICKY = [
    "O'Reilly",
    "''",
    '"double" quotes',
    "%s",
    "%%s %d",
    "%(x)s",
    "%(text)s and %(data)s",
    "$1",
    "$1::text",
    "?",
    "? ?",
    ":name",
    "back\\slash",
    "\\'",
    "trailing backslash\\",
    "-- comment",
    "/* comment */",
    "'); DELETE FROM testmodel; --",
    '"; DROP TABLE testmodel; --',
    "line\nbreak\r\ttab",
    "emoji 😀🎉 and 中文 and é",
    "\u200b zero width",
    " leading space",
    "",
]


class LongTextModel(peewee.Model):
    """MySQL's TEXT holds 64 KB; a long text needs LONGTEXT there."""

    class LongTextField(peewee.TextField):
        def ddl_datatype(self, ctx: Any) -> peewee.SQL:
            mysql = isinstance(self.model._meta.database, peewee.MySQLDatabase)
            return peewee.SQL("LONGTEXT" if mysql else "TEXT")

    body = LongTextField()


class BlobModel(peewee.Model):
    data = peewee.BlobField(null=True)
    text = peewee.TextField(null=True)


async def test_round_trip(db: peewee_async.AsyncDatabase, objects: peewee_async.Manager) -> None:
    for value in TRICKY:
        try:
            await _round_trip(db, objects, value)
        except Exception as exc:
            raise AssertionError(f"round trip of {value!r} failed: {exc!r}") from exc
    await assert_no_leaks(db)


async def _round_trip(db: peewee_async.AsyncDatabase, objects: peewee_async.Manager, value: str) -> None:
    await objects.execute(TestModel.delete())
    obj = await objects.create(TestModel, text=f"k{value}"[:100], data=value)
    # Read back by primary key and by the value itself (in WHERE).
    assert (await objects.get(TestModel, id=obj.id)).data == value
    assert (await objects.get(TestModel, TestModel.data == value)).id == obj.id
    assert [
        m.id for m in await objects.execute(TestModel.select().where(TestModel.data.in_([value, "x"])))
    ] == [obj.id]
    # Update to it, through the instance and through a query.
    obj.data = value + value
    # MySQL counts changed rows, and "" + "" changes nothing.
    unchanged = isinstance(db, peewee.MySQLDatabase) and not value
    assert await objects.update(obj) == (0 if unchanged else 1)
    assert (await objects.get(TestModel, id=obj.id)).data == value + value
    query = TestModel.update(data=value).where(TestModel.data == value + value)
    assert await objects.execute(query) == (0 if unchanged else 1)
    # A raw query with the value as a parameter.
    param = db.param  # type: ignore[attr-defined]
    table = TestModel._meta.table_name
    raw = TestModel.raw(f"SELECT * FROM {table} WHERE data = {param} AND text = {param}", value, obj.text)
    assert [m.id for m in await objects.execute(raw)] == [obj.id]
    # Nothing else was touched: exactly one row, holding the value.
    assert [(m.id, m.data) for m in await objects.execute(TestModel.select())] == [(obj.id, value)]


async def test_all_tricky_values_in_one_insert(
    db: peewee_async.AsyncDatabase, objects: peewee_async.Manager
) -> None:
    rows = [{"text": f"t{i}", "data": value} for i, value in enumerate(TRICKY)]
    await objects.execute(TestModel.insert_many(rows))
    got = {m.text: m.data for m in await objects.execute(TestModel.select())}
    assert got == {row["text"]: row["data"] for row in rows}


async def test_one_megabyte_text(
    db: peewee_async.AsyncDatabase, objects: peewee_async.Manager, bind_models: Any
) -> None:
    bind_models(LongTextModel)
    chunk = "0123456789abcdef'%s?$1\\"
    value = (chunk * (2**20 // len(chunk) + 1))[: 2**20]
    obj = await objects.create(LongTextModel, body=value)
    got = await objects.get(LongTextModel, id=obj.id)
    assert len(got.body) == 2**20 and got.body == value
    assert await objects.count(LongTextModel.select().where(LongTextModel.body == value)) == 1
    await assert_no_leaks(db)


async def test_nul_byte_in_text(db: peewee_async.AsyncDatabase, objects: peewee_async.Manager) -> None:
    value = "before\x00after"
    if isinstance(db, peewee.PostgresqlDatabase):
        # PostgreSQL text cannot hold NUL: a peewee error naming the way out.
        with pytest.raises(peewee.DataError, match="cannot contain NUL") as info:
            await objects.create(TestModel, text="nul", data=value)
        assert "BlobField" in str(info.value)
        # Inside a transaction too, and the transaction can go on.
        async with objects.atomic():
            await objects.create(TestModel, text="fine")
            with pytest.raises(peewee.DataError):
                await objects.execute(TestModel.update(data=value))
            await objects.create(TestModel, text="fine too")
        assert sorted(m.text for m in await objects.execute(TestModel.select())) == ["fine", "fine too"]
    else:
        obj = await objects.create(TestModel, text="nul", data=value)
        assert (await objects.get(TestModel, id=obj.id)).data == value
    await assert_no_leaks(db)


async def test_nul_byte_in_a_blob(
    db: peewee_async.AsyncDatabase, objects: peewee_async.Manager, bind_models: Any
) -> None:
    bind_models(BlobModel)
    value = bytes(range(256)) * 4
    obj = await objects.create(BlobModel, data=value)
    assert bytes((await objects.get(BlobModel, id=obj.id)).data) == value
    await assert_no_leaks(db)


@pytest.mark.parametrize("value", [b"\xff\xfe not utf-8", b"\xc3\x28", "\udcff lone surrogate"])
async def test_not_utf8_given_to_a_text_field(
    db: peewee_async.AsyncDatabase, objects: peewee_async.Manager, bind_models: Any, value: Any
) -> None:
    """A clear error, or a faithful round trip: never a corrupted row or a lost connection."""
    bind_models(BlobModel)
    try:
        obj = await objects.create(BlobModel, text=value)
    except (ValueError, peewee.DataError, peewee.OperationalError) as exc:
        assert str(exc)
        assert await objects.count(BlobModel.select()) == 0
    else:
        got = (await objects.get(BlobModel, id=obj.id)).text
        assert got == (value.decode("utf-8") if isinstance(value, bytes) else value)
    await assert_no_leaks(db)


async def test_failed_multi_row_insert_writes_nothing(
    db: peewee_async.AsyncDatabase, objects: peewee_async.Manager
) -> None:
    await objects.create(TestModel, text="taken")
    rows = [{"text": "new1"}, {"text": "taken"}, {"text": "new2"}]
    with pytest.raises(peewee.IntegrityError):
        await objects.execute(TestModel.insert_many(rows))
    assert [m.text for m in await objects.execute(TestModel.select())] == ["taken"]
    # A value the server rejects in the middle of a batch: nothing of the batch either.
    rows = [{"text": "new1"}, {"text": "x" * 101}, {"text": "new2"}]
    try:
        await objects.execute(TestModel.insert_many(rows))
    except peewee.DataError:
        assert [m.text for m in await objects.execute(TestModel.select())] == ["taken"]
    else:  # SQLite does not enforce VARCHAR lengths
        assert isinstance(db, peewee.SqliteDatabase)
    await assert_no_leaks(db)


async def test_failed_write_in_a_transaction_writes_nothing(
    db: peewee_async.AsyncDatabase, objects: peewee_async.Manager
) -> None:
    await objects.create(TestModel, text="taken")
    with pytest.raises(peewee.IntegrityError):
        async with objects.atomic():
            await objects.create(TestModel, text="first")
            await objects.execute(TestModel.update(data="changed"))
            await objects.create(TestModel, text="taken")
    assert [(m.text, m.data) for m in await objects.execute(TestModel.select())] == [("taken", "")]
    await assert_no_leaks(db)
