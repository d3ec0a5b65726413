"""Exceptions of peewee-async.

Every error we raise ourselves is a subclass of one of peewee's, so code that
already catches ``peewee.OperationalError`` or ``peewee.InterfaceError`` keeps
working. Driver errors are translated to peewee's classes by each driver's
error map (:class:`~peewee_async.databases.driver.ErrorMap`).
"""

from __future__ import annotations

import peewee


class SyncQueryError(peewee.InterfaceError, AssertionError):
    """A synchronous query ran while the database forbids them.

    Raised when ``database.allow_sync`` is ``False``. It subclasses
    ``AssertionError`` because the 0.x releases raised a bare assertion there,
    and ``peewee.InterfaceError`` because it is a misuse of the interface.
    """


class PoolTimeout(peewee.OperationalError):
    """No connection became free within the database's ``acquire_timeout``."""


class TransactionError(peewee.InterfaceError):
    """A transaction context manager was used in a way that cannot work."""


class WrongDatabaseError(peewee.InterfaceError):
    """A query's model is bound to a database other than the one asked to run it."""


class QueryTimeout(peewee.OperationalError):
    """A statement ran longer than its ``query_timeout``.

    The server was told to stop it (PostgreSQL: ``pg_cancel_backend``, MySQL:
    ``KILL QUERY``, SQLite: ``interrupt()``). Inside a transaction, the
    transaction cannot be trusted any more: leave its block, which rolls it back.
    """


class ConnectionLost(peewee.OperationalError):
    """The connection to the server broke (killed server-side, network cut) under a query or a loop.

    Outside a transaction the next query simply takes another connection.
    Inside one, the server has rolled the transaction back, and every further
    statement of the block raises this error too: the block is never continued
    on a new connection. Leave the block and run the whole transaction again.
    """


class WrongLoopError(peewee.InterfaceError, RuntimeError):
    """A database's async connections were asked for on an event loop they do not belong to.

    It subclasses ``RuntimeError`` too, which the 0.x releases raised here.
    """
