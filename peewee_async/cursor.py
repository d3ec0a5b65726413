"""A DB-API cursor look-alike over rows that were already fetched.

peewee turns cursors into model instances, dicts or tuples with its cursor
wrappers, and reads ``lastrowid``/``rowcount`` off a cursor for writes. The
drivers' cursors are asynchronous, so we fetch the rows first and hand peewee
this small synchronous stand-in: its own result machinery then runs unchanged.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any


class FetchedCursor:
    """The result of one statement, fully read: rows, description and counts."""

    __slots__ = ("rows", "_position", "description", "rowcount", "lastrowid")

    def __init__(
        self,
        rows: Sequence[Sequence[Any]],
        description: Sequence[Sequence[Any]] | None,
        rowcount: int,
        lastrowid: Any = None,
    ) -> None:
        #: Every row of the result, whatever has been fetched (an attribute, not
        #: a property: it is read once per statement).
        self.rows = rows
        self._position = 0
        self.description = description
        self.rowcount = rowcount
        self.lastrowid = lastrowid

    def fetchone(self) -> Sequence[Any] | None:
        if self._position >= len(self.rows):
            return None
        row = self.rows[self._position]
        self._position += 1
        return row

    def fetchmany(self, size: int = 1) -> list[Sequence[Any]]:
        start = self._position
        self._position = min(start + size, len(self.rows))
        return list(self.rows[start : self._position])

    def fetchall(self) -> list[Sequence[Any]]:
        start, self._position = self._position, len(self.rows)
        return list(self.rows[start:])

    def __iter__(self) -> Iterator[Sequence[Any]]:
        while (row := self.fetchone()) is not None:
            yield row

    def close(self) -> None:
        """Nothing to release: the driver's cursor is closed already."""
