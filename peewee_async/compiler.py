"""Where a peewee query becomes SQL and parameters: one function, and the cache of compiled statements.

Every path that runs a query (``execute()``, the Manager's shortcuts,
``iterate()``) compiles it here, with the database's own SQL context, so
peewee writes exactly the SQL it would write for sync code. The statements
that :mod:`.shapes` compiles once and reuses live in the database's
:class:`StatementCache`.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Hashable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .databases.base import AsyncDatabase

logger = logging.getLogger("peewee.async")

#: Compiled statements one database keeps by default.
DEFAULT_STATEMENT_CACHE_SIZE = 1000


def compile_query(database: AsyncDatabase, query: Any) -> tuple[str, list[Any]]:
    """The SQL of ``query`` on ``database`` and its parameters, as peewee's ``Database.execute`` makes them.

    The SQL is in the driver's parameter style. peewee's SQL may depend on the
    server version, which an async database reads when its pool opens: compile
    once a connection was picked.
    """
    sql, params = database.get_sql_context().sql(query).query()
    driver = database.driver
    return (driver.driver_sql(sql) if driver.translates_sql else sql), params


class StatementCache(OrderedDict[Hashable, Any]):
    """Compiled statements of one database, by key: bounded, the least recently used pruned first.

    An ``OrderedDict``, so that the look-up every statement makes (``get``,
    then ``move_to_end`` to mark it used) runs in C; only keeping a new
    statement is ours.

    :param max_size: most statements kept; 0 keeps none.
    """

    def __init__(self, owner: str, max_size: int = DEFAULT_STATEMENT_CACHE_SIZE) -> None:
        super().__init__()
        if max_size < 0:
            raise ValueError(f"statement_cache_size must be 0 or more, got {max_size!r}")
        self.max_size = max_size
        self._owner = owner
        self._pruned = 0

    def put(self, key: Hashable, entry: Any) -> None:
        """Keep ``entry`` for ``key``, pruning the least recently used entry when full."""
        if self.max_size == 0:
            return
        self[key] = entry
        self.move_to_end(key)
        if len(self) > self.max_size:
            self.popitem(last=False)
            # One line for each cache-full of pruned statements, not one per statement.
            if self._pruned % self.max_size == 0:
                logger.info(
                    "Statement cache of %s is full (statement_cache_size=%d): pruning the least "
                    "recently used statements. Raise statement_cache_size if this repeats.",
                    self._owner,
                    self.max_size,
                )
            self._pruned += 1
