"""PostgreSQL with peewee's extensions (JSON, JSONB, HStore, arrays).

The classes here pair :mod:`playhouse.postgres_ext` with the PostgreSQL family
of :mod:`peewee_async`: fields of ``playhouse.postgres_ext`` round-trip through
the Manager as they do in sync peewee.
"""

from __future__ import annotations

from typing import Any, ClassVar

from playhouse.postgres_ext import PostgresqlExtDatabase as _PeeweePostgresqlExtDatabase

from peewee_async.databases.postgres import PostgresqlDriver, PostgresqlFamily
from peewee_async.databases.registry import AIOPG, ASYNCPG, PSYCOPG, registered

__all__ = [
    "AsyncpgExtDatabase",
    "PooledAsyncpgExtDatabase",
    "PooledPostgresqlExtDatabase",
    "PooledPsycopgExtDatabase",
    "PostgresqlExtDatabase",
    "PsycopgExtDatabase",
]


@registered("postgresext", "postgresqlext")
class PostgresqlExtDatabase(PostgresqlFamily, _PeeweePostgresqlExtDatabase):  # type: ignore[misc]
    """PostgreSQL with extensions, on one aiopg connection.

    JSON fields always work. HStore is on by default, as in 0.x: the database
    then needs ``CREATE EXTENSION hstore``; pass ``register_hstore=False`` if
    it has none. Example::

        database = PostgresqlExtDatabase('test', register_hstore=False)
    """

    driver: ClassVar[PostgresqlDriver] = AIOPG

    def __init__(self, *args: Any, register_hstore: bool = True, **kwargs: Any) -> None:
        super().__init__(*args, register_hstore=register_hstore, **kwargs)


@registered("postgresext+pool", "postgresqlext+pool")
class PooledPostgresqlExtDatabase(PostgresqlExtDatabase):
    """PostgreSQL with extensions and a pool of up to ``max_connections`` (default 20).

    Example::

        database = PooledPostgresqlExtDatabase('test', register_hstore=False, max_connections=20)
    """

    default_max_connections = 20


@registered("postgresext+psycopg", "postgresqlext+psycopg")
class PsycopgExtDatabase(PostgresqlExtDatabase):
    """PostgreSQL with extensions, on one psycopg 3 connection (``register_hstore`` as above).

    Example::

        database = PsycopgExtDatabase('test', register_hstore=False)
    """

    driver = PSYCOPG


@registered("postgresext+psycopg+pool", "postgresqlext+psycopg+pool")
class PooledPsycopgExtDatabase(PsycopgExtDatabase):
    """PostgreSQL with extensions on psycopg 3, with a pool of up to ``max_connections`` (default 20).

    Example::

        database = PooledPsycopgExtDatabase('test', register_hstore=False, max_connections=20)
    """

    default_max_connections = 20


@registered("postgresext+asyncpg", "postgresqlext+asyncpg")
class AsyncpgExtDatabase(PostgresqlExtDatabase):
    """PostgreSQL with extensions, on one asyncpg connection (``register_hstore`` as above).

    Example::

        database = AsyncpgExtDatabase('test', register_hstore=False)
    """

    driver = ASYNCPG


@registered("postgresext+asyncpg+pool", "postgresqlext+asyncpg+pool")
class PooledAsyncpgExtDatabase(AsyncpgExtDatabase):
    """PostgreSQL with extensions on asyncpg, with a pool of up to ``max_connections`` (default 20).

    Example::

        database = PooledAsyncpgExtDatabase('test', register_hstore=False, max_connections=20)
    """

    default_max_connections = 20
