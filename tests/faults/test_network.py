"""Network faults between the library and the server, injected by the proxy of :mod:`.proxy`."""

from __future__ import annotations

import asyncio
import uuid

import pytest

import peewee_async
from peewee_async import ConnectionLost, QueryTimeout

from ..models import TestModel
from .proxy import PROXIED_BACKENDS
from .server_checks import assert_recovered, fill_pool, sleep_sql, wait_running

pytestmark = pytest.mark.parametrize("backend", PROXIED_BACKENDS, indirect=True)


@pytest.fixture
def objects(faulty: peewee_async.AsyncDatabase) -> peewee_async.Manager:
    """A Manager of the database behind the proxy."""
    return peewee_async.Manager(faulty)


async def test_cut_while_idle(faulty, backend, proxy, observer):
    await fill_pool(faulty, backend, 3)
    assert proxy.open_connections == 3
    proxy.cut()
    assert (await faulty.execute_sql_async("SELECT 1")).fetchone() == (1,)
    await assert_recovered(faulty, backend, observer, [], grow_to=3)


async def test_cut_mid_query(faulty, backend, proxy, observer):
    tag = f"cut-{uuid.uuid4().hex}"
    task = asyncio.create_task(faulty.execute_sql_async(sleep_sql(backend, 0.8, tag), query_timeout=5))
    await wait_running(observer, backend, tag)
    proxy.cut()
    with pytest.raises(ConnectionLost, match="may or may not have run") as raised:
        await task
    assert faulty.describe() in str(raised.value)
    await assert_recovered(faulty, backend, observer, [], grow_to=3)


async def test_cut_inside_transaction(faulty, objects, backend, proxy, observer):
    await objects.create(TestModel, text="before")
    with pytest.raises(ConnectionLost, match="rolled the transaction back"):
        async with objects.atomic():
            await objects.create(TestModel, text="lost-1")
            proxy.cut()
            await objects.create(TestModel, text="lost-2")
    await assert_recovered(faulty, backend, observer, ["before"], grow_to=3)


async def test_stall_mid_query(faulty, backend, proxy, observer):
    await fill_pool(faulty, backend, 2)
    tag = f"stall-{uuid.uuid4().hex}"
    task = asyncio.create_task(faulty.execute_sql_async(sleep_sql(backend, 0.5, tag)))
    await wait_running(observer, backend, tag)
    proxy.stall()
    with pytest.raises(QueryTimeout, match=r"did not answer.*\(is the network down\?\)") as raised:
        await task
    assert "query_timeout=1s" in str(raised.value) and faulty.describe() in str(raised.value)
    assert faulty.pool.used == 0
    proxy.restore()
    await assert_recovered(faulty, backend, observer, [], grow_to=3)


async def test_stall_before_the_statement_is_sent(faulty, objects, backend, proxy, observer):
    await objects.create(TestModel, text="before")
    proxy.stall()
    with pytest.raises(QueryTimeout, match="did not answer"):
        await objects.count(TestModel.select())
    proxy.restore()
    await assert_recovered(faulty, backend, observer, ["before"], grow_to=3)


async def test_stall_inside_transaction(faulty, objects, backend, proxy, observer):
    await objects.create(TestModel, text="before")
    with pytest.raises(ConnectionLost, match="was lost earlier"):
        async with objects.atomic():
            await objects.create(TestModel, text="lost-1")
            proxy.stall()
            with pytest.raises(QueryTimeout, match="did not answer"):
                await objects.create(TestModel, text="lost-2")
            # The block does not go on, neither on the cut-off connection nor on another.
            await objects.create(TestModel, text="lost-3")
    assert not faulty.in_transaction_async()
    proxy.restore()
    # The stalled bytes (the second INSERT) reach the server once the network
    # is back, followed by the end of the stream: the server rolls back.
    await assert_recovered(faulty, backend, observer, ["before"], grow_to=3)
