"""The database classes: peewee's databases, each with a family, an async driver and a pool.

``base`` is what every async database shares; ``pool`` the connections of one
database; ``driver`` the contract a driver module implements; ``postgres``,
``mysql`` and ``sqlite`` the families; ``aiopg``, ``aiomysql`` and
``aiosqlite`` the driver modules; ``registry`` the table of public classes.
"""

from .base import AsyncDatabase
from .pool import Pool
from .registry import (
    MySQLDatabase,
    PooledMySQLDatabase,
    PooledPostgresqlDatabase,
    PostgresqlDatabase,
    SqliteDatabase,
)

__all__ = [
    "AsyncDatabase",
    "MySQLDatabase",
    "Pool",
    "PooledMySQLDatabase",
    "PooledPostgresqlDatabase",
    "PostgresqlDatabase",
    "SqliteDatabase",
]
