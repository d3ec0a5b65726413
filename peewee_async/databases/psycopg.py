"""The psycopg 3 driver (``psycopg.AsyncConnection``, autocommit), for the PostgreSQL family.

Under peewee 4 the sync side of the same object runs on psycopg 3 too (peewee's
``prefer_psycopg3``), peewee compiles for psycopg 3, and values are bound on the
server, as peewee's own psycopg 3 support does. peewee 3.17 knows psycopg2 only:
its sync side stays on psycopg2, and the async side binds values on the client
as psycopg2 does and reads bytea as psycopg2's memoryview.
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Sequence
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

import peewee

from ..cursor import FetchedCursor
from .driver import (
    KEPT_RESULT_ROWS,
    ConnectionHolder,
    ErrorMap,
    TransactionStatus,
    dbapi_errors,
    optional_import,
)
from .postgres import (
    PEEWEE_TAKES_PSYCOPG3,
    PREPARED_STATEMENT_ADVICE,
    PostgresqlDriver,
    connect_arguments,
    nul_in_text_error,
    prefer_psycopg3,
    server_said_goodbye,
)

if TYPE_CHECKING:
    from .base import AsyncDatabase

psycopg = optional_import("psycopg")
psycopg_adapt = optional_import("psycopg.adapt")
psycopg_pq = optional_import("psycopg.pq")
psycopg_types = optional_import("psycopg.types")
psycopg_waiting = optional_import("psycopg.waiting")
psycopg_array = optional_import("psycopg.types.array")
psycopg_hstore = optional_import("psycopg.types.hstore")
psycopg2_extras = optional_import("psycopg2.extras")
psycopg2_extensions = optional_import("psycopg2.extensions")


if psycopg is not None:
    #: Result statuses of a statement that returns rows (none, for ``SELECT ;``).
    _RESULTS_WITH_ROWS = (psycopg_pq.ExecStatus.TUPLES_OK, psycopg_pq.ExecStatus.SINGLE_TUPLE)
    _STATUS = {
        psycopg_pq.TransactionStatus.IDLE: TransactionStatus.IDLE,
        psycopg_pq.TransactionStatus.INERROR: TransactionStatus.FAILED,
        psycopg_pq.TransactionStatus.UNKNOWN: TransactionStatus.CLOSED,
    }

    class _Psycopg2JsonDumper(psycopg_adapt.Dumper):  # type: ignore[name-defined,misc]
        """psycopg2's ``Json`` wrapper, which peewee 3.17's JSON fields hand over, as JSON text."""

        # No type, as psycopg2 sends it: the server takes it as json or jsonb by its use.
        oid = 0

        def dump(self, obj: Any) -> bytes:
            dumps = getattr(obj, "_dumps", None) or json.dumps
            return str(dumps(obj.adapted)).encode()

    class _Psycopg2BinaryDumper(psycopg_adapt.Dumper):  # type: ignore[name-defined,misc]
        """psycopg2's ``Binary`` wrapper, which peewee's BlobField makes under peewee 3.17, as bytea."""

        oid = psycopg.adapters.types["bytea"].oid

        def __init__(self, cls: type, context: Any = None) -> None:
            super().__init__(cls, context)
            self._bytes = psycopg.adapters.get_dumper(bytes, psycopg_adapt.PyFormat.TEXT)(bytes, context)

        def dump(self, obj: Any) -> Any:
            return self._bytes.dump(bytes(obj.adapted))

        def quote(self, obj: Any) -> Any:
            return self._bytes.quote(bytes(obj.adapted))

    def _wait_interval() -> float:
        """How often psycopg's ``AsyncConnection.wait()`` looks up from a wait: its default, else 0.1 s."""
        interval = inspect.signature(psycopg.AsyncConnection.wait).parameters.get("interval")
        default = getattr(interval, "default", None)
        return float(default) if isinstance(default, int | float) and default > 0 else 0.1

    _WAIT_INTERVAL = _wait_interval()

    class _Connection(psycopg.AsyncConnection):  # type: ignore[name-defined,misc]
        """psycopg's connection, except that a cancelled await returns at once.

        psycopg answers a cancellation by asking the server to stop the
        statement and then waiting (up to 5 s, twice) for its answer, which
        never comes over a stalled network. Our pool never reuses a connection
        whose statement was cut off: it asks the server to stop the statement,
        bounded by its ``cancel_grace``, and then closes the connection (see
        ``Pool._stop_cut_off``), so the cancellation takes effect now.
        """

        async def wait(self, gen: Any, interval: float = _WAIT_INTERVAL, timeout: float | None = None) -> Any:
            # The interval is psycopg's own: waiting with none (wait_async's
            # default, 0) wakes the event loop at every turn until the answer
            # comes, which kept a CPU busy for as long as each statement ran.
            return await psycopg_waiting.wait_async(
                gen, self.pgconn.socket, interval=interval, timeout=timeout
            )

    class _TextListDumper(psycopg_array.ListDumper):  # type: ignore[name-defined,misc]
        """A list of strings as a ``text[]``, as psycopg2 binds it (``ARRAY['a', 'b']``), not untyped.

        peewee 3.17's SQL counts on the type: ``hstore - %s`` deletes each key
        of a text[], but a single key named ``{a,b}`` of an untyped value.
        """

        def upgrade(self, obj: list[Any], format: Any) -> Any:
            dumper = super().upgrade(obj, format)
            if not dumper.oid and isinstance(self._find_list_element(obj, format), str):
                dumper.oid = psycopg.adapters.types["text"].array_oid
            return dumper

    _BYTEA_OID = psycopg.adapters.types["bytea"].oid
    _ByteaLoader = psycopg.adapters.get_loader(_BYTEA_OID, psycopg_pq.Format.TEXT)

    class _MemoryviewByteaLoader(psycopg_adapt.Loader):  # type: ignore[name-defined,misc]
        """bytea as a memoryview, as psycopg2 gives it to peewee 3.17's sync side of the same object."""

        def __init__(self, oid: int, context: Any = None) -> None:
            super().__init__(oid, context)
            self._load_bytes = _ByteaLoader(oid, context).load  # psycopg's own (compiled) loader

        def load(self, data: Any) -> Any:
            # Of chars ("c"), as psycopg2's: a memoryview equals only one of the same format.
            return memoryview(self._load_bytes(data)).cast("c")


class PsycopgDriver(PostgresqlDriver):
    """psycopg 3's asyncio connections; JSON, UUID and (with ``register_hstore``) hstore decoded."""

    name = "psycopg"
    extra = "psycopg"
    errors = ErrorMap(
        dbapi_errors(psycopg) if psycopg is not None else {},
        {
            psycopg.errors.InvalidSqlStatementName: PREPARED_STATEMENT_ADVICE,
            psycopg.errors.DuplicatePreparedStatement: PREPARED_STATEMENT_ADVICE,
        }
        if psycopg is not None
        else None,
    )

    def installed(self) -> bool:
        return psycopg is not None

    def init_options(self, options: dict[str, Any]) -> None:
        # The sync side adapts values for the driver the async side runs on.
        prefer_psycopg3(options, installed=psycopg is not None)

    async def connect(self, database: AsyncDatabase, timeout: float | None, plain: bool = False) -> Any:
        dsn, params = connect_arguments(database, timeout)
        if "database" in params:
            params["dbname"] = params.pop("database")
        if "connect_timeout" not in database.connect_params:
            # psycopg 3 enforces libpq's connect_timeout itself, where aiopg
            # leaves it to us: the pool's own bounds (connect_timeout for the
            # opening, acquire_timeout for a new connection) apply alone, as
            # they do on every driver, unless it was given explicitly.
            params.pop("connect_timeout", None)
        if getattr(database, "transaction_pooling", False):
            # A prepared statement lives in one server session; the pooler may
            # run the next transaction in another.
            params["prepare_threshold"] = None
        raw = await _Connection.connect(dsn or "", autocommit=True, **params)
        if plain:
            return raw
        try:
            if not PEEWEE_TAKES_PSYCOPG3 and psycopg2_extras is not None:
                # peewee 3.17 adapts values for psycopg2, and its sync side reads them back with it.
                raw.adapters.register_dumper(psycopg2_extras.Json, _Psycopg2JsonDumper)
                raw.adapters.register_dumper(psycopg2_extensions.Binary, _Psycopg2BinaryDumper)
                raw.adapters.register_loader(_BYTEA_OID, _MemoryviewByteaLoader)
                raw.adapters.register_dumper(list, _TextListDumper)
                # Its SQL counts on psycopg2's binding of values into the text (a
                # list becomes ARRAY[...], a text[]), which psycopg 3 does on the client.
                raw.cursor_factory = psycopg.AsyncClientCursor
            if getattr(database, "register_hstore", False):
                info = await psycopg_types.TypeInfo.fetch(raw, "hstore")
                if info is None:
                    raise peewee.ProgrammingError(
                        f"register_hstore is on, but {database.describe()} has no hstore type: run "
                        "CREATE EXTENSION hstore in it, or pass register_hstore=False."
                    )
                psycopg_hstore.register_hstore(info, raw)
        except BaseException:
            await raw.close()
            raise
        return raw

    async def close(self, conn: ConnectionHolder) -> None:
        await conn.raw.close()

    def terminate(self, conn: ConnectionHolder) -> None:
        # The libpq connection closes its socket without the event loop.
        conn.raw.pgconn.finish()

    def is_closed(self, conn: ConnectionHolder) -> bool:
        return bool(conn.raw.closed)

    def transaction_status(self, conn: ConnectionHolder) -> TransactionStatus:
        raw = conn.raw
        if raw.closed:
            return TransactionStatus.CLOSED
        return _STATUS.get(raw.pgconn.transaction_status, TransactionStatus.OPEN)

    def connection_lost(self, conn: ConnectionHolder) -> bool:
        raw = conn.raw
        return bool(raw.closed) or server_said_goodbye(raw.pgconn.socket)

    async def cancel_request(self, conn: ConnectionHolder, timeout: float) -> None:
        await conn.raw.cancel_safe(timeout=timeout)

    def session_id(self, conn: ConnectionHolder) -> int:
        return int(conn.raw.info.backend_pid)

    def version_source(self, conn: ConnectionHolder) -> Any:
        # peewee reads `server_version` (psycopg2's name for it) or
        # `pgconn.server_version` (its psycopg 3 adapter's), by the sync driver.
        raw = conn.raw
        return SimpleNamespace(server_version=raw.info.server_version, pgconn=raw.pgconn)

    async def execute(self, conn: ConnectionHolder, sql: str, params: Sequence[Any]) -> FetchedCursor:
        # A connection keeps one cursor while its results are small, as the
        # aiopg driver does: making a cursor costs a few percent of a statement.
        cursor = conn.kept
        conn.kept = None
        if cursor is None or cursor.closed:
            cursor = conn.raw.cursor()
        try:
            try:
                await cursor.execute(sql, params or None)
            except psycopg.DataError as exc:
                if "NUL" not in str(exc):
                    raise
                raise nul_in_text_error(str(exc)) from exc
            description = _description(cursor)
            rows = await cursor.fetchall() if description is not None else []
            result = FetchedCursor(rows, description, cursor.rowcount, None)
        except BaseException:
            await cursor.close()
            raise
        if len(rows) <= KEPT_RESULT_ROWS:
            conn.kept = cursor
        else:
            await cursor.close()
        return result


def _description(cursor: Any) -> list[tuple[Any, ...]] | None:
    """``cursor.description`` as DB-API 7-tuples of name and type code, as the asyncpg driver gives it.

    psycopg's own makes a ``Column`` object of each column, reading five
    attributes of the result for each: 7 µs for five columns at every
    statement, where this takes 1.4.
    """
    res = cursor.pgresult
    if res is None:
        return None
    count = res.nfields
    if not count and res.status not in _RESULTS_WITH_ROWS:
        return None
    fname, ftype, encoding = res.fname, res.ftype, cursor._encoding
    return [
        ((fname(i) or b"").decode(encoding) or f"column_{i + 1}", ftype(i), None, None, None, None, None)
        for i in range(count)
    ]
