"""The database classes: peewee's databases with an async driver pool each."""

from .base import AsyncDatabase
from .mysql import MySQLDatabase, PooledMySQLDatabase
from .pool import Pool
from .postgres import PooledPostgresqlDatabase, PostgresqlDatabase
from .sqlite import SqliteDatabase

__all__ = [
    "AsyncDatabase",
    "MySQLDatabase",
    "Pool",
    "PooledMySQLDatabase",
    "PooledPostgresqlDatabase",
    "PostgresqlDatabase",
    "SqliteDatabase",
]
