"""peewee's "Hacks" recipes, run through the async Manager.

Optimistic locking, the top item and the top N items per group (every variant
the server supports), custom SQLite functions and date math. Each section
prints what its queries return; a recipe the server cannot run is reported as
such. It runs on SQLite by default (a file in a temporary folder), or on the
server of a URL given as argument or in ``DATABASE_URL``::

    python examples/hacks.py
    python examples/hacks.py postgresql://postgres@127.0.0.1:5432/test
    python examples/hacks.py mysql://root@127.0.0.1:3306/test

It creates its own tables (all named ``hacks_*``) and drops them at the end.
"""

from __future__ import annotations

import asyncio
import datetime
import hashlib
import hmac
import os
import secrets
import sys
import tempfile
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import peewee
from peewee import JOIN, SQL, NodeList, Value, fn

import peewee_async

database = peewee.DatabaseProxy()


class BaseModel(peewee.Model):
    class Meta:
        database = database
        legacy_table_names = False


# -- optimistic locking --------------------------------------------------------


class ConflictDetectedException(peewee.DatabaseError):
    """The row changed in the database since the instance was read."""


class BaseVersionedModel(BaseModel):
    version = peewee.IntegerField(default=1, index=True)


class HacksUser(BaseVersionedModel):
    username = peewee.CharField(unique=True)
    favorite_animal = peewee.CharField()


async def save_optimistic(objects: peewee_async.Manager, instance: BaseVersionedModel) -> bool:
    """Save ``instance`` only if its row is still at the version it was read at.

    One ``UPDATE ... WHERE id = ? AND version = <version read>``, which also
    bumps the version: when it changes no row, someone saved the row in the
    meantime and :class:`ConflictDetectedException` says so.
    """
    model = type(instance)
    if instance.id is None:
        # A new row. The unique constraint on username keeps two inserts apart.
        instance.id = await objects.execute(model.insert(**instance.__data__))
        instance._dirty.clear()
        return True

    field_data = dict(instance.__data__)
    current_version = field_data.pop("version", 1)
    instance._populate_unsaved_relations(field_data)
    field_data = instance._prune_fields(field_data, instance.dirty_fields)
    if not field_data:
        raise ValueError("No changes have been made.")

    field_data["version"] = model.version + 1  # atomic increment, in SQL
    query = model.update(**field_data).where((model.version == current_version) & (model.id == instance.id))
    if await objects.execute(query) == 0:
        raise ConflictDetectedException(
            f"{model.__name__} id={instance.id} was saved by someone else since it was read at "
            f"version {current_version}: get it again, re-apply the change and save again."
        )
    instance.version = current_version + 1
    instance._dirty.clear()
    return True


async def optimistic_locking(objects: peewee_async.Manager) -> None:
    section("Optimistic locking")
    u = HacksUser(username="charlie", favorite_animal="cat")
    show("save a new user", await save_optimistic(objects, u), f"version {u.version}")
    try:
        await save_optimistic(objects, u)
    except ValueError as exc:
        show("save it again unchanged", f"ValueError: {exc}")
    u.favorite_animal = "kitten"
    show("change to kitten and save", await save_optimistic(objects, u), f"version {u.version}")

    # Another request reads the same row and saves it first.
    u2 = await objects.get(HacksUser, username="charlie")
    u2.favorite_animal = "macaw"
    show("a second copy saves macaw", await save_optimistic(objects, u2), f"version {u2.version}")
    u.favorite_animal = "little parrot"
    try:
        await save_optimistic(objects, u)
    except ConflictDetectedException as exc:
        show("the first copy saves little parrot", f"ConflictDetectedException: {exc}")
    row = await objects.get(HacksUser, username="charlie")
    show("in the database", f"{row.favorite_animal}, version {row.version}")

    # Two tasks that read the same version and save at the same time: one wins.
    copies = [await objects.get(HacksUser, username="charlie") for _ in range(2)]
    for copy, animal in zip(copies, ["owl", "fox"], strict=True):
        copy.favorite_animal = animal
    results = await asyncio.gather(*(save_optimistic(objects, c) for c in copies), return_exceptions=True)
    saved = sum(result is True for result in results)
    conflicts = sum(isinstance(result, ConflictDetectedException) for result in results)
    row = await objects.get(HacksUser, username="charlie")
    show("two tasks save at once", f"{saved} saved, {conflicts} conflict, version {row.version}")


# -- top item and top N items per group -----------------------------------------


class Tweet(BaseModel):
    user = peewee.ForeignKeyField(HacksUser, backref="tweets")
    message = peewee.CharField()
    created_date = peewee.DateTimeField()

    class Meta:
        table_name = "hacks_tweet"


START = datetime.datetime(2024, 1, 1, 9, 0, 0)
TWEETS = {  # username: messages, oldest first (one minute apart)
    "huey": ["huey 1", "huey 2", "huey 3", "huey 4"],
    "mickey": ["mickey 1", "mickey 2", "mickey 3"],
    "zaizee": ["zaizee 1"],
}
TOP_N = 2


async def seed_tweets(objects: peewee_async.Manager) -> None:
    minute = 0
    for username, messages in TWEETS.items():
        user, _ = await objects.get_or_create(
            HacksUser, username=username, defaults={"favorite_animal": "cat"}
        )
        for message in messages:
            minute += 1
            created = START + datetime.timedelta(minutes=minute)
            await objects.create(Tweet, user=user, message=message, created_date=created)


def by_user(rows: list[tuple[str, str | None, Any]]) -> str:
    """``huey: huey 4, huey 3 | mickey: ...``: (username, message, date) rows, newest first."""
    groups: dict[str, list[tuple[Any, str]]] = {}
    for username, message, created in rows:
        if message is not None:
            groups.setdefault(username, []).append((str(created), message))
    return " | ".join(
        f"{name}: " + ", ".join(message for _, message in sorted(groups[name], reverse=True))
        for name in sorted(groups)
    )


async def top_item_per_group(objects: peewee_async.Manager, backend: str) -> None:
    section("Top item per group (each user's newest tweet)")

    async def max_subquery() -> str:
        tweet_alias = Tweet.alias()
        subquery = (
            tweet_alias.select(tweet_alias.user, fn.MAX(tweet_alias.created_date).alias("max_ts"))
            .group_by(tweet_alias.user)
            .alias("tweet_max_subquery")
        )
        query = (
            Tweet.select(Tweet, HacksUser)
            .join(HacksUser)
            .switch(Tweet)
            .join(
                subquery,
                on=((Tweet.created_date == subquery.c.max_ts) & (Tweet.user == subquery.c.user_id)),
            )
        )
        rows = await objects.execute(query)
        return by_user([(t.user.username, t.message, t.created_date) for t in rows])

    async def group_by_having() -> str:
        query = (
            Tweet.select(Tweet, HacksUser)
            .join(HacksUser)
            .group_by(Tweet.user)
            .having(Tweet.created_date == fn.MAX(Tweet.created_date))
        )
        rows = await objects.execute(query)
        return by_user([(t.user.username, t.message, t.created_date) for t in rows])

    await variant("MAX() in a subquery", max_subquery)
    if backend == "mysql":
        # MySQL/MariaDB may run it, but give no guarantee of what it returns.
        unsupported(
            "GROUP BY ... HAVING MAX()",
            "MySQL and MariaDB take the columns outside GROUP BY from any row of the group, "
            "not from the one with the MAX()",
        )
    else:
        # SQLite takes them from the row with the MAX(); PostgreSQL refuses the query.
        await variant("GROUP BY ... HAVING MAX()", group_by_having, may_refuse=True)


async def top_n_per_group(objects: peewee_async.Manager, backend: str) -> None:
    section(f"Top {TOP_N} per group (each user's {TOP_N} newest tweets)")

    def newest_of_user(columns: list[Any]) -> Any:
        return (
            Tweet.select(*columns)
            .where(Tweet.user == HacksUser.id)
            .order_by(Tweet.created_date.desc())
            .limit(TOP_N)
            .alias("pq")
        )

    async def lateral_from_user() -> str:
        subq = newest_of_user([Tweet.message, Tweet.created_date])
        query = (
            HacksUser.select(HacksUser, subq.c.message, subq.c.created_date)
            .join(subq, JOIN.LEFT_LATERAL)
            .order_by(HacksUser.username, subq.c.created_date.desc())
        )
        rows = await objects.execute(query)
        return by_user([(u.username, u.message, u.created_date) for u in rows])

    async def lateral_from_tweet() -> str:
        subq = newest_of_user([Tweet.message, Tweet.created_date])
        query = (
            Tweet.select(HacksUser.username, subq.c.message, subq.c.created_date)
            .from_(HacksUser)
            .join(subq, JOIN.LEFT_LATERAL)
            .order_by(HacksUser.username, subq.c.created_date.desc())
        )
        rows = await objects.execute(query)
        return by_user([(t.username, t.message, t.created_date) for t in rows])

    async def window_rank() -> str:
        tweet_alias = Tweet.alias()
        subquery = (
            tweet_alias.select(
                tweet_alias.message,
                tweet_alias.created_date,
                HacksUser.username,
                fn.RANK()
                .over(partition_by=[tweet_alias.user], order_by=[tweet_alias.created_date.desc()])
                .alias("rnk"),
            )
            .join(HacksUser, on=(tweet_alias.user == HacksUser.id))
            .alias("subq")
        )
        query = (
            Tweet.select(subquery.c.message, subquery.c.created_date, subquery.c.username)
            .from_(subquery)
            .where(subquery.c.rnk <= TOP_N)
        )
        rows = await objects.execute(query)
        return by_user([(t.username, t.message, t.created_date) for t in rows])

    async def count_subquery() -> str:
        tweet_alias = Tweet.alias()
        newer = tweet_alias.select(fn.COUNT(tweet_alias.id)).where(
            (tweet_alias.created_date >= Tweet.created_date) & (tweet_alias.user == Tweet.user)
        )
        query = Tweet.select(Tweet, HacksUser).join(HacksUser).where(newer <= TOP_N)
        rows = await objects.execute(query)
        return by_user([(t.user.username, t.message, t.created_date) for t in rows])

    async def self_join_having() -> str:
        tweet_alias = Tweet.alias()
        query = (
            Tweet.select(Tweet.id, Tweet.message, Tweet.created_date, Tweet.user, HacksUser.username)
            .join(HacksUser)
            .switch(Tweet)
            .join(
                tweet_alias,
                on=((tweet_alias.user == Tweet.user) & (tweet_alias.created_date >= Tweet.created_date)),
            )
            .group_by(Tweet.id, Tweet.message, Tweet.created_date, Tweet.user, HacksUser.username)
            .having(fn.COUNT(Tweet.id) <= TOP_N)
        )
        rows = await objects.execute(query)
        return by_user([(t.user.username, t.message, t.created_date) for t in rows])

    async def limit_subquery() -> str:
        tweet_alias = Tweet.alias()
        query = (
            Tweet.select(Tweet, HacksUser)
            .join(HacksUser)
            .where(
                Tweet.id
                << (
                    tweet_alias.select(tweet_alias.id)
                    .where(tweet_alias.user == Tweet.user)
                    .order_by(tweet_alias.created_date.desc())
                    .limit(TOP_N)
                )
            )
        )
        rows = await objects.execute(query)
        return by_user([(t.user.username, t.message, t.created_date) for t in rows])

    if backend == "postgresql":
        await variant("LATERAL join, from HacksUser", lateral_from_user)
        await variant("LATERAL join, from Tweet", lateral_from_tweet)
    elif backend == "mysql" and not is_mariadb(objects):
        # MySQL has LATERAL since 8.0.14; the server answers for older ones.
        await variant("LATERAL join, from HacksUser", lateral_from_user, may_refuse=True)
        await variant("LATERAL join, from Tweet", lateral_from_tweet, may_refuse=True)
    else:
        reason = "MariaDB has no LATERAL joins" if backend == "mysql" else "SQLite has no LATERAL joins"
        unsupported("LATERAL joins", reason)
    await variant("window function RANK()", window_rank)
    await variant("COUNT() in a correlated subquery", count_subquery)
    await variant("self-join, COUNT() in HAVING", self_join_having)
    # MySQL and MariaDB refuse LIMIT in an IN subquery.
    await variant("LIMIT in an IN (subquery)", limit_subquery, may_refuse=backend == "mysql")


# -- custom SQLite functions ---------------------------------------------------------


class Account(BaseModel):
    username = peewee.CharField(unique=True)
    password = peewee.CharField()

    class Meta:
        table_name = "hacks_account"


SCRYPT = {"n": 2**14, "r": 8, "p": 1}


def register_password_functions(db: peewee_async.SqliteDatabase) -> None:
    """The recipe's make_password/check_password, hashing with scrypt (a real KDF).

    ``@db.func()`` registers them on every connection SQLite opens, the async
    ones included: they run inside SQLite, in aiosqlite's thread, off the loop.
    """

    def kdf(raw_password: str, salt: bytes) -> bytes:
        return hashlib.scrypt(raw_password.encode("utf8"), salt=salt, maxmem=64 * 2**20, **SCRYPT)

    @db.func()
    def make_password(raw_password: str) -> str:
        salt = secrets.token_bytes(16)
        params = "{n}${r}${p}".format(**SCRYPT)
        return f"scrypt${params}${salt.hex()}${kdf(raw_password, salt).hex()}"

    @db.func()
    def check_password(raw_password: str, enc_password: str) -> bool:
        algorithm, n, r, p, salt, expected = enc_password.split("$")
        if algorithm != "scrypt" or (int(n), int(r), int(p)) != tuple(SCRYPT.values()):
            return False
        return hmac.compare_digest(kdf(raw_password, bytes.fromhex(salt)).hex(), expected)


async def sqlite_functions(objects: peewee_async.Manager, backend: str) -> None:
    section("Custom SQLite functions (make_password / check_password)")
    if backend != "sqlite":
        unsupported("@db.func()", "SQLite only: PostgreSQL and MySQL have no Python functions")
        return
    await objects.execute(Account.insert(username="charlie", password=fn.make_password("testing")))
    account = await objects.get(Account, username="charlie")
    algorithm, n, r, p, salt, digest = account.password.split("$")
    show(
        "stored password",
        f"{algorithm}${n}${r}${p}$<{len(salt) // 2}-byte salt>$<{len(digest) // 2}-byte hash>",
    )

    async def login(username: str, password: str) -> bool:
        query = Account.select().where(
            (Account.username == username) & (fn.check_password(password, Account.password) == True)  # noqa: E712
        )
        try:
            await objects.get(query)
        except Account.DoesNotExist:
            return False
        return True

    show("login charlie / testing", "accepted" if await login("charlie", "testing") else "rejected")
    show("login charlie / wrong", "accepted" if await login("charlie", "wrong") else "rejected")


# -- date math -------------------------------------------------------------------


class Schedule(BaseModel):
    interval = peewee.IntegerField()  # run every `interval` seconds

    class Meta:
        table_name = "hacks_schedule"


class Task(BaseModel):
    schedule = peewee.ForeignKeyField(Schedule, backref="tasks")
    command = peewee.TextField()
    last_run = peewee.DateTimeField()

    class Meta:
        table_name = "hacks_task"


NOW = datetime.datetime(2024, 1, 1, 12, 0, 0)


async def date_math(objects: peewee_async.Manager, backend: str) -> None:
    section(f"Date math (tasks due at {NOW:%Y-%m-%d %H:%M:%S})")
    every_10s = await objects.create(Schedule, interval=10)
    hourly = await objects.create(Schedule, interval=3600)
    for schedule, command, last_run in [
        (every_10s, "backup", "11:59:55"),
        (every_10s, "report", "11:59:40"),
        (hourly, "cleanup", "10:30:00"),
        (hourly, "reindex", "11:30:00"),
    ]:
        when = datetime.datetime.combine(NOW.date(), datetime.time.fromisoformat(last_run))
        await objects.create(Task, schedule=schedule, command=command, last_run=when)

    now: Any
    if backend == "postgresql":
        second = SQL("INTERVAL '1 second'")
        next_occurrence = Task.last_run + (Schedule.interval * second)
        now = Value(NOW)
    elif backend == "mysql":
        interval = NodeList((SQL("INTERVAL"), Schedule.interval, SQL("SECOND")))
        next_occurrence = fn.date_add(Task.last_run, interval)
        now = Value(NOW)
    else:
        # No datetime type: to a unix timestamp, add the seconds, and back.
        next_ts = fn.strftime("%s", Task.last_run) + Schedule.interval
        next_occurrence = fn.datetime(next_ts, "unixepoch")
        now = Value(NOW.strftime("%Y-%m-%d %H:%M:%S"))  # the text form SQLite compares

    query = (
        Task.select(Task, Schedule, next_occurrence.alias("next_run")).join(Schedule).order_by(Task.command)
    )
    for task in await objects.execute(query):
        show(f"{task.command} (every {task.schedule.interval}s)", f"next run {str(task.next_run)[:19]}")
    due = await objects.execute(Task.select(Task, Schedule).join(Schedule).where(now >= next_occurrence))
    show("due now", ", ".join(sorted(task.command for task in due)))


# -- running it ------------------------------------------------------------------------

MODELS = [HacksUser, Tweet, Account, Schedule, Task]


def section(title: str) -> None:
    print(f"\n== {title} ==")


def show(label: str, *values: Any) -> None:
    print(f"  {label}: " + ", ".join(str(value) for value in values))


def unsupported(label: str, reason: str) -> None:
    print(f"  {label}: not supported here ({reason})")


async def variant(label: str, run: Callable[[], Awaitable[str]], may_refuse: bool = False) -> None:
    try:
        result = await run()
    except peewee.DatabaseError as exc:
        if not may_refuse:
            raise
        unsupported(label, f"the server refused it: {str(exc).splitlines()[0]}")
        return
    show(label, result)


def is_mariadb(objects: peewee_async.Manager) -> bool:
    # MariaDB numbers its versions from 10 on, MySQL below that (peewee tells them apart so too).
    return tuple(getattr(objects.database, "server_version", None) or ()) >= (10,)


def backend_of(db: peewee_async.AsyncDatabase) -> str:
    if isinstance(db, peewee.PostgresqlDatabase):
        return "postgresql"
    if isinstance(db, peewee.MySQLDatabase):
        return "mysql"
    return "sqlite"


async def main(db: peewee_async.AsyncDatabase) -> None:
    backend = backend_of(db)
    database.initialize(db)
    if isinstance(db, peewee_async.SqliteDatabase):
        register_password_functions(db)
    objects = peewee_async.Manager(db)
    with objects.allow_sync():
        db.drop_tables(MODELS)
        db.create_tables(MODELS)
    db.allow_sync = False  # from here on, every query goes through the Manager
    print(f"Running peewee's hacks on {db.describe()}")
    try:
        await optimistic_locking(objects)
        await seed_tweets(objects)
        await top_item_per_group(objects, backend)
        await top_n_per_group(objects, backend)
        await sqlite_functions(objects, backend)
        await date_math(objects, backend)
    finally:
        await objects.close()
        with objects.allow_sync():
            db.drop_tables(MODELS)


def database_from(url: str | None) -> peewee_async.AsyncDatabase:
    if not url:
        path = Path(tempfile.mkdtemp(prefix="peewee_async_hacks_")) / "hacks.db"
        url = f"sqlite:///{path}"
    return peewee_async.db_url.connect(url)


if __name__ == "__main__":
    asyncio.run(main(database_from(sys.argv[1] if len(sys.argv) > 1 else os.environ.get("DATABASE_URL"))))
