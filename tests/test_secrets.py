"""No password in any exception message, ``repr()`` or log record, on success and failure paths.

Every log record of every logger is collected at DEBUG, and every exception
raised (with its causes and contexts) is rendered; none may hold the password
used. The paths: connecting (both sides) with the right password, a wrong one,
a server that refuses connections, a pool timeout, bad options, bad URLs, and a
database name that is itself a URL holding the password.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from typing import Any

import peewee
import pytest

import peewee_async
import peewee_asyncext  # noqa: F401 - adds its classes to the table
from peewee_async import db_url
from peewee_async.databases import registry
from peewee_async.redact import redact_url

from . import servers

SECRET = "Sekr1t-pw-do-not-show"
CLASSES = [e.database_class for e in registry.TABLE if e.family in ("postgresql", "mysql")]
SCHEMES = {e.database_class: e.schemes[0] for e in registry.TABLE}


class Shown:
    """Everything the library showed during a test: log records, exceptions, reprs."""

    def __init__(self, caplog: pytest.LogCaptureFixture) -> None:
        self.caplog = caplog
        self.texts: list[str] = []

    def exception(self, exc: BaseException) -> None:
        seen: set[int] = set()
        todo: list[BaseException | None] = [exc]
        while todo:
            current = todo.pop()
            if current is None or id(current) in seen:
                continue
            seen.add(id(current))
            self.texts += [str(current), repr(current), *map(repr, current.args)]
            todo += [current.__cause__, current.__context__]

    def text(self, value: Any) -> None:
        self.texts.append(value if isinstance(value, str) else repr(value))

    def all(self) -> list[str]:
        records = [
            record.getMessage()
            + (self.caplog.handler.formatter or logging.Formatter()).formatException(record.exc_info)
            if record.exc_info
            else record.getMessage()
            for record in self.caplog.records
        ]
        return self.texts + records

    def assert_no(self, secret: str) -> None:
        leaks = [text for text in self.all() if secret in text]
        assert not leaks, f"the password was shown: {leaks[:3]}"


@pytest.fixture
def shown(caplog: pytest.LogCaptureFixture) -> Iterator[Shown]:
    caplog.set_level(logging.DEBUG)
    shown = Shown(caplog)
    yield shown
    shown.assert_no(SECRET)


def settings_of(cls: type[peewee_async.AsyncDatabase]) -> dict[str, Any]:
    server = "postgres" if cls.family == "postgresql" else "mysql"
    settings = servers.server_settings(server)
    return {key: settings[key] for key in ("host", "port", "user")}


async def fails(shown: Shown, database: peewee_async.AsyncDatabase, sql: str = "SELECT 1") -> BaseException:
    shown.text(database)
    try:
        with pytest.raises((peewee.PeeweeException, TypeError)) as failure:
            await database.execute_sql_async(sql)
    finally:
        await database.close_async()
        await asyncio.sleep(0.01)  # the failed connection's socket closes at the loop's next pass
    shown.exception(failure.value)
    return failure.value


def sync_fails(shown: Shown, database: peewee_async.AsyncDatabase) -> None:
    with pytest.raises(peewee.PeeweeException) as failure:
        database.connect()
    shown.exception(failure.value)


@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.__name__)
async def test_a_wrong_password(cls: Any, shown: Shown) -> None:
    settings = settings_of(cls)
    if cls.family == "postgresql":
        # The machine's server trusts every local user: a role that does not exist is refused.
        settings["user"] = "no_such_role"
    database = servers.new_database(cls, **settings, password=SECRET)
    await fails(shown, database)
    sync_fails(shown, database)


def tls_server(cls: type[peewee_async.AsyncDatabase]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The connect settings of the TLS server of ``cls``'s family (a real password), and its TLS settings."""
    state = servers.script_servers()
    server = state["postgresql-tls" if cls.family == "postgresql" else "mariadb-tls"]
    tls = (
        {"sslmode": "verify-full", "sslrootcert": state["certificates"]["ca"]}
        if cls.family == "postgresql"
        else {"ssl_ca": state["certificates"]["ca"]}
    )
    return {key: server[key] for key in ("host", "port", "user", "password")}, tls


@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.__name__)
async def test_the_tls_servers_wrong_and_right_password(cls: Any, shown: Shown) -> None:
    server, tls = tls_server(cls)
    database = servers.new_database(cls, **{**server, "password": SECRET}, **tls)
    await fails(shown, database)
    sync_fails(shown, database)
    # The right password, both sides: nothing shows it either.
    good = servers.new_database(cls, **server, **tls)
    shown.text(good)
    await good.execute_sql_async("SELECT 1")
    await good.close_async()
    good.connect()
    good.close()
    shown.assert_no(server["password"])


@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.__name__)
async def test_connection_refused(cls: Any, shown: Shown) -> None:
    database = servers.new_database(
        cls, host="127.0.0.1", port=1, user="app", password=SECRET, connect_timeout=5
    )
    await fails(shown, database)
    sync_fails(shown, database)


@pytest.mark.parametrize(
    "cls", [c for c in CLASSES if c.default_max_connections > 1], ids=lambda c: c.__name__
)
async def test_pool_timeout(cls: Any, shown: Shown) -> None:
    server, tls = tls_server(cls)
    database = servers.new_database(cls, **server, **tls, max_connections=1, acquire_timeout=0.2)
    objects = peewee_async.Manager(database)
    held = asyncio.Event()
    release = asyncio.Event()

    async def hold() -> None:
        async with objects.transaction():
            held.set()
            await release.wait()

    holder = asyncio.create_task(hold())
    await held.wait()
    try:
        with pytest.raises(peewee_async.PoolTimeout) as failure:
            await database.execute_sql_async("SELECT 1")
        shown.exception(failure.value)
        shown.text(database)
    finally:
        release.set()
        await holder
        await database.close_async()
    shown.assert_no(server["password"])


@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.__name__)
async def test_bad_options(cls: Any, shown: Shown) -> None:
    database = servers.new_database(cls, **settings_of(cls), password=SECRET, max_conections=3)
    await fails(shown, database)
    with pytest.raises((ValueError, TypeError)) as failure:
        servers.new_database(cls, password=SECRET, sslmode="bogus", ssl_mode="bogus")
    shown.exception(failure.value)


@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.__name__)
def test_bad_urls(cls: Any, shown: Shown) -> None:
    scheme = SCHEMES[cls]
    for url in (
        f"nosuch+{scheme}://app:{SECRET}@db.example.com/app",
        f"{scheme}://app:{SECRET}@db.example.com/",
        f"{scheme}://app:{SECRET}@db.example.com:5432/app?sslmode=bogus&ssl_mode=bogus",
    ):
        with pytest.raises((ValueError, TypeError)) as failure:
            db_url.connect(url)
        shown.exception(failure.value)
    database = db_url.connect(f"{scheme}://app:{SECRET}@127.0.0.1:1/app?connect_timeout=5")
    shown.text(database)
    shown.text(database.describe())


@pytest.mark.parametrize("cls", [c for c in CLASSES if c.family == "postgresql"], ids=lambda c: c.__name__)
async def test_a_url_as_the_database_name(cls: Any, shown: Shown) -> None:
    # libpq takes a URL as the database name; messages name it redacted.
    database = servers.new_database(cls, f"postgresql://app:{SECRET}@127.0.0.1:1/app", connect_timeout=5)
    assert "app:***@127.0.0.1:1/app" in repr(database)
    await fails(shown, database)
    sync_fails(shown, database)


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("postgresql://app:s3cr@t@db.example.com:5432/app", "postgresql://app:***@db.example.com:5432/app"),
        ("mysql://root:@db/app", "mysql://root:***@db/app"),
        (
            "postgres://u:p@h/d?password=zz&sslmode=require",
            "postgres://u:***@h/d?password=***&sslmode=require",
        ),
        ("postgresql://app@db/app", "postgresql://app@db/app"),
        ("host=db password='a b' dbname=app", "host=db password=*** dbname=app"),
        ("sqlite:///a:b@c.db", "sqlite:///a:b@c.db"),
    ],
)
def test_redact_url(url: str, shown: str) -> None:
    assert redact_url(url) == shown
