"""PostgreSQL with peewee's extensions (JSON, JSONB, HStore, arrays).

The classes here pair :mod:`playhouse.postgres_ext` with the PostgreSQL family
of :mod:`peewee_async`: fields of ``playhouse.postgres_ext`` round-trip through
the Manager as they do in sync peewee.
"""

from __future__ import annotations

from typing import Any

from playhouse.postgres_ext import PostgresqlExtDatabase as _PeeweePostgresqlExtDatabase

from peewee_async.databases.postgres import PostgresqlFamily
from peewee_async.databases.registry import AIOPG, registered

__all__ = ["PooledPostgresqlExtDatabase", "PostgresqlExtDatabase"]


@registered("postgresext", "postgresqlext")
class PostgresqlExtDatabase(PostgresqlFamily, _PeeweePostgresqlExtDatabase):  # type: ignore[misc]
    """PostgreSQL with extensions, on one aiopg connection.

    JSON fields always work. HStore is on by default, as in 0.x: the database
    then needs ``CREATE EXTENSION hstore``; pass ``register_hstore=False`` if
    it has none. Example::

        database = PostgresqlExtDatabase('test', register_hstore=False)
    """

    driver = AIOPG

    def __init__(self, *args: Any, register_hstore: bool = True, **kwargs: Any) -> None:
        super().__init__(*args, register_hstore=register_hstore, **kwargs)


@registered("postgresext+pool", "postgresqlext+pool")
class PooledPostgresqlExtDatabase(PostgresqlExtDatabase):
    """PostgreSQL with extensions and a pool of up to ``max_connections`` (default 20).

    Example::

        database = PooledPostgresqlExtDatabase('test', register_hstore=False, max_connections=20)
    """

    default_max_connections = 20
