"""A result of many rows is built with the cycle collector paused, and the collector is left as it was.

Each row's value goes through a field whose ``python_value`` notes whether the
collector is on at that moment, so the tests see what the row builders did
while they ran, on every backend and every path that builds rows: execute()
of a model select (the first time, when its shape and rows are planned, and
again), joined models, ``.dicts()``, peewee's own cursor wrapper (a
query the cache cannot key), and a stream's chunks. In
verification mode peewee reads each row again after the build, with the
collector on: the tests count the values read with it paused.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from typing import Any

import peewee
import pytest

from peewee_async.row_plans import PAUSE_COLLECTOR_ROWS

MANY = PAUSE_COLLECTOR_ROWS + 2
FEW = 5

#: Whether the collector was on, for each value read through a NotingField.
noted: list[bool] = []


class NotingField(peewee.IntegerField):
    """Notes whether the collector is on each time a value is read; -1 fails the read."""

    def python_value(self, value: Any) -> Any:
        noted.append(gc.isenabled())
        if value == -1:
            raise ValueError("a value this field refuses")
        return value


class Owner(peewee.Model):
    name = peewee.CharField(max_length=20)

    class Meta:
        table_name = "pause_owner"


class Counted(peewee.Model):
    number = NotingField()
    owner = peewee.ForeignKeyField(Owner, null=True)

    class Meta:
        table_name = "pause_counted"


@pytest.fixture
def counted(bind_models: Any) -> type[Counted]:
    bind_models(Owner, Counted)
    noted.clear()
    return Counted


@pytest.fixture
def collector_on() -> Iterator[None]:
    """The collector on during the test, as it was after."""
    was = gc.isenabled()
    gc.enable()
    try:
        yield
    finally:
        (gc.enable if was else gc.disable)()


async def fill(objects: Any, rows: int, owner: Any = None) -> None:
    await objects.execute(Counted.insert_many([{"number": n, "owner": owner} for n in range(rows)]))
    noted.clear()


@pytest.mark.usefixtures("collector_on")
@pytest.mark.parametrize("rows", [MANY, FEW])
async def test_execute_pauses_the_collector_for_many_rows_only(objects, counted, rows):
    await fill(objects, rows)
    for _ in range(2):  # its shape and rows planned, then as planned
        result = await objects.execute(Counted.select().order_by(Counted.number))
        assert [row.number for row in result] == list(range(rows))
        assert noted.count(False) == (rows if rows >= PAUSE_COLLECTOR_ROWS else 0)
        assert gc.isenabled()
        noted.clear()


@pytest.mark.usefixtures("collector_on")
async def test_joined_rows_and_dicts_are_built_with_the_collector_paused(objects, counted):
    owner = await objects.create(Owner, name="o")
    await fill(objects, MANY, owner)
    joined = await objects.execute(Counted.select(Counted, Owner).join(Owner).order_by(Counted.number))
    assert [row.owner.name for row in joined] == ["o"] * MANY
    dicts = await objects.execute(Counted.select().order_by(Counted.number).dicts())
    assert [row["number"] for row in dicts] == list(range(MANY))
    assert noted.count(False) == 2 * MANY
    assert gc.isenabled()


class Always(peewee.SQL):
    """A node class the statement cache does not know: its queries are compiled by peewee each time."""


@pytest.mark.usefixtures("collector_on")
async def test_rows_of_peewees_own_wrapper_are_built_with_the_collector_paused(objects, counted):
    await fill(objects, MANY)
    query = Counted.select(Counted.number, peewee.fn.LOWER("x").alias("x")).where(Always("1 = 1"))
    rows = await objects.execute(query.order_by(Counted.number).namedtuples())
    assert [row.number for row in rows] == list(range(MANY))
    assert noted.count(False) == MANY
    assert gc.isenabled()


@pytest.mark.usefixtures("collector_on")
async def test_stream_chunks_of_many_rows_are_built_with_the_collector_paused(objects, counted):
    await fill(objects, MANY + FEW)
    seen = []
    async with objects.iterate(Counted.select().order_by(Counted.number), chunk_size=MANY) as stream:
        async for row in stream:
            seen.append(row.number)
            assert gc.isenabled()  # the loop body runs with the collector on
    assert seen == list(range(MANY + FEW))
    # A first chunk of MANY rows, paused, then a chunk of FEW, not.
    assert noted.count(False) == MANY


@pytest.mark.usefixtures("collector_on")
async def test_a_build_that_fails_leaves_the_collector_on(objects, counted):
    await fill(objects, MANY)
    await objects.execute(Counted.update(number=-1).where(Counted.number == MANY - 1))
    for _ in range(2):
        with pytest.raises(ValueError, match="a value this field refuses"):
            await objects.execute(Counted.select().order_by(Counted.number))
        assert gc.isenabled()


@pytest.mark.usefixtures("collector_on")
async def test_a_collector_the_application_turned_off_stays_off(objects, counted):
    await fill(objects, MANY)
    gc.disable()
    result = await objects.execute(Counted.select().order_by(Counted.number))
    assert len(result) == MANY
    assert not gc.isenabled()
    assert len(noted) >= MANY and noted.count(False) == len(noted)
