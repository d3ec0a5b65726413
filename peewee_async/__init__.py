"""peewee-async: asyncio for the peewee ORM.

peewee builds the SQL and the model instances; this package runs the queries on
asyncio drivers (aiopg, aiomysql, aiosqlite), with task-local transactions, while the same
database objects keep serving sync peewee code.
"""

from . import db_url
from .databases import (
    AsyncDatabase,
    MySQLDatabase,
    PooledMySQLDatabase,
    PooledPostgresqlDatabase,
    PostgresqlDatabase,
    SqliteDatabase,
)
from .errors import PoolTimeout, SyncQueryError, TransactionError, WrongDatabaseError, WrongLoopError
from .lowlevel import (
    atomic,
    count,
    create_object,
    delete_object,
    execute,
    get_object,
    prefetch,
    savepoint,
    scalar,
    transaction,
    update_object,
)
from .manager import Manager
from .transactions import Transaction

__version__ = "1.0.0"

__all__ = [
    "AsyncDatabase",
    "Manager",
    "MySQLDatabase",
    "PoolTimeout",
    "PooledMySQLDatabase",
    "PooledPostgresqlDatabase",
    "PostgresqlDatabase",
    "SqliteDatabase",
    "SyncQueryError",
    "Transaction",
    "TransactionError",
    "WrongDatabaseError",
    "WrongLoopError",
    "atomic",
    "db_url",
    "count",
    "create_object",
    "delete_object",
    "execute",
    "get_object",
    "prefetch",
    "savepoint",
    "scalar",
    "transaction",
    "update_object",
]
