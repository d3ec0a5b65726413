"""PostgreSQL on aiopg: the pool hooks and the database classes."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import peewee

from ..cursor import FetchedCursor
from .base import AsyncDatabase
from .pool import Pool

try:
    import aiopg
    import psycopg2.extensions
except ImportError:  # pragma: no cover - reported when a pool opens
    aiopg = None  # type: ignore[assignment]


class AiopgPool(Pool):
    """A pool of aiopg connections (psycopg2 in asynchronous mode, always autocommit)."""

    _pool: Any = None

    async def open(self, timeout: float | None) -> None:
        if aiopg is None:
            raise peewee.ImproperlyConfigured(
                "PostgreSQL support needs aiopg: pip install 'peewee-async[postgresql]'"
            )
        db = self.database
        params = dict(db.connect_params)  # type: ignore[attr-defined]
        name = db.database  # type: ignore[attr-defined]
        dsn = None
        if name and name.startswith(("postgres://", "postgresql://")):
            dsn = name
        else:
            params["database"] = name
        params.setdefault("connect_timeout", _whole_seconds(timeout))
        self._pool = await aiopg.create_pool(
            dsn,
            minsize=self.min_size,
            maxsize=self.max_size,
            # aiopg applies this one timeout to every statement and acquire; we
            # bound acquire ourselves and leave statements unbounded, as psycopg2 does.
            timeout=None,  # type: ignore[arg-type]
            enable_json=True,
            enable_hstore=db.register_hstore,  # type: ignore[attr-defined]
            enable_uuid=True,
            **params,
        )

    def driver_connection(self, conn: Any) -> Any:
        return conn.raw

    async def _acquire_raw(self) -> Any:
        return await self._pool.acquire()

    def _release_raw(self, conn: Any) -> None:
        self._pool.release(conn)

    def _wake_next_waiter(self) -> None:
        pool = self._pool
        if pool is not None and (pool._free or pool.size < pool.maxsize):
            self._in_background(pool._wakeup())

    def _close_raw(self, conn: Any) -> None:
        conn.close()

    def is_closed(self, conn: Any) -> bool:
        return bool(conn.closed)

    def in_transaction(self, conn: Any) -> bool:
        status = conn.raw.get_transaction_status()
        return bool(status != psycopg2.extensions.TRANSACTION_STATUS_IDLE)

    async def _execute_raw(self, conn: Any, sql: str, params: Sequence[Any]) -> FetchedCursor:
        cursor = await conn.cursor()
        try:
            try:
                await cursor.execute(sql, params or None)
            except ValueError as exc:
                if "NUL" not in str(exc):
                    raise
                # psycopg2 refuses a NUL character while quoting, before sending
                # anything: the connection and its transaction are unharmed.
                raise peewee.DataError(
                    f"{exc} PostgreSQL text cannot contain NUL (0x00) characters: store binary "
                    "data in a BlobField (bytea), or remove the NUL characters from the text."
                ) from exc
            description = cursor.description
            rows = await cursor.fetchall() if description is not None else []
            return FetchedCursor(rows, description, cursor.rowcount, cursor.lastrowid)
        finally:
            cursor.close()

    async def _close_all(self, timeout: float | None) -> None:
        if self._pool is None:
            return
        self._pool.close()
        try:
            import asyncio

            async with asyncio.timeout(timeout):
                await self._pool.wait_closed()
        except TimeoutError:
            self._pool.terminate()
            await self._pool.wait_closed()

    def _terminate_raw(self) -> None:
        if self._pool is not None:
            # terminate() closes the connections in use; the idle ones are ours to close.
            while self._pool._free:
                self._pool._free.pop().close()
            self._pool.terminate()

    @property
    def size(self) -> int:
        return int(self._pool.size) if self._pool is not None else 0

    @property
    def freesize(self) -> int:
        return int(self._pool.freesize) if self._pool is not None else 0


def _whole_seconds(timeout: float | None) -> int:
    # libpq takes whole seconds; 0 would mean "wait for ever".
    return max(1, round(timeout)) if timeout else 0


class AiopgDatabase(AsyncDatabase):
    """What the PostgreSQL classes of ``peewee_async`` and ``peewee_asyncext`` share."""

    pool_class = AiopgPool

    @property
    def register_hstore(self) -> bool:
        """Whether connections decode hstore columns to dicts (the ext classes' option)."""
        return bool(getattr(self, "_register_hstore", False))

    def init(self, database: str | None, **kwargs: Any) -> None:
        # aiopg speaks psycopg2 only, so peewee must adapt values for psycopg2.
        kwargs.pop("prefer_psycopg3", None)
        super().init(database, **kwargs)  # type: ignore[misc]


class PostgresqlDatabase(AiopgDatabase, peewee.PostgresqlDatabase):  # type: ignore[misc]
    """PostgreSQL for sync peewee and for async code on one aiopg connection.

    Concurrent tasks take turns on the one connection; use
    :class:`PooledPostgresqlDatabase` to run them side by side. Example::

        database = PostgresqlDatabase('test', user='postgres', host='127.0.0.1')
    """


class PooledPostgresqlDatabase(PostgresqlDatabase):
    """PostgreSQL with a pool of up to ``max_connections`` (default 20) async connections.

    Example::

        database = PooledPostgresqlDatabase('test', max_connections=20)
    """

    default_max_connections = 20
