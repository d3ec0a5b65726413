"""What a statement means to do, told to the place that picks its connection.

:meth:`AsyncDatabase._connection <peewee_async.databases.base.AsyncDatabase._connection>`
picks where each statement runs; the callers, which alone know what a
statement does, say it with an :class:`Intent`. Today every intent outside a
transaction borrows a connection of the one pool; the intent is what lets a
read go elsewhere (a replica) without any caller changing.
"""

from __future__ import annotations

import enum


class Intent(enum.Enum):
    """What a statement means to do."""

    READ = "read"  # a select, outside a transaction
    WRITE = "write"  # an insert, update or delete, or SQL whose effect is unknown
    STREAM = "stream"  # the rows of an iterate() loop, read while the loop runs
    TRANSACTION = "transaction"  # the statements that open, end and nest a transaction
