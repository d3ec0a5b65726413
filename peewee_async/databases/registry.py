"""The public database classes: one row each, naming its family, its driver and its URL schemes.

Each class below is one row of the table: the family mixin it stands on
(what the database server is), the driver it runs on (``driver = ...``, an
adapter of :mod:`.driver`'s contract), and, in :func:`registered`, the
``db_url`` schemes that name it. The pip extra that installs the driver is the
driver's own :attr:`~.driver.Driver.extra`. ``peewee_asyncext`` adds its rows
the same way. Adding a driver is one adapter module and rows here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import peewee

from .aiomysql import AiomysqlDriver
from .aiopg import AiopgDriver
from .aiosqlite import AiosqliteDriver
from .asyncmy import AsyncmyDriver
from .asyncpg import AsyncpgDriver
from .base import AsyncDatabase
from .mysql import MySQLFamily
from .postgres import PostgresqlFamily
from .psycopg import PsycopgDriver
from .sqlite import SqliteFamily

D = TypeVar("D", bound=type[AsyncDatabase])


@dataclass(frozen=True)
class Entry:
    """One row of the table: a public class and the URL schemes that name it."""

    database_class: type[AsyncDatabase]
    schemes: tuple[str, ...]

    @property
    def family(self) -> str:
        return self.database_class.family

    @property
    def driver(self) -> str:
        return self.database_class.driver.name

    @property
    def extra(self) -> str:
        """The pip extra that installs the driver: ``pip install 'peewee-async[<extra>]'``."""
        return self.database_class.driver.extra


#: Every public database class, in the order they were declared.
TABLE: list[Entry] = []


def registered(*schemes: str) -> Callable[[D], D]:
    """Add the decorated class to :data:`TABLE`, named in URLs by ``schemes``."""

    def register(database_class: D) -> D:
        taken = {scheme for entry in TABLE for scheme in entry.schemes} & set(schemes)
        if taken:
            raise ValueError(f"URL scheme(s) {sorted(taken)} already name another database class")
        TABLE.append(Entry(database_class, schemes))
        return database_class

    return register


def schemes() -> dict[str, type[AsyncDatabase]]:
    """URL scheme -> database class, for every row."""
    return {scheme: entry.database_class for entry in TABLE for scheme in entry.schemes}


AIOPG = AiopgDriver()
PSYCOPG = PsycopgDriver()
ASYNCPG = AsyncpgDriver()
AIOMYSQL = AiomysqlDriver()
ASYNCMY = AsyncmyDriver()
AIOSQLITE = AiosqliteDriver()


@registered("postgres", "postgresql")
class PostgresqlDatabase(PostgresqlFamily, peewee.PostgresqlDatabase):
    """PostgreSQL for sync peewee and for async code on one aiopg connection.

    Concurrent tasks take turns on the one connection; use
    :class:`PooledPostgresqlDatabase` to run them side by side. Example::

        database = PostgresqlDatabase('test', user='postgres', host='127.0.0.1')
    """

    driver = AIOPG


@registered("postgres+pool", "postgresql+pool")
class PooledPostgresqlDatabase(PostgresqlDatabase):
    """PostgreSQL with a pool of up to ``max_connections`` (default 20) async connections.

    Example::

        database = PooledPostgresqlDatabase('test', max_connections=20)
    """

    default_max_connections = 20


@registered("postgres+asyncpg", "postgresql+asyncpg")
class AsyncpgDatabase(PostgresqlFamily, peewee.PostgresqlDatabase):
    """PostgreSQL for sync peewee and for async code on one asyncpg connection.

    The same as :class:`PostgresqlDatabase` on asyncpg. peewee's sync side of
    the object runs on psycopg 3 under peewee 4 (on psycopg2 under peewee 3.17). Example::

        database = AsyncpgDatabase('test', user='postgres', host='127.0.0.1')
    """

    driver = ASYNCPG


@registered("postgres+asyncpg+pool", "postgresql+asyncpg+pool")
class PooledAsyncpgDatabase(AsyncpgDatabase):
    """PostgreSQL on asyncpg with a pool of up to ``max_connections`` (default 20) async connections.

    Example::

        database = PooledAsyncpgDatabase('test', max_connections=20)
    """

    default_max_connections = 20


@registered("postgres+psycopg", "postgresql+psycopg")
class PsycopgDatabase(PostgresqlFamily, peewee.PostgresqlDatabase):
    """PostgreSQL for sync peewee and for async code on one psycopg 3 connection.

    The same as :class:`PostgresqlDatabase` on psycopg 3's ``AsyncConnection``.
    Under peewee 4 its sync side runs on psycopg 3 too. Example::

        database = PsycopgDatabase('test', user='postgres', host='127.0.0.1')
    """

    driver = PSYCOPG


@registered("postgres+psycopg+pool", "postgresql+psycopg+pool")
class PooledPsycopgDatabase(PsycopgDatabase):
    """PostgreSQL on psycopg 3 with a pool of up to ``max_connections`` (default 20) async connections.

    Example::

        database = PooledPsycopgDatabase('test', max_connections=20)
    """

    default_max_connections = 20


@registered("mysql")
class MySQLDatabase(MySQLFamily, peewee.MySQLDatabase):
    """MySQL/MariaDB for sync peewee and for async code on one aiomysql connection.

    Concurrent tasks take turns on the one connection; use
    :class:`PooledMySQLDatabase` to run them side by side. Example::

        database = MySQLDatabase('test', user='root', host='127.0.0.1')
    """

    driver = AIOMYSQL


@registered("mysql+pool")
class PooledMySQLDatabase(MySQLDatabase):
    """MySQL/MariaDB with a pool of up to ``max_connections`` (default 20) async connections.

    Example::

        database = PooledMySQLDatabase('test', max_connections=10)
    """

    default_max_connections = 20


@registered("mysql+asyncmy")
class AsyncmyDatabase(MySQLFamily, peewee.MySQLDatabase):
    """MySQL/MariaDB for sync peewee and for async code on one asyncmy connection.

    The same as :class:`MySQLDatabase` on asyncmy, a fork of aiomysql with a
    compiled protocol parser; the sync side runs on PyMySQL. Example::

        database = AsyncmyDatabase('test', user='root', host='127.0.0.1')
    """

    driver = ASYNCMY


@registered("mysql+asyncmy+pool")
class PooledAsyncmyDatabase(AsyncmyDatabase):
    """MySQL/MariaDB on asyncmy with a pool of up to ``max_connections`` (default 20) async connections.

    Example::

        database = PooledAsyncmyDatabase('test', max_connections=10)
    """

    default_max_connections = 20


@registered("sqlite")
class SqliteDatabase(SqliteFamily, peewee.SqliteDatabase):
    """SQLite for sync peewee and for async code, on aiosqlite.

    Async tasks share one connection and take turns (``max_connections=1``),
    which is what keeps concurrent writers from ever seeing "database is
    locked". With ``journal_mode=wal``, ``max_connections`` above one lets
    readers run beside the writer. Transactions begin with ``BEGIN IMMEDIATE``
    and wait up to ``timeout`` seconds for the write lock. An in-memory
    database (``':memory:'``) is a different database for each connection, so
    sync code and async code would not see each other's tables (use a file),
    and ``max_connections`` above one raises ``ValueError`` for it. Example::

        database = SqliteDatabase('app.db', pragmas={'journal_mode': 'wal'})
    """

    driver = AIOSQLITE
