"""The asyncpg driver, for the PostgreSQL family.

asyncpg speaks PostgreSQL's protocol itself (no libpq) and returns its own
types. This module makes it look like the other PostgreSQL drivers to peewee:

* peewee's ``%s`` placeholders become ``$1, $2 ...`` (:func:`translate_placeholders`);
* the value wrappers of peewee's sync driver (``Json``, ``Binary`` of psycopg2
  or psycopg 3) are unwrapped to what asyncpg encodes;
* rows come back as tuples; JSON and JSONB decoded, UUIDs as :class:`uuid.UUID`,
  hstore as dicts with ``register_hstore``, as psycopg gives them.

Statements run through asyncpg's own statement cache (prepared statements;
see ``statement_cache_size`` among asyncpg's connect arguments, 0 behind
PgBouncer in transaction mode).
"""

from __future__ import annotations

import functools
import json
import re
import urllib.parse
import uuid
from collections.abc import Callable, Sequence
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

import peewee

from ..cursor import FetchedCursor
from .driver import ConnectionHolder, ErrorMap, TransactionStatus, optional_import
from .postgres import (
    LIBPQ_TLS_SETTINGS,
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

asyncpg = optional_import("asyncpg")
asyncpg_exceptions = optional_import("asyncpg.exceptions")
asyncpg_connect_utils = optional_import("asyncpg.connect_utils")
psycopg = optional_import("psycopg")
psycopg_json = optional_import("psycopg.types.json")
psycopg2_extras = optional_import("psycopg2.extras")
psycopg2_extensions = optional_import("psycopg2.extensions")


def _errors() -> dict[type[BaseException], type[peewee.PeeweeException]]:
    """asyncpg's exception classes (by SQLSTATE class) to peewee's, as psycopg2 maps the same classes."""
    if asyncpg_exceptions is None:
        return {}
    e = asyncpg_exceptions
    return {
        e.IntegrityConstraintViolationError: peewee.IntegrityError,  # 23
        e.DataError: peewee.DataError,  # 22
        e.SyntaxOrAccessError: peewee.ProgrammingError,  # 42
        e.FeatureNotSupportedError: peewee.NotSupportedError,  # 0A
        e.InvalidTransactionStateError: peewee.InternalError,  # 25
        e.InternalServerError: peewee.InternalError,  # XX
        e.OperatorInterventionError: peewee.OperationalError,  # 57 (query_canceled, admin_shutdown)
        e.InsufficientResourcesError: peewee.OperationalError,  # 53
        e.TransactionRollbackError: peewee.OperationalError,  # 40 (serialization failure, deadlock)
        e.PostgresConnectionError: peewee.OperationalError,  # 08
        e.InvalidAuthorizationSpecificationError: peewee.OperationalError,  # 28 (password, no such role)
        e.InvalidCatalogNameError: peewee.OperationalError,  # 3D (no such database)
        e.PostgresError: peewee.DatabaseError,
        e._base.DataError: peewee.DataError,  # a value asyncpg cannot encode for its parameter
        e.InterfaceError: peewee.InterfaceError,
        # A statement sent while the protocol still reads the server's last
        # words (its goodbye, as it shuts down).
        e._base.InternalClientError: peewee.InterfaceError,
        ConnectionError: peewee.OperationalError,
        OSError: peewee.OperationalError,
    }


def _pooler_errors() -> dict[type[BaseException], str]:
    """The errors of named prepared statements behind a pooler; asyncpg's own hint names its own setting."""
    if asyncpg_exceptions is None:
        return {}
    e = asyncpg_exceptions
    return {
        e.InvalidSQLStatementNameError: PREPARED_STATEMENT_ADVICE,
        e.DuplicatePreparedStatementError: PREPARED_STATEMENT_ADVICE,
    }


def _unwrappers() -> dict[type, Callable[[Any], Any]]:
    """Parameter type -> what asyncpg takes instead: the value wrappers of peewee's sync drivers."""
    table: dict[type, Callable[[Any], Any]] = {}
    if psycopg2_extras is not None:
        table[psycopg2_extras.Json] = lambda value: value.dumps(value.adapted)
        table[psycopg2_extensions.Binary] = lambda value: bytes(value.adapted)
    if psycopg is not None:

        def json_text(value: Any) -> str:
            return str((value.dumps or json.dumps)(value.obj))

        table[psycopg_json.Json] = json_text
        table[psycopg_json.Jsonb] = json_text
        table[type(psycopg.Binary(b""))] = lambda value: bytes(value.obj)
    table[memoryview] = bytes
    return table


_UNWRAP = _unwrappers()

# How asyncpg's own refusal of a parameter value begins (a DataError, as the server's are).
_UNENCODABLE = "invalid input for query argument"

# What a placeholder translation skips: quoted strings (standard and E''), quoted
# identifiers, dollar-quoted strings, comments; and what it rewrites: %s and %%.
_SQL_TOKENS = re.compile(
    r"""
      [Ee]'(?:[^'\\]|\\.|'')*'
    | '(?:[^']|'')*'
    | "(?:[^"]|"")*"
    | (?<![\w$])\$(?P<tag>[A-Za-z_][A-Za-z0-9_]*)?\$.*?\$(?P=tag)\$
    | --[^\n]*
    | /\*.*?\*/
    | %s | %%
    """,
    re.VERBOSE | re.DOTALL,
)


@functools.lru_cache(maxsize=4096)
def translate_placeholders(sql: str) -> str:
    """peewee's (psycopg2-style) SQL in asyncpg's style: ``%s`` -> ``$1, $2 ...``, ``%%`` -> ``%``.

    As psycopg2 does, a statement without placeholders is left as it is. A
    ``%`` inside a string literal, a quoted identifier, a dollar-quoted string
    or a comment is never touched (psycopg2 would read a ``%s`` there as a
    placeholder); a lone ``%`` elsewhere (the modulo operator) is kept.
    """
    if "%" not in sql:
        return sql
    count = 0

    def rewrite(match: re.Match[str]) -> str:
        nonlocal count
        token = match.group(0)
        if token == "%s":
            count += 1
            return f"${count}"
        return "%" if token == "%%" else token

    translated = _SQL_TOKENS.sub(rewrite, sql)
    return translated if count else sql


class AsyncpgDriver(PostgresqlDriver):
    """asyncpg connections, adapted to peewee's placeholders, values and exceptions."""

    name = "asyncpg"
    extra = "asyncpg"
    errors = ErrorMap(_errors(), _pooler_errors())
    translates_sql = True
    takes_ssl_context = True

    def installed(self) -> bool:
        return asyncpg is not None

    def init_options(self, options: dict[str, Any]) -> None:
        # peewee then compiles for a driver that binds values on the server, as asyncpg does.
        prefer_psycopg3(options, installed=psycopg is not None)

    def driver_sql(self, sql: str) -> str:
        return translate_placeholders(sql)

    async def connect(self, database: AsyncDatabase, timeout: float | None, plain: bool = False) -> Any:
        dsn, params = connect_arguments(database, timeout)
        # libpq's connect_timeout is asyncpg's `timeout`; as on psycopg 3, the
        # pool's own bounds apply unless it was given explicitly.
        explicit = database.connect_params.get("connect_timeout")
        params.pop("connect_timeout", None)
        if explicit is not None:
            params["timeout"] = float(explicit)
        if getattr(database, "transaction_pooling", False):
            # Unnamed statements only: a named one lives in one server session,
            # and the pooler may run the next transaction in another.
            params["statement_cache_size"] = 0
        raw = await asyncpg.connect(_with_tls_settings(dsn, params), **params)
        if plain:
            return raw
        try:
            # As psycopg decodes them. Text in (peewee's JSON fields send JSON text).
            for name in ("json", "jsonb"):
                await raw.set_type_codec(name, encoder=str, decoder=json.loads, schema="pg_catalog")
            await raw.set_type_codec("uuid", encoder=str, decoder=uuid.UUID, schema="pg_catalog")
            if not PEEWEE_TAKES_PSYCOPG3:
                # peewee 3.17's sync side reads bytea with psycopg2: a memoryview of chars.
                await raw.set_type_codec(
                    "bytea", encoder=bytes, decoder=_psycopg2_bytea, schema="pg_catalog", format="binary"
                )
            if getattr(database, "register_hstore", False):
                try:
                    await raw.set_builtin_type_codec("hstore", codec_name="pg_contrib.hstore")
                except ValueError as exc:
                    raise peewee.ProgrammingError(
                        f"register_hstore is on, but {database.describe()} has no hstore type: run "
                        "CREATE EXTENSION hstore in it, or pass register_hstore=False."
                    ) from exc
        except BaseException:
            raw.terminate()
            raise
        return raw

    def close(self, conn: ConnectionHolder) -> None:
        # At once, awaiting nothing: a graceful close would wait for a statement still running.
        conn.raw.terminate()

    def terminate(self, conn: ConnectionHolder) -> None:
        raw = conn.raw
        transport = raw._transport
        loop = getattr(transport, "_loop", None)
        if loop is None or not loop.is_closed():
            raw.terminate()
            return
        # terminate() would go through the closed loop: close the socket
        # directly, and mark the transport and the connection closed, or their
        # finalizers would warn of them as unclosed.
        sock = getattr(transport, "_sock", None)
        if sock is not None:
            sock.close()
            transport._sock = None
        raw._aborted = True

    def is_closed(self, conn: ConnectionHolder) -> bool:
        return bool(conn.raw.is_closed())

    def transaction_status(self, conn: ConnectionHolder) -> TransactionStatus:
        raw = conn.raw
        if raw.is_closed():
            return TransactionStatus.CLOSED
        if not raw.is_in_transaction():
            return TransactionStatus.IDLE
        # asyncpg does not tell a failed transaction from an open one; `kept`
        # says whether the server refused a statement since the last one it took.
        return TransactionStatus.FAILED if conn.kept else TransactionStatus.OPEN

    def connection_lost(self, conn: ConnectionHolder) -> bool:
        raw = conn.raw
        if raw.is_closed():
            return True
        sock = raw._transport.get_extra_info("socket") if raw._transport is not None else None
        return sock is None or server_said_goodbye(sock.fileno())

    async def cancel_request(self, conn: ConnectionHolder, timeout: float) -> None:
        raw = conn.raw
        # asyncpg sends a cancel request only for a statement it times out
        # itself; its helper for that takes what the connection was opened with.
        try:
            await asyncpg_connect_utils._cancel(
                loop=raw._loop,
                addr=raw._addr,
                params=raw._params,
                backend_pid=raw._protocol.backend_pid,
                backend_secret=raw._protocol.backend_secret,
            )
        except ConnectionResetError:
            pass  # some servers reset the side connection once they have the request

    def session_id(self, conn: ConnectionHolder) -> int:
        return int(conn.raw.get_server_pid())

    def version_source(self, conn: ConnectionHolder) -> Any:
        # peewee reads libpq's number (150004 for 15.4) as psycopg2 or psycopg 3 names it.
        version = conn.raw.get_server_version()
        number = version.major * 10000 + (
            version.micro if version.major >= 10 else version.minor * 100 + version.micro
        )
        return SimpleNamespace(server_version=number, pgconn=SimpleNamespace(server_version=number))

    async def execute(self, conn: ConnectionHolder, sql: str, params: Sequence[Any]) -> FetchedCursor:
        raw = conn.raw
        args = []
        for value in params:
            unwrap = _UNWRAP.get(type(value))
            if unwrap is not None:
                value = unwrap(value)
            elif type(value) is str and "\x00" in value:
                # Refused here, before anything is sent, as psycopg2 refuses it:
                # the server would refuse it too, failing the transaction.
                raise nul_in_text_error("A string parameter contains a NUL character.")
            args.append(value)
        if not args and ";" in sql.rstrip().rstrip(";"):
            # Several statements and no parameters: the simple protocol runs them all (no rows).
            status = await raw.execute(sql)
            conn.kept = False
            return FetchedCursor([], None, _count(status.encode()), None)
        try:
            # asyncpg's own path of fetch()/execute(): its statement cache, and the
            # command tag that gives the row count of an UPDATE or DELETE.
            records, status, _ = await raw._execute(sql, args, 0, None, return_status=True)
        except Exception as exc:
            refused_by_server = isinstance(exc, asyncpg_exceptions.PostgresError)
            if refused_by_server and str(exc).startswith(_UNENCODABLE):
                refused_by_server = False  # asyncpg's own DataError, made before anything was bound
            if refused_by_server:
                # Inside a transaction, the transaction failed.
                conn.kept = True
            elif not raw.is_in_transaction():
                # Refused by asyncpg itself (a value it cannot encode for its
                # parameter), after the statement was prepared but before it
                # completed: outside a transaction the server keeps the locks
                # of the preparation until the connection's next statement, so
                # the connection is not given back to the pool.
                raw.terminate()
            raise
        conn.kept = False
        if records:
            description = [(name, None, None, None, None, None, None) for name in records[0].keys()]
            return FetchedCursor(list(map(tuple, records)), description, _count(status), None)
        if status[:6] in (b"SELECT", b"FETCH "):
            return FetchedCursor([], [], _count(status), None)
        return FetchedCursor([], None, _count(status), None)


def _with_tls_settings(dsn: str | None, params: dict[str, Any]) -> str | None:
    """``dsn`` with libpq's TLS settings moved into it from ``params`` (in place).

    asyncpg takes ``sslmode``, ``sslrootcert``, ``sslcert``... only in a DSN
    (as keywords it takes ``ssl=`` alone), and there it reads them as libpq does:
    ``verify-full`` checks the chain and the host name, ``verify-ca`` the chain,
    ``require`` encrypts (verifying the chain too if ``sslrootcert`` is given).
    """
    settings = {name: str(params.pop(name)) for name in LIBPQ_TLS_SETTINGS if name in params}
    if not settings:
        return dsn
    query = urllib.parse.urlencode(settings)
    if dsn is None:
        return f"postgresql://?{query}"
    return f"{dsn}{'&' if '?' in dsn else '?'}{query}"


def _psycopg2_bytea(data: bytes) -> Any:
    """bytea as psycopg2 gives it: a memoryview of format "c" (it equals only one of the same format)."""
    return memoryview(data).cast("c")


def _count(status: bytes) -> int:
    """The row count of a command tag (``UPDATE 3``, ``INSERT 0 1``); -1 where it has none."""
    last = status.rpartition(b" ")[2]
    return int(last) if last.isdigit() else -1
