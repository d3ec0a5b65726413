"""peewee-async: asyncio for the peewee ORM.

peewee builds the SQL and the model instances; this package runs the queries on
asyncio drivers (asyncpg, psycopg 3, aiopg, asyncmy, aiomysql, aiosqlite), with
task-local transactions, while the same database objects keep serving sync peewee code.
"""

from . import db_url, testing
from .databases import AsyncDatabase
from .databases.registry import (
    AsyncmyDatabase,
    AsyncpgDatabase,
    MySQLDatabase,
    PooledAsyncmyDatabase,
    PooledAsyncpgDatabase,
    PooledMySQLDatabase,
    PooledPostgresqlDatabase,
    PooledPsycopgDatabase,
    PostgresqlDatabase,
    PsycopgDatabase,
    SqliteDatabase,
)
from .errors import (
    ConnectionLost,
    PoolTimeout,
    QueryTimeout,
    SyncQueryError,
    TransactionError,
    WrongDatabaseError,
    WrongLoopError,
)
from .lowlevel import (
    atomic,
    count,
    create_object,
    delete_object,
    execute,
    get_object,
    iterate,
    prefetch,
    savepoint,
    scalar,
    transaction,
    update_object,
)
from .manager import Manager
from .prepared import PreparedQuery
from .streaming import RowStream
from .transactions import Transaction

__version__ = "1.0.0"

__all__ = [
    "AsyncpgDatabase",
    "AsyncDatabase",
    "AsyncmyDatabase",
    "ConnectionLost",
    "Manager",
    "MySQLDatabase",
    "PoolTimeout",
    "PooledAsyncmyDatabase",
    "PooledAsyncpgDatabase",
    "PooledMySQLDatabase",
    "PooledPostgresqlDatabase",
    "PooledPsycopgDatabase",
    "PostgresqlDatabase",
    "PreparedQuery",
    "PsycopgDatabase",
    "QueryTimeout",
    "RowStream",
    "SqliteDatabase",
    "SyncQueryError",
    "Transaction",
    "TransactionError",
    "WrongDatabaseError",
    "WrongLoopError",
    "atomic",
    "db_url",
    "testing",
    "count",
    "create_object",
    "delete_object",
    "execute",
    "get_object",
    "iterate",
    "prefetch",
    "savepoint",
    "scalar",
    "transaction",
    "update_object",
]
