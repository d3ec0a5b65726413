"""The database classes: peewee's databases, each with a family, an async driver and a pool.

``base`` is what every async database shares; ``pool`` the connections of one
database; ``driver`` the contract a driver module implements; ``postgres``,
``mysql`` and ``sqlite`` the families; ``asyncpg``, ``psycopg``, ``aiopg``,
``asyncmy``, ``aiomysql`` and ``aiosqlite`` the driver modules; ``registry`` the table of public classes,
which ``peewee_async`` exports.
"""

from .base import AsyncDatabase
from .pool import Pool

__all__ = ["AsyncDatabase", "Pool"]
