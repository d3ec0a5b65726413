"""The three contenders on each backend, each running the same workloads.

* :class:`AsyncSide`: peewee-async, through a :class:`~peewee_async.Manager`.
* :class:`RawSide`: the asyncio driver alone (aiopg, aiomysql, aiosqlite,
  asyncpg, psycopg 3, asyncmy) with hand-written SQL, a pool of the same size,
  each row read turned into a dict.
* :class:`SyncSide`: plain sync peewee on its usual DB-API driver (psycopg2,
  PyMySQL, sqlite3), one connection.

The backends whose driver is not the first of its server (asyncpg and psycopg
3 on PostgreSQL, asyncmy on MySQL) have a fourth contender, the raw side of
the first one (raw aiopg, raw aiomysql; see :data:`REFERENCES`): what a user
moving from aiopg to peewee-async on asyncpg compares with.

A workload method does ``n`` operations (reads ``n`` rows, for ``stream``) and
returns how many it did; :mod:`benchmarks.harness` times it.
"""

from __future__ import annotations

import asyncio
import datetime
import importlib
from collections.abc import Callable, Coroutine, Iterable, Sequence
from typing import Any

import peewee

import peewee_async

from .settings import server_settings

#: Connections of every pool (SQLite: one, the default of peewee-async's SqliteDatabase).
POOL_SIZE = 10
#: Rows fetched at a time by the streaming contenders.
STREAM_CHUNK = 1000
#: Rows of ``bench_item_<pid>``, the table of get, select-1000, txn-c16, count and the -where
#: workloads, into which insert and insert-many-100 insert.
ITEMS = 1000
#: The timeline tables of join-20, page-20 and app-mix (``bench_user_<pid>``,
#: ``bench_relationship_<pid>``, ``bench_message_<pid>``): USERS users, each
#: following FOLLOWS others and the author of MESSAGES_PER_USER messages.
USERS = 1000
FOLLOWS = 10
MESSAGES_PER_USER = 10
MESSAGES = USERS * MESSAGES_PER_USER
#: Rows of a page (join-20, page-20, app-mix) and pages that page-20 picks from.
PAGE = 20
PAGES = 10
#: Rows of one insert-many-100 statement, and their name (the harness deletes them after each run).
INSERT_MANY = 100
INSERT_MANY_NAME = "many"

BACKENDS = {
    "postgres": "PostgreSQL (aiopg)",
    "asyncpg": "PostgreSQL (asyncpg)",
    "psycopg": "PostgreSQL (psycopg 3)",
    "mysql": "MySQL/MariaDB (aiomysql)",
    "asyncmy": "MySQL/MariaDB (asyncmy)",
    "sqlite": "SQLite (aiosqlite)",
}
#: The server of each backend: its SQL, its tables and its sync peewee.
SERVERS = {
    "postgres": "postgres",
    "asyncpg": "postgres",
    "psycopg": "postgres",
    "mysql": "mysql",
    "asyncmy": "mysql",
    "sqlite": "sqlite",
}
#: The asyncio driver of each backend, as the table names it.
DRIVERS = {
    "postgres": "aiopg",
    "asyncpg": "asyncpg",
    "psycopg": "psycopg",
    "mysql": "aiomysql",
    "asyncmy": "asyncmy",
    "sqlite": "aiosqlite",
}
#: backend -> the backend whose raw side runs beside it as a second yardstick.
#: peewee-async on a newer driver is measured against the raw driver its
#: server had first, in the same rounds: whether the library on asyncpg is
#: faster than the code a user would write on aiopg alone.
REFERENCES = {"asyncpg": "postgres", "psycopg": "postgres", "asyncmy": "mysql"}


def by_reference(backends: Iterable[str]) -> dict[str, list[str]]:
    """The references of ``backends`` (those that have one), each with its backends, in order."""
    groups: dict[str, list[str]] = {}
    for backend in backends:
        if backend in REFERENCES:
            groups.setdefault(REFERENCES[backend], []).append(backend)
    return groups


def make_models(database: Any, tag: str) -> tuple[Any, Any]:
    """The two benchmark models, bound to ``database``; ``tag`` ends their table names.

    Each run has its own tables, so that two runs on one database do not meet.
    """

    class Item(peewee.Model):
        name = peewee.CharField(max_length=64)
        value = peewee.IntegerField()

        class Meta:
            table_name = f"bench_item_{tag}"

    class StreamRow(peewee.Model):
        name = peewee.CharField(max_length=64)
        value = peewee.IntegerField()

        class Meta:
            table_name = f"bench_stream_{tag}"

    Item.bind(database)
    StreamRow.bind(database)
    return Item, StreamRow


def make_timeline_models(database: Any, tag: str) -> tuple[Any, Any, Any]:
    """The twitter example's three models (see ``examples/twitter/models.py``), cut to what is read.

    ``User``, ``Relationship`` (who follows whom) and ``Message``, bound to
    ``database``; ``tag`` ends their table names, as :func:`make_models`', and
    their indexes' names (``legacy_table_names = False``: an index is named
    after its table, not its model, and PostgreSQL's index names are those of
    the whole schema).
    """

    class User(peewee.Model):
        username = peewee.CharField(unique=True, max_length=40)

        class Meta:
            table_name = f"bench_user_{tag}"
            legacy_table_names = False

    class Relationship(peewee.Model):
        from_user = peewee.ForeignKeyField(User, backref="relationships", on_delete="CASCADE")
        to_user = peewee.ForeignKeyField(User, backref="related_to", on_delete="CASCADE")

        class Meta:
            table_name = f"bench_relationship_{tag}"
            legacy_table_names = False
            indexes = ((("from_user", "to_user"), True),)

    class Message(peewee.Model):
        user = peewee.ForeignKeyField(User, backref="messages", on_delete="CASCADE")
        content = peewee.TextField()
        pub_date = peewee.DateTimeField(index=True)

        class Meta:
            table_name = f"bench_message_{tag}"
            legacy_table_names = False

    database.bind([User, Relationship, Message])
    return User, Relationship, Message


def fill_timeline(backend: str, user: Any, relationship: Any, message: Any) -> None:
    """Fill the timeline tables (sync peewee, ``insert_many`` in batches, one transaction).

    The ``i``-th user follows the next FOLLOWS users (wrapping around), so that
    every private timeline has FOLLOWS * MESSAGES_PER_USER messages. Message
    ``j`` is the ``(j % USERS)``-th user's; the publication dates are all
    different and in another order than the ids. Then the server gathers the
    tables' statistics, as it would in time on its own: right after a bulk
    load MariaDB's still describe empty tables, and it would join 20 messages
    to their authors by reading every user and sorting all their messages.
    """
    batch = 300  # rows of 3 values under SQLite's oldest limit of 999 parameters
    start = datetime.datetime(2026, 1, 1)
    database = user._meta.database
    with database.atomic():
        for first in range(0, USERS, batch):
            names = range(first, min(first + batch, USERS))
            user.insert_many([{"username": f"user {i}"} for i in names]).execute()
        ids = [row[0] for row in user.select(user.id).order_by(user.id).tuples()]
        follows = [
            {"from_user": ids[i], "to_user": ids[(i + k) % USERS]}
            for i in range(USERS)
            for k in range(1, FOLLOWS + 1)
        ]
        messages = [
            {
                "user": ids[j % USERS],
                "content": f"message {j}",
                "pub_date": start + datetime.timedelta(minutes=j * 7919 % MESSAGES),
            }
            for j in range(MESSAGES)
        ]
        for rows, model in ((follows, relationship), (messages, message)):
            for first in range(0, len(rows), batch):
                model.insert_many(rows[first : first + batch]).execute()
    analyze = "ANALYZE TABLE" if SERVERS[backend] == "mysql" else "ANALYZE"
    for model in (user, relationship, message):
        database.execute_sql(f"{analyze} {model._meta.table_name}")


def _messages(rows: Iterable[Any]) -> list[dict[str, Any]]:
    """The raw sides' objects of joined rows: a dict of the message with a dict of its author."""
    return [
        {"id": id_, "content": content, "pub_date": pub_date, "user": {"id": user_id, "username": username}}
        for id_, content, pub_date, user_id, username in rows
    ]


def _users(rows: Iterable[Any]) -> list[dict[str, Any]]:
    """The raw sides' objects of annotated-20's rows: a dict of the user with its count."""
    return [{"id": id_, "username": username, "messages": count} for id_, username, count in rows]


def annotated_users(user: Any, message: Any, k: int) -> Any:
    """The 20 users after id ``k``, each with the count of their messages (an attribute ``messages``)."""
    return (
        user.select(user, peewee.fn.COUNT(message.id).alias("messages"))
        .join(message, peewee.JOIN.LEFT_OUTER)
        .where(user.id > k)
        .group_by(user)
        .order_by(user.id)
        .limit(PAGE)
    )


def private_timeline(message: Any, user_: Any, relationship: Any, user: Any) -> Any:
    """The twitter example's private timeline of ``user``: the messages of whom they follow, newest first."""
    following = (
        user_.select(user_.id)
        .join(relationship, on=relationship.to_user)
        .where(relationship.from_user == user)
    )
    return (
        message.select(message, user_)
        .join(user_)
        .where(message.user.in_(following))
        .order_by(message.pub_date.desc(), message.id.desc())
    )


def _many_rows() -> list[dict[str, Any]]:
    """The rows of one insert-many-100 statement, as an application would hold them."""
    return [{"name": INSERT_MANY_NAME, "value": k} for k in range(INSERT_MANY)]


def _ph(p: str, k: int) -> str:
    """The ``k``-th placeholder (from 1) of a statement: ``p``, or ``$k`` when ``p`` is ``$`` (asyncpg)."""
    return f"${k}" if p == "$" else p


def _split(ids: Sequence[int], tasks: int) -> list[Sequence[int]]:
    return [ids[k::tasks] for k in range(tasks)]


class AsyncSide:
    """peewee-async: ``await objects.get(...)``, ``objects.iterate(...)``, ..."""

    title = "peewee-async"

    def __init__(self, database: peewee_async.AsyncDatabase, tag: str) -> None:
        self.database = database
        self.objects = peewee_async.Manager(database)
        self.Item, self.StreamRow = make_models(database, tag)
        self.User, self.Relationship, self.Message = make_timeline_models(database, tag)
        item, message, user = self.Item, self.Message, self.User
        # The queries of get-expr and join-20, prepared once (see docs/prepared.rst).
        self.item_by_id = self.objects.prepare(lambda i: item.select().where(item.id == i))
        self.messages_up_to = self.objects.prepare(
            lambda k: (
                message.select(message, user)
                .join(user)
                .where(message.id <= k)
                .order_by(message.id.desc())
                .limit(PAGE)
            )
        )

    async def close(self) -> None:
        await self.database.close_async()

    async def get(self, ids: Sequence[int]) -> int:
        objects, item = self.objects, self.Item
        for i in ids:
            await objects.get(item, id=i)
        return len(ids)

    async def get_c32(self, ids: Sequence[int]) -> int:
        await asyncio.gather(*(self.get(part) for part in _split(ids, 32)))
        return len(ids)

    async def insert(self, n: int) -> int:
        objects, item = self.objects, self.Item
        for k in range(n):
            await objects.create(item, name="new", value=k)
        return n

    async def select_1000(self, n: int) -> int:
        for _ in range(n):
            rows = await self.objects.execute(self.Item.select().limit(1000))
            assert len(rows) == 1000
        return n

    async def _txns(self, ids: Sequence[int]) -> None:
        objects, item = self.objects, self.Item
        for i in ids:
            async with objects.atomic():
                obj = await objects.get(item, id=i)
                obj.value += 1
                await objects.update(obj)

    async def txn_c16(self, ids: Sequence[int]) -> int:
        await asyncio.gather(*(self._txns(part) for part in _split(ids, 16)))
        return len(ids)

    async def count(self, n: int) -> int:
        for _ in range(n):
            await self.objects.count(self.Item.select())
        return n

    async def stream(self, n: int) -> int:
        rows = 0
        query = self.StreamRow.select().limit(n)
        async with self.objects.iterate(query, chunk_size=STREAM_CHUNK) as stream:
            async for _ in stream:
                rows += 1
        assert rows == n, (rows, n)
        return rows

    async def get_expr(self, ids: Sequence[int]) -> int:
        objects, item = self.objects, self.Item
        for i in ids:
            await objects.get(item.select().where(item.id == i))
        return len(ids)

    async def join_20(self, ks: Sequence[int]) -> int:
        objects, message, user = self.objects, self.Message, self.User
        for k in ks:
            query = message.select(message, user).join(user).where(message.id <= k)
            rows = await objects.execute(query.order_by(message.id.desc()).limit(PAGE))
            assert len(rows) == PAGE, (len(rows), k)
        return len(ks)

    async def get_expr_prepared(self, ids: Sequence[int]) -> int:
        get = self.item_by_id.get
        for i in ids:
            await get(i)
        return len(ids)

    async def join_20_prepared(self, ks: Sequence[int]) -> int:
        execute = self.messages_up_to.execute
        for k in ks:
            rows = await execute(k)
            assert len(rows) == PAGE, (len(rows), k)
        return len(ks)

    async def annotated_20(self, ks: Sequence[int]) -> int:
        objects, user, message = self.objects, self.User, self.Message
        for k in ks:
            query = annotated_users(user, message, k)
            rows = await objects.execute(query)
            assert len(rows) == PAGE and rows[0].messages == MESSAGES_PER_USER, (len(rows), k)
        return len(ks)

    async def count_where(self, ks: Sequence[int]) -> int:
        objects, item = self.objects, self.Item
        for k in ks:
            value = await objects.count(item.select().where(item.value > k))
            assert value >= ITEMS - 1 - k, (value, k)
        return len(ks)

    async def update_where(self, ids: Sequence[int]) -> int:
        objects, item = self.objects, self.Item
        for i in ids:
            done = await objects.execute(item.update(value=item.value + 1).where(item.id == i))
            assert done == 1, (done, i)
        return len(ids)

    async def page_20(self, pages: Sequence[int]) -> int:
        objects, message, user = self.objects, self.Message, self.User
        for p in pages:
            query = (
                message.select(message, user).join(user).order_by(message.pub_date.desc(), message.id.desc())
            )
            count = await objects.count(query)
            rows = await objects.execute(query.paginate(p, PAGE))
            assert count == MESSAGES and len(rows) == PAGE, (count, len(rows), p)
        return len(pages)

    async def insert_many_100(self, n: int) -> int:
        objects, item, rows = self.objects, self.Item, _many_rows()
        for _ in range(n):
            await objects.execute(item.insert_many(rows))
        return n

    async def app_mix(self, uids: Sequence[int]) -> int:
        objects, message, user_, relationship = self.objects, self.Message, self.User, self.Relationship
        for uid in uids:
            user = await objects.get(user_, id=uid)
            query = private_timeline(message, user_, relationship, user)
            count, rows = await asyncio.gather(objects.count(query), objects.execute(query.paginate(1, PAGE)))
            assert count == FOLLOWS * MESSAGES_PER_USER and len(rows) == PAGE, (count, len(rows), uid)
        return len(uids)


class _OneConnection:
    """One aiosqlite connection that tasks take in turns, like peewee-async's ``SqliteDatabase``.

    ``acquire()`` reads as a pool's does, so the workloads are written once.
    """

    def __init__(self, conn: Any) -> None:
        self.conn = conn
        self.lock = asyncio.Lock()

    def acquire(self) -> _OneConnection:
        return self

    async def __aenter__(self) -> Any:
        await self.lock.acquire()
        return self.conn

    async def __aexit__(self, *exc_info: object) -> None:
        self.lock.release()


class _KeptCursor:
    """``async with conn.cursor()`` that hands out one cursor per connection, kept open (aiopg).

    An aiopg cursor costs about a tenth of a short statement to make, and
    peewee-async keeps one per connection for small results: so does the raw
    side, or it would pay for work peewee-async does not do.
    """

    __slots__ = ("cursors", "conn")

    def __init__(self, cursors: dict[Any, Any], conn: Any) -> None:
        self.cursors = cursors
        self.conn = conn

    async def __aenter__(self) -> Any:
        cursor = self.cursors.get(self.conn)
        if cursor is None or cursor.closed:
            cursor = self.cursors[self.conn] = await self.conn.cursor()
        return cursor

    async def __aexit__(self, *exc_info: object) -> None:
        pass


class _KeptPsycopgCursor(_KeptCursor):
    """The same on psycopg 3, whose ``conn.cursor()`` is not awaited; its driver keeps one too."""

    __slots__ = ()

    async def __aenter__(self) -> Any:
        cursor = self.cursors.get(self.conn)
        if cursor is None or cursor.closed:
            cursor = self.cursors[self.conn] = self.conn.cursor()
        return cursor


class _ConnectionQueue:
    """``size`` connections handed out through a queue: a pool in a few lines, for psycopg 3.

    psycopg 3's pool is a package of its own (``psycopg_pool``), often not
    installed; this one opens its connections at once, and a task that finds
    none free waits in the queue for the next one given back, as in a pool.
    ``acquire()`` reads as a pool's does.
    """

    def __init__(self, conns: list[Any]) -> None:
        self.conns = conns
        self.free: asyncio.Queue[Any] = asyncio.Queue()
        for conn in conns:
            self.free.put_nowait(conn)

    @classmethod
    async def open(cls, size: int, connect: Callable[[], Coroutine[Any, Any, Any]]) -> _ConnectionQueue:
        return cls([await connect() for _ in range(size)])

    def acquire(self) -> _Lease:
        return _Lease(self.free)

    async def close(self) -> None:
        for conn in self.conns:
            await conn.close()


class _Lease:
    """One ``async with queue.acquire() as conn``: takes a connection, gives it back."""

    __slots__ = ("free", "conn")

    def __init__(self, free: asyncio.Queue[Any]) -> None:
        self.free = free

    async def __aenter__(self) -> Any:
        self.conn = await self.free.get()
        return self.conn

    async def __aexit__(self, *exc_info: object) -> None:
        self.free.put_nowait(self.conn)


class RawSide:
    """The asyncio driver alone, with the SQL written by hand.

    It does the work peewee-async does and nothing more: the same pool size,
    each row read turned into an object (a dict of column names to values, what
    a model instance holds), statements unbounded in time (aiopg's default
    60-second timeout wraps each statement in ``asyncio.wait_for``, which
    peewee-async turns off too), and on aiopg and psycopg 3 one cursor kept
    per connection.
    """

    title = "raw driver"

    def __init__(self, backend: str, pool: Any, tag: str) -> None:
        self.backend = backend
        # aiopg/aiomysql/asyncmy/asyncpg pool, _ConnectionQueue of psycopg 3
        # connections, or _OneConnection over an aiosqlite connection
        self.pool = pool
        self._cursors: dict[Any, Any] = {}
        p = "?" if backend == "sqlite" else "%s"
        self.items, self.stream_rows = f"bench_item_{tag}", f"bench_stream_{tag}"
        self.sql_get = f"SELECT id, name, value FROM {self.items} WHERE id = {p}"
        self.sql_insert = f"INSERT INTO {self.items} (name, value) VALUES ({p}, {p})"
        if SERVERS[backend] == "postgres":
            self.sql_insert += " RETURNING id"
        self.sql_update = f"UPDATE {self.items} SET name = {p}, value = {p} WHERE id = {p}"
        self.timeline_sql(p, tag)

    def timeline_sql(self, p: str, tag: str) -> None:
        """The SQL of count-where to app-mix, written by hand; ``p``: ``%s``, ``?``, or ``$`` for ``$n``."""
        users, relationships = f"bench_user_{tag}", f"bench_relationship_{tag}"
        messages = f"bench_message_{tag}"
        columns = "m.id, m.content, m.pub_date, u.id, u.username"
        joined = f"{messages} AS m JOIN {users} AS u ON u.id = m.user_id"
        order = "ORDER BY m.pub_date DESC, m.id DESC"
        self.sql_count_where = f"SELECT COUNT(*) FROM {self.items} WHERE value > {_ph(p, 1)}"
        self.sql_update_where = f"UPDATE {self.items} SET value = value + 1 WHERE id = {_ph(p, 1)}"
        self.sql_join_20 = (
            f"SELECT {columns} FROM {joined} WHERE m.id <= {_ph(p, 1)} ORDER BY m.id DESC LIMIT {PAGE}"
        )
        self.sql_annotated_20 = (
            f"SELECT u.id, u.username, COUNT(m.id) AS messages FROM {users} AS u "
            f"LEFT OUTER JOIN {messages} AS m ON m.user_id = u.id WHERE u.id > {_ph(p, 1)} "
            f"GROUP BY u.id, u.username ORDER BY u.id LIMIT {PAGE}"
        )
        self.sql_page_count = f"SELECT COUNT(*) FROM {joined}"
        self.sql_page = f"SELECT {columns} FROM {joined} {order} LIMIT {PAGE} OFFSET {_ph(p, 1)}"
        values = ", ".join(f"({_ph(p, 2 * r + 1)}, {_ph(p, 2 * r + 2)})" for r in range(INSERT_MANY))
        returning = " RETURNING id" if SERVERS[self.backend] == "postgres" else ""
        self.sql_insert_many = f"INSERT INTO {self.items} (name, value) VALUES {values}{returning}"
        self.sql_user = f"SELECT id, username FROM {users} WHERE id = {_ph(p, 1)}"
        # A private timeline: the messages of the users whom the first parameter's user follows.
        following = (
            f"SELECT f.id FROM {users} AS f JOIN {relationships} AS r ON r.to_user_id = f.id "
            f"WHERE r.from_user_id = {_ph(p, 1)}"
        )
        self.sql_timeline_count = f"SELECT COUNT(*) FROM {joined} WHERE m.user_id IN ({following})"
        self.sql_timeline_page = (
            f"SELECT {columns} FROM {joined} WHERE m.user_id IN ({following}) {order} "
            f"LIMIT {PAGE} OFFSET {_ph(p, 2)}"
        )

    @classmethod
    async def open(cls, backend: str, sqlite_path: str, tag: str) -> RawSide:
        if backend == "postgres":
            import aiopg

            s = server_settings("postgres")
            pool: Any = await aiopg.create_pool(
                minsize=1,
                maxsize=POOL_SIZE,
                timeout=None,
                database=s["database"],
                host=s["host"],
                port=s["port"],
                user=s["user"],
                password=s["password"],
            )
        elif backend in ("mysql", "asyncmy"):
            # asyncmy takes aiomysql's pool arguments.
            driver = importlib.import_module("aiomysql" if backend == "mysql" else "asyncmy")
            s = server_settings("mysql")
            pool = await driver.create_pool(
                minsize=1,
                maxsize=POOL_SIZE,
                db=s["database"],
                host=s["host"],
                port=s["port"],
                user=s["user"],
                password=s["password"],
                autocommit=True,
            )
        elif backend == "asyncpg":
            return await RawAsyncpgSide.open_asyncpg(backend, tag)
        elif backend == "psycopg":
            return await RawPsycopgSide.open_psycopg(backend, tag)
        else:
            import aiosqlite

            pool = _OneConnection(await aiosqlite.connect(sqlite_path, isolation_level=None))
            return RawSqliteSide(backend, pool, tag)
        return cls(backend, pool, tag)

    async def close(self) -> None:
        if self.backend == "sqlite":
            await self.pool.conn.close()
        else:  # aiopg, aiomysql, asyncmy
            for cursor in self._cursors.values():
                cursor.close()
            self._cursors.clear()
            self.pool.close()
            await self.pool.wait_closed()

    def cursor(self, conn: Any) -> Any:
        """``conn.cursor()``, as an ``async with`` (a kept one on aiopg)."""
        if self.backend == "postgres":
            return _KeptCursor(self._cursors, conn)
        return conn.cursor()

    async def get(self, ids: Sequence[int]) -> int:
        sql, acquire, cursor = self.sql_get, self.pool.acquire, self.cursor
        for i in ids:
            async with acquire() as conn, cursor(conn) as cur:
                await cur.execute(sql, (i,))
                row = await cur.fetchone()
                columns = [d[0] for d in cur.description]
            dict(zip(columns, row, strict=True))
        return len(ids)

    async def get_c32(self, ids: Sequence[int]) -> int:
        await asyncio.gather(*(self.get(part) for part in _split(ids, 32)))
        return len(ids)

    async def insert(self, n: int) -> int:
        sql, returning = self.sql_insert, SERVERS[self.backend] == "postgres"
        acquire, cursor = self.pool.acquire, self.cursor
        for k in range(n):
            async with acquire() as conn, cursor(conn) as cur:
                await cur.execute(sql, ("new", k))
                new_id = (await cur.fetchone())[0] if returning else cur.lastrowid
            assert new_id
        return n

    async def select_1000(self, n: int) -> int:
        sql = f"SELECT id, name, value FROM {self.items} LIMIT 1000"
        for _ in range(n):
            async with self.pool.acquire() as conn, self.cursor(conn) as cur:
                await cur.execute(sql)
                rows = await cur.fetchall()
                columns = [d[0] for d in cur.description]
            objects = [dict(zip(columns, row, strict=True)) for row in rows]
            assert len(objects) == 1000
            if self.backend == "postgres":
                cur.close()  # as peewee-async does: a kept cursor holds no big result
                del self._cursors[conn]
        return n

    async def _txns(self, ids: Sequence[int]) -> None:
        acquire, cursor = self.pool.acquire, self.cursor
        for i in ids:
            async with acquire() as conn, cursor(conn) as cur:
                await cur.execute("BEGIN")
                try:
                    await cur.execute(self.sql_get, (i,))
                    row = await cur.fetchone()
                    columns = [d[0] for d in cur.description]
                    obj = dict(zip(columns, row, strict=True))
                    await cur.execute(self.sql_update, (obj["name"], obj["value"] + 1, obj["id"]))
                except BaseException:
                    await cur.execute("ROLLBACK")
                    raise
                await cur.execute("COMMIT")

    async def txn_c16(self, ids: Sequence[int]) -> int:
        await asyncio.gather(*(self._txns(part) for part in _split(ids, 16)))
        return len(ids)

    async def count(self, n: int) -> int:
        sql, acquire, cursor = f"SELECT COUNT(*) FROM {self.items}", self.pool.acquire, self.cursor
        for _ in range(n):
            async with acquire() as conn, cursor(conn) as cur:
                await cur.execute(sql)
                (value,) = await cur.fetchone()
            assert value >= ITEMS
        return n

    async def stream(self, n: int) -> int:
        rows = 0
        sql = f"SELECT id, name, value FROM {self.stream_rows} LIMIT {int(n)}"
        async with self.pool.acquire() as conn:
            if self.backend == "postgres":
                async with conn.cursor() as cur:
                    await cur.execute("BEGIN")
                    await cur.execute(f"DECLARE bench_cursor NO SCROLL CURSOR FOR {sql}")
                    while True:
                        await cur.execute(f"FETCH FORWARD {STREAM_CHUNK} FROM bench_cursor")
                        chunk = await cur.fetchall()
                        if not chunk:
                            break
                        columns = [d[0] for d in cur.description]
                        for row in chunk:
                            dict(zip(columns, row, strict=True))
                            rows += 1
                    await cur.execute("COMMIT")
            else:
                if self.backend == "mysql":
                    import aiomysql

                    cursor = conn.cursor(aiomysql.SSCursor)
                elif self.backend == "asyncmy":
                    from asyncmy.cursors import SSCursor

                    cursor = conn.cursor(SSCursor)
                else:
                    cursor = conn.cursor()
                async with cursor as cur:
                    await cur.execute(sql)
                    columns = [d[0] for d in cur.description]
                    while chunk := await cur.fetchmany(STREAM_CHUNK):
                        for row in chunk:
                            dict(zip(columns, row, strict=True))
                            rows += 1
        assert rows == n, (rows, n)
        return rows

    async def get_expr(self, ids: Sequence[int]) -> int:
        # A get by a query sends the same SELECT as a get by its lookups.
        return await self.get(ids)

    # The raw driver has nothing to prepare: the prepared workloads are the same work to it.
    async def get_expr_prepared(self, ids: Sequence[int]) -> int:
        return await self.get_expr(ids)

    async def join_20_prepared(self, ks: Sequence[int]) -> int:
        return await self.join_20(ks)

    async def join_20(self, ks: Sequence[int]) -> int:
        sql, acquire, cursor = self.sql_join_20, self.pool.acquire, self.cursor
        for k in ks:
            async with acquire() as conn, cursor(conn) as cur:
                await cur.execute(sql, (k,))
                rows = await cur.fetchall()
            messages = _messages(rows)
            assert len(messages) == PAGE, (len(messages), k)
        return len(ks)

    async def annotated_20(self, ks: Sequence[int]) -> int:
        sql, acquire, cursor = self.sql_annotated_20, self.pool.acquire, self.cursor
        for k in ks:
            async with acquire() as conn, cursor(conn) as cur:
                await cur.execute(sql, (k,))
                rows = await cur.fetchall()
            users = _users(rows)
            assert len(users) == PAGE and users[0]["messages"] == MESSAGES_PER_USER, (len(users), k)
        return len(ks)

    async def count_where(self, ks: Sequence[int]) -> int:
        sql, acquire, cursor = self.sql_count_where, self.pool.acquire, self.cursor
        for k in ks:
            async with acquire() as conn, cursor(conn) as cur:
                await cur.execute(sql, (k,))
                (value,) = await cur.fetchone()
            assert value >= ITEMS - 1 - k, (value, k)
        return len(ks)

    async def update_where(self, ids: Sequence[int]) -> int:
        sql, acquire, cursor = self.sql_update_where, self.pool.acquire, self.cursor
        for i in ids:
            async with acquire() as conn, cursor(conn) as cur:
                await cur.execute(sql, (i,))
                done = cur.rowcount
            assert done == 1, (done, i)
        return len(ids)

    async def page_20(self, pages: Sequence[int]) -> int:
        count_sql, page_sql = self.sql_page_count, self.sql_page
        acquire, cursor = self.pool.acquire, self.cursor
        for p in pages:
            async with acquire() as conn, cursor(conn) as cur:
                await cur.execute(count_sql)
                (count,) = await cur.fetchone()
                await cur.execute(page_sql, ((p - 1) * PAGE,))
                rows = await cur.fetchall()
            messages = _messages(rows)
            assert count == MESSAGES and len(messages) == PAGE, (count, len(messages), p)
        return len(pages)

    async def insert_many_100(self, n: int) -> int:
        sql, returning = self.sql_insert_many, SERVERS[self.backend] == "postgres"
        acquire, cursor, rows = self.pool.acquire, self.cursor, _many_rows()
        for _ in range(n):
            params = [value for row in rows for value in (row["name"], row["value"])]
            async with acquire() as conn, cursor(conn) as cur:
                await cur.execute(sql, params)
                if returning:
                    new_ids = await cur.fetchall()
                    assert len(new_ids) == INSERT_MANY
                else:
                    assert cur.lastrowid
        return n

    async def _timeline_count(self, user_id: int) -> int:
        async with self.pool.acquire() as conn, self.cursor(conn) as cur:
            await cur.execute(self.sql_timeline_count, (user_id,))
            (count,) = await cur.fetchone()
        return int(count)

    async def _timeline_page(self, user_id: int) -> list[dict[str, Any]]:
        async with self.pool.acquire() as conn, self.cursor(conn) as cur:
            await cur.execute(self.sql_timeline_page, (user_id, 0))
            rows = await cur.fetchall()
        return _messages(rows)

    async def app_mix(self, uids: Sequence[int]) -> int:
        sql, acquire, cursor = self.sql_user, self.pool.acquire, self.cursor
        for uid in uids:
            async with acquire() as conn, cursor(conn) as cur:
                await cur.execute(sql, (uid,))
                row = await cur.fetchone()
                columns = [d[0] for d in cur.description]
            user = dict(zip(columns, row, strict=True))
            count, messages = await asyncio.gather(
                self._timeline_count(user["id"]), self._timeline_page(user["id"])
            )
            assert count == FOLLOWS * MESSAGES_PER_USER and len(messages) == PAGE, (count, len(messages), uid)
        return len(uids)


class RawSqliteSide(RawSide):
    """aiosqlite with its one-trip helpers: ``execute_fetchall``, ``execute_insert``, ``execute``.

    Each trip to the connection's thread costs more than a short statement,
    and peewee-async makes one per statement: so does this side, where a
    cursor's execute, fetch and close would make three or four.
    """

    COLUMNS = ("id", "name", "value")

    async def get(self, ids: Sequence[int]) -> int:
        sql, acquire, columns = self.sql_get, self.pool.acquire, self.COLUMNS
        for i in ids:
            async with acquire() as conn:
                (row,) = await conn.execute_fetchall(sql, (i,))
            dict(zip(columns, row, strict=True))
        return len(ids)

    async def insert(self, n: int) -> int:
        sql, acquire = self.sql_insert, self.pool.acquire
        for k in range(n):
            async with acquire() as conn:
                (new_id,) = await conn.execute_insert(sql, ("new", k))
            assert new_id
        return n

    async def select_1000(self, n: int) -> int:
        sql, columns = f"SELECT id, name, value FROM {self.items} LIMIT 1000", self.COLUMNS
        for _ in range(n):
            async with self.pool.acquire() as conn:
                rows = await conn.execute_fetchall(sql)
            objects = [dict(zip(columns, row, strict=True)) for row in rows]
            assert len(objects) == 1000
        return n

    async def _txns(self, ids: Sequence[int]) -> None:
        columns = self.COLUMNS
        for i in ids:
            async with self.pool.acquire() as conn:
                await conn.execute("BEGIN IMMEDIATE")  # as peewee-async's SQLite transactions
                try:
                    (row,) = await conn.execute_fetchall(self.sql_get, (i,))
                    obj = dict(zip(columns, row, strict=True))
                    await conn.execute(self.sql_update, (obj["name"], obj["value"] + 1, obj["id"]))
                except BaseException:
                    await conn.execute("ROLLBACK")
                    raise
                await conn.execute("COMMIT")

    async def count(self, n: int) -> int:
        sql, acquire = f"SELECT COUNT(*) FROM {self.items}", self.pool.acquire
        for _ in range(n):
            async with acquire() as conn:
                ((value,),) = await conn.execute_fetchall(sql)
            assert value >= ITEMS
        return n

    async def join_20(self, ks: Sequence[int]) -> int:
        sql, acquire = self.sql_join_20, self.pool.acquire
        for k in ks:
            async with acquire() as conn:
                rows = await conn.execute_fetchall(sql, (k,))
            messages = _messages(rows)
            assert len(messages) == PAGE, (len(messages), k)
        return len(ks)

    async def annotated_20(self, ks: Sequence[int]) -> int:
        sql, acquire = self.sql_annotated_20, self.pool.acquire
        for k in ks:
            async with acquire() as conn:
                rows = await conn.execute_fetchall(sql, (k,))
            users = _users(rows)
            assert len(users) == PAGE and users[0]["messages"] == MESSAGES_PER_USER, (len(users), k)
        return len(ks)

    async def count_where(self, ks: Sequence[int]) -> int:
        sql, acquire = self.sql_count_where, self.pool.acquire
        for k in ks:
            async with acquire() as conn:
                ((value,),) = await conn.execute_fetchall(sql, (k,))
            assert value >= ITEMS - 1 - k, (value, k)
        return len(ks)

    async def update_where(self, ids: Sequence[int]) -> int:
        sql, acquire = self.sql_update_where, self.pool.acquire
        for i in ids:
            async with acquire() as conn:
                done = (await conn.execute(sql, (i,))).rowcount
            assert done == 1, (done, i)
        return len(ids)

    async def page_20(self, pages: Sequence[int]) -> int:
        count_sql, page_sql, acquire = self.sql_page_count, self.sql_page, self.pool.acquire
        for p in pages:
            async with acquire() as conn:
                ((count,),) = await conn.execute_fetchall(count_sql)
                rows = await conn.execute_fetchall(page_sql, ((p - 1) * PAGE,))
            messages = _messages(rows)
            assert count == MESSAGES and len(messages) == PAGE, (count, len(messages), p)
        return len(pages)

    async def insert_many_100(self, n: int) -> int:
        sql, acquire, rows = self.sql_insert_many, self.pool.acquire, _many_rows()
        for _ in range(n):
            params = [value for row in rows for value in (row["name"], row["value"])]
            async with acquire() as conn:
                (new_id,) = await conn.execute_insert(sql, params)
            assert new_id
        return n

    async def _timeline_count(self, user_id: int) -> int:
        async with self.pool.acquire() as conn:
            ((count,),) = await conn.execute_fetchall(self.sql_timeline_count, (user_id,))
        return int(count)

    async def _timeline_page(self, user_id: int) -> list[dict[str, Any]]:
        async with self.pool.acquire() as conn:
            rows = await conn.execute_fetchall(self.sql_timeline_page, (user_id, 0))
        return _messages(rows)

    async def app_mix(self, uids: Sequence[int]) -> int:
        sql, acquire = self.sql_user, self.pool.acquire
        for uid in uids:
            async with acquire() as conn:
                (row,) = await conn.execute_fetchall(sql, (uid,))
            user = dict(zip(("id", "username"), row, strict=True))
            count, messages = await asyncio.gather(
                self._timeline_count(user["id"]), self._timeline_page(user["id"])
            )
            assert count == FOLLOWS * MESSAGES_PER_USER and len(messages) == PAGE, (count, len(messages), uid)
        return len(uids)


class RawPsycopgSide(RawSide):
    """psycopg 3 alone: ``POOL_SIZE`` autocommit connections, each with its kept cursor.

    The workloads are the aiopg side's, on psycopg 3's ``AsyncCursor`` (the
    same calls, ``%s`` placeholders); the stream reads a named (server-side)
    cursor inside a transaction.
    """

    @classmethod
    async def open_psycopg(cls, backend: str, tag: str) -> RawPsycopgSide:
        import psycopg

        s = server_settings("postgres")

        def connect() -> Coroutine[Any, Any, Any]:
            return psycopg.AsyncConnection.connect(
                dbname=s["database"],
                host=s["host"],
                port=s["port"],
                user=s["user"],
                password=s["password"],
                autocommit=True,
            )

        return cls(backend, await _ConnectionQueue.open(POOL_SIZE, connect), tag)

    async def close(self) -> None:
        for cursor in self._cursors.values():
            await cursor.close()
        self._cursors.clear()
        await self.pool.close()

    def cursor(self, conn: Any) -> Any:
        return _KeptPsycopgCursor(self._cursors, conn)

    async def select_1000(self, n: int) -> int:
        sql = f"SELECT id, name, value FROM {self.items} LIMIT 1000"
        for _ in range(n):
            async with self.pool.acquire() as conn, self.cursor(conn) as cur:
                await cur.execute(sql)
                rows = await cur.fetchall()
                columns = [d[0] for d in cur.description]
                # As peewee-async's driver does: a kept cursor holds no big result.
                await cur.close()
                del self._cursors[conn]
            objects = [dict(zip(columns, row, strict=True)) for row in rows]
            assert len(objects) == 1000
        return n

    async def stream(self, n: int) -> int:
        rows = 0
        sql = f"SELECT id, name, value FROM {self.stream_rows} LIMIT {int(n)}"
        async with self.pool.acquire() as conn, conn.transaction():
            # A named cursor is declared on the server; each fetchmany() is a FETCH.
            async with conn.cursor("bench_cursor") as cur:
                await cur.execute(sql)
                columns = [d[0] for d in cur.description]
                while chunk := await cur.fetchmany(STREAM_CHUNK):
                    for row in chunk:
                        dict(zip(columns, row, strict=True))
                        rows += 1
        assert rows == n, (rows, n)
        return rows


async def _keep_session(conn: Any) -> None:
    """asyncpg's pool ``reset``: nothing, as peewee-async's pool sends nothing at release."""


class RawAsyncpgSide(RawSide):
    """asyncpg alone, through its own calls: ``fetchrow``, ``fetch``, ``fetchval``, ``execute``.

    ``$n`` placeholders; each record read turned into a dict (``dict(record)``);
    transactions by ``conn.transaction()`` and the stream by a cursor
    (``conn.cursor(sql, prefetch=...)``) inside one. Its pool is given a
    ``reset`` that does nothing: by default asyncpg's pool sends a reset query
    (``SELECT pg_advisory_unlock_all(); CLOSE ALL; UNLISTEN *; RESET ALL;``) at
    every release, a round trip per operation that peewee-async's pool does
    not make, as aiopg's default ``timeout`` is turned off on the aiopg side.
    """

    def __init__(self, backend: str, pool: Any, tag: str) -> None:
        super().__init__(backend, pool, tag)
        self.sql_get = f"SELECT id, name, value FROM {self.items} WHERE id = $1"
        self.sql_insert = f"INSERT INTO {self.items} (name, value) VALUES ($1, $2) RETURNING id"
        self.sql_update = f"UPDATE {self.items} SET name = $1, value = $2 WHERE id = $3"
        self.timeline_sql("$", tag)

    @classmethod
    async def open_asyncpg(cls, backend: str, tag: str) -> RawAsyncpgSide:
        import asyncpg

        s = server_settings("postgres")
        pool = await asyncpg.create_pool(
            min_size=1,
            max_size=POOL_SIZE,
            reset=_keep_session,  # asyncpg 0.30 and later; 0.29 refuses it rather than reset each time
            database=s["database"],
            host=s["host"],
            port=s["port"],
            user=s["user"],
            password=s["password"],
        )
        return cls(backend, pool, tag)

    async def close(self) -> None:
        await self.pool.close()

    async def get(self, ids: Sequence[int]) -> int:
        sql, acquire = self.sql_get, self.pool.acquire
        for i in ids:
            async with acquire() as conn:
                row = await conn.fetchrow(sql, i)
            dict(row)
        return len(ids)

    async def insert(self, n: int) -> int:
        sql, acquire = self.sql_insert, self.pool.acquire
        for k in range(n):
            async with acquire() as conn:
                new_id = await conn.fetchval(sql, "new", k)
            assert new_id
        return n

    async def select_1000(self, n: int) -> int:
        sql = f"SELECT id, name, value FROM {self.items} LIMIT 1000"
        for _ in range(n):
            async with self.pool.acquire() as conn:
                rows = await conn.fetch(sql)
            objects = [dict(row) for row in rows]
            assert len(objects) == 1000
        return n

    async def _txns(self, ids: Sequence[int]) -> None:
        acquire = self.pool.acquire
        for i in ids:
            async with acquire() as conn, conn.transaction():
                obj = dict(await conn.fetchrow(self.sql_get, i))
                await conn.execute(self.sql_update, obj["name"], obj["value"] + 1, obj["id"])

    async def count(self, n: int) -> int:
        sql, acquire = f"SELECT COUNT(*) FROM {self.items}", self.pool.acquire
        for _ in range(n):
            async with acquire() as conn:
                value = await conn.fetchval(sql)
            assert value >= ITEMS
        return n

    async def stream(self, n: int) -> int:
        rows = 0
        sql = f"SELECT id, name, value FROM {self.stream_rows} LIMIT {int(n)}"
        async with self.pool.acquire() as conn, conn.transaction():
            async for row in conn.cursor(sql, prefetch=STREAM_CHUNK):
                dict(row)
                rows += 1
        assert rows == n, (rows, n)
        return rows

    async def join_20(self, ks: Sequence[int]) -> int:
        sql, acquire = self.sql_join_20, self.pool.acquire
        for k in ks:
            async with acquire() as conn:
                rows = await conn.fetch(sql, k)
            messages = _messages(rows)
            assert len(messages) == PAGE, (len(messages), k)
        return len(ks)

    async def annotated_20(self, ks: Sequence[int]) -> int:
        sql, acquire = self.sql_annotated_20, self.pool.acquire
        for k in ks:
            async with acquire() as conn:
                rows = await conn.fetch(sql, k)
            users = _users(rows)
            assert len(users) == PAGE and users[0]["messages"] == MESSAGES_PER_USER, (len(users), k)
        return len(ks)

    async def count_where(self, ks: Sequence[int]) -> int:
        sql, acquire = self.sql_count_where, self.pool.acquire
        for k in ks:
            async with acquire() as conn:
                value = await conn.fetchval(sql, k)
            assert value >= ITEMS - 1 - k, (value, k)
        return len(ks)

    async def update_where(self, ids: Sequence[int]) -> int:
        sql, acquire = self.sql_update_where, self.pool.acquire
        for i in ids:
            async with acquire() as conn:
                status = await conn.execute(sql, i)
            assert status == "UPDATE 1", (status, i)
        return len(ids)

    async def page_20(self, pages: Sequence[int]) -> int:
        count_sql, page_sql, acquire = self.sql_page_count, self.sql_page, self.pool.acquire
        for p in pages:
            async with acquire() as conn:
                count = await conn.fetchval(count_sql)
                rows = await conn.fetch(page_sql, (p - 1) * PAGE)
            messages = _messages(rows)
            assert count == MESSAGES and len(messages) == PAGE, (count, len(messages), p)
        return len(pages)

    async def insert_many_100(self, n: int) -> int:
        sql, acquire, rows = self.sql_insert_many, self.pool.acquire, _many_rows()
        for _ in range(n):
            params = [value for row in rows for value in (row["name"], row["value"])]
            async with acquire() as conn:
                new_ids = await conn.fetch(sql, *params)
            assert len(new_ids) == INSERT_MANY
        return n

    async def _timeline_count(self, user_id: int) -> int:
        async with self.pool.acquire() as conn:
            count = await conn.fetchval(self.sql_timeline_count, user_id)
        return int(count)

    async def _timeline_page(self, user_id: int) -> list[dict[str, Any]]:
        async with self.pool.acquire() as conn:
            rows = await conn.fetch(self.sql_timeline_page, user_id, 0)
        return _messages(rows)

    async def app_mix(self, uids: Sequence[int]) -> int:
        sql, acquire = self.sql_user, self.pool.acquire
        for uid in uids:
            async with acquire() as conn:
                user = dict(await conn.fetchrow(sql, uid))
            count, messages = await asyncio.gather(
                self._timeline_count(user["id"]), self._timeline_page(user["id"])
            )
            assert count == FOLLOWS * MESSAGES_PER_USER and len(messages) == PAGE, (count, len(messages), uid)
        return len(uids)


class SyncSide:
    """Plain sync peewee, one connection; concurrent workloads run their tasks one after another."""

    title = "sync peewee"

    def __init__(self, database: peewee.Database, tag: str) -> None:
        self.database = database
        self.Item, self.StreamRow = make_models(database, tag)
        self.User, self.Relationship, self.Message = make_timeline_models(database, tag)

    def close(self) -> None:
        self.database.close()

    def get(self, ids: Sequence[int]) -> int:
        item = self.Item
        for i in ids:
            item.get(id=i)
        return len(ids)

    get_c32 = get

    def insert(self, n: int) -> int:
        for k in range(n):
            self.Item.create(name="new", value=k)
        return n

    def select_1000(self, n: int) -> int:
        for _ in range(n):
            rows = list(self.Item.select().limit(1000))
            assert len(rows) == 1000
        return n

    def txn_c16(self, ids: Sequence[int]) -> int:
        item = self.Item
        for i in ids:
            with self.database.atomic():
                obj = item.get(id=i)
                obj.value += 1
                obj.save()
        return len(ids)

    def count(self, n: int) -> int:
        for _ in range(n):
            self.Item.select().count()
        return n

    def stream(self, n: int) -> int:
        # peewee's iterator() builds one row at a time, but the DB-API driver
        # has read the whole result already (psycopg2 and PyMySQL's default cursors).
        rows = sum(1 for _ in self.StreamRow.select().limit(n).iterator())
        assert rows == n, (rows, n)
        return rows

    def get_expr(self, ids: Sequence[int]) -> int:
        item = self.Item
        for i in ids:
            item.select().where(item.id == i).get()
        return len(ids)

    # peewee has no prepared queries: it builds and compiles each of them, as in get-expr and join-20.
    def get_expr_prepared(self, ids: Sequence[int]) -> int:
        return self.get_expr(ids)

    def join_20_prepared(self, ks: Sequence[int]) -> int:
        return self.join_20(ks)

    def join_20(self, ks: Sequence[int]) -> int:
        message, user = self.Message, self.User
        for k in ks:
            query = message.select(message, user).join(user).where(message.id <= k)
            rows = list(query.order_by(message.id.desc()).limit(PAGE))
            assert len(rows) == PAGE, (len(rows), k)
        return len(ks)

    def annotated_20(self, ks: Sequence[int]) -> int:
        user, message = self.User, self.Message
        for k in ks:
            rows = list(annotated_users(user, message, k))
            assert len(rows) == PAGE and rows[0].messages == MESSAGES_PER_USER, (len(rows), k)
        return len(ks)

    def count_where(self, ks: Sequence[int]) -> int:
        item = self.Item
        for k in ks:
            value = item.select().where(item.value > k).count()
            assert value >= ITEMS - 1 - k, (value, k)
        return len(ks)

    def update_where(self, ids: Sequence[int]) -> int:
        item = self.Item
        for i in ids:
            done = item.update(value=item.value + 1).where(item.id == i).execute()
            assert done == 1, (done, i)
        return len(ids)

    def page_20(self, pages: Sequence[int]) -> int:
        message, user = self.Message, self.User
        for p in pages:
            query = (
                message.select(message, user).join(user).order_by(message.pub_date.desc(), message.id.desc())
            )
            count = query.count()
            rows = list(query.paginate(p, PAGE))
            assert count == MESSAGES and len(rows) == PAGE, (count, len(rows), p)
        return len(pages)

    def insert_many_100(self, n: int) -> int:
        item, rows = self.Item, _many_rows()
        for _ in range(n):
            item.insert_many(rows).execute()
        return n

    def app_mix(self, uids: Sequence[int]) -> int:
        message, user_, relationship = self.Message, self.User, self.Relationship
        for uid in uids:
            user = user_.get(id=uid)
            query = private_timeline(message, user_, relationship, user)
            count = query.count()
            rows = list(query.paginate(1, PAGE))
            assert count == FOLLOWS * MESSAGES_PER_USER and len(rows) == PAGE, (count, len(rows), uid)
        return len(uids)


#: The pooled class of each server backend.
POOLED_CLASSES: dict[str, type[peewee_async.AsyncDatabase]] = {
    "postgres": peewee_async.PooledPostgresqlDatabase,
    "asyncpg": peewee_async.PooledAsyncpgDatabase,
    "psycopg": peewee_async.PooledPsycopgDatabase,
    "mysql": peewee_async.PooledMySQLDatabase,
    "asyncmy": peewee_async.PooledAsyncmyDatabase,
}


def async_database(backend: str, sqlite_path: str) -> peewee_async.AsyncDatabase:
    if backend == "sqlite":
        return peewee_async.SqliteDatabase(sqlite_path)
    s = server_settings(SERVERS[backend])
    name = s.pop("database")
    return POOLED_CLASSES[backend](name, max_connections=POOL_SIZE, **s)


def sync_database(backend: str, sqlite_path: str) -> peewee.Database:
    """Sync peewee on the server's usual DB-API driver (psycopg2, PyMySQL), whatever the asyncio driver."""
    server = SERVERS[backend]
    if server == "postgres":
        s = server_settings("postgres")
        name = s.pop("database")
        return peewee.PostgresqlDatabase(name, **s)
    if server == "mysql":
        s = server_settings("mysql")
        name = s.pop("database")
        return peewee.MySQLDatabase(name, **s)
    return peewee.SqliteDatabase(sqlite_path)


def fill_stream_sql(backend: str, table: str, rows: int) -> str:
    """SQL that fills the stream table with ``rows`` rows on the server, without sending them."""
    server = SERVERS[backend]
    if server == "postgres":
        return (
            f"INSERT INTO {table} (name, value) "
            f"SELECT 'row ' || n, n FROM generate_series(1, {int(rows)}) AS n"
        )
    if server == "mysql":
        digits = " UNION ALL ".join(f"SELECT {d} AS d" for d in range(10))
        places = max(1, len(str(max(rows - 1, 1))))  # a cross join of as many digit tables
        tables = ", ".join(f"({digits}) t{k}" for k in range(places))
        number = " + ".join(f"{10**k} * t{k}.d" for k in range(places))
        return (
            f"INSERT INTO {table} (name, value) SELECT CONCAT('row ', n), n FROM "
            f"(SELECT 1 + {number} AS n FROM {tables}) AS numbers WHERE n <= {int(rows)}"
        )
    return (
        f"WITH RECURSIVE numbers(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM numbers WHERE n < {int(rows)}) "
        f"INSERT INTO {table} (name, value) SELECT 'row ' || n, n FROM numbers"
    )
