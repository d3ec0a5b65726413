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
    return database.driver.driver_sql(sql), params


class StatementCache:
    """Compiled statements of one database, by key: bounded, the least recently used pruned first.

    :param max_size: most statements kept; 0 keeps none.
    """

    __slots__ = ("max_size", "_entries", "_owner", "_pruned")

    def __init__(self, owner: str, max_size: int = DEFAULT_STATEMENT_CACHE_SIZE) -> None:
        if max_size < 0:
            raise ValueError(f"statement_cache_size must be 0 or more, got {max_size!r}")
        self.max_size = max_size
        self._owner = owner
        self._entries: OrderedDict[Hashable, Any] = OrderedDict()
        self._pruned = 0

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key: Hashable) -> bool:
        return key in self._entries

    def get(self, key: Hashable) -> Any:
        """The entry of ``key`` (now the most recently used), or ``None``."""
        entries = self._entries
        entry = entries.get(key)
        if entry is not None:
            entries.move_to_end(key)
        return entry

    def put(self, key: Hashable, entry: Any) -> None:
        """Keep ``entry`` for ``key``, pruning the least recently used entry when full."""
        if self.max_size == 0:
            return
        entries = self._entries
        entries[key] = entry
        entries.move_to_end(key)
        if len(entries) > self.max_size:
            entries.popitem(last=False)
            # One line for each cache-full of pruned statements, not one per statement.
            if self._pruned % self.max_size == 0:
                logger.info(
                    "Statement cache of %s is full (statement_cache_size=%d): pruning the least "
                    "recently used statements. Raise statement_cache_size if this repeats.",
                    self._owner,
                    self.max_size,
                )
            self._pruned += 1

    def clear(self) -> None:
        """Forget every statement (they are compiled anew when next used)."""
        self._entries.clear()
