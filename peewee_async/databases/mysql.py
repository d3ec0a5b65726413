"""The MySQL/MariaDB family: what every MySQL driver and database class shares.

``KILL QUERY`` for ``query_timeout``, PyMySQL-style connect arguments, TLS on
both sides (the settings are read in :mod:`.mysql_tls`) and the stream over an
unbuffered cursor live here; a driver module (``aiomysql.py``,
``asyncmy.py``) adds how its driver connects and runs one statement.
"""

from __future__ import annotations

import functools
import inspect
import ssl
from abc import abstractmethod
from collections.abc import Sequence
from typing import Any

import peewee

from .base import AsyncDatabase
from .driver import ConnectionHolder, Driver, RawStream
from .mysql_tls import ADVICE, TLS_SETTINGS, TlsSettings, tls_settings


class MySQLFamily(AsyncDatabase):
    """What the MySQL/MariaDB classes share, whatever the driver."""

    family = "mysql"
    tls: TlsSettings | None = None

    def init(self, database: str | None, *args: Any, **kwargs: Any) -> None:
        super().init(database, *args, **kwargs)
        self.tls = tls_settings(self.connect_params)

    def connect_advice(self, message: str) -> str:
        if self.tls is None or not self.tls.required:
            return ""
        return ADVICE(message, self.tls.shown)

    def _connect(self) -> Any:
        # peewee's sync side, on PyMySQL, with the same SSLContext as the async side.
        params = {name: value for name, value in self.connect_params.items() if name not in TLS_SETTINGS}
        tls = self.tls
        if tls is None or tls.mode == "DISABLED":
            # No TLS setting is plaintext, as on the async side. PyMySQL 1.2 would
            # otherwise try TLS unverified on its own, and build a new SSLContext
            # with the system's CAs for every connection (15 ms).
            params["ssl_disabled"] = True
        elif tls.required:
            params["ssl"] = tls.context
        driver: Any = peewee.mysql  # type: ignore[attr-defined]  # PyMySQL, as peewee imported it
        conn = driver.connect(database=self.database, autocommit=True, **params)
        if tls is not None and tls.required and not isinstance(getattr(conn, "_sock", None), ssl.SSLSocket):
            # Older PyMySQL releases go on in plaintext when the server offers no TLS.
            conn.close()
            raise peewee.OperationalError(
                f"Could not connect to {self.describe()}: the server does not offer TLS. "
                + ADVICE("SSL is required but the server doesn't support it", tls.shown)
            )
        return conn


class MySQLDriver(Driver):
    """A MySQL/MariaDB driver: stops statements with ``KILL QUERY`` from a side connection."""

    @abstractmethod
    def session_id(self, conn: ConnectionHolder) -> int:
        """The server's thread id of ``conn`` (``CONNECTION_ID()``), known without a round trip."""

    async def cancel(self, database: AsyncDatabase, conn: ConnectionHolder, timeout: float) -> None:
        await self.execute_aside(database, timeout, f"KILL QUERY {int(self.session_id(conn))}", ())


def connect_arguments(database: AsyncDatabase, timeout: float | None) -> dict[str, Any]:
    """PyMySQL-style connect arguments for ``database``, in autocommit mode.

    The TLS settings are replaced by ``ssl=`` the SSLContext they stand for;
    :class:`RefusePlaintext` on the driver's connection class does the rest.
    """
    params = {name: value for name, value in database.connect_params.items() if name not in TLS_SETTINGS}
    tls = getattr(database, "tls", None)
    if tls is not None and tls.context is not None:
        params["ssl"] = tls.context
    params["database"] = database.database
    params["autocommit"] = True
    if timeout:
        params.setdefault("connect_timeout", timeout)
    return params


class RefusePlaintext:
    """Mixed into a driver's connection class: no plaintext once TLS was required.

    aiomysql goes on in plaintext when the server does not offer TLS; asyncmy
    sends its TLS request anyway and fails on a confusing error. Both read the
    server's capabilities before authenticating: here, a connection given an
    SSLContext (``ssl_mode`` REQUIRED or stricter) stops there with PyMySQL's
    error, before any password hash is sent; one that only prefers TLS goes on
    without it.
    """

    #: Whether a server without TLS is refused; set by new_connection().
    tls_required = True
    #: The driver's OperationalError class.
    operational_error: type[Exception]

    _ssl_context: Any
    server_capabilities: int

    async def _request_authentication(self) -> None:
        if self._ssl_context is not None and not self.server_capabilities & _CLIENT_SSL:
            if self.tls_required:
                raise self.operational_error(2026, "SSL is required but the server doesn't support it")
            self._ssl_context = None
        try:
            await super()._request_authentication()  # type: ignore[misc]
        except BaseException:
            # The drivers close() a TLS transport that failed here, which waits
            # for TLS's goodbye before closing the socket: abort it instead.
            transport = self._transport_now()
            if transport is not None:
                transport.abort()
            raise

    def _transport_now(self) -> Any:
        """The connection's asyncio transport, or ``None``."""
        raise NotImplementedError


_CLIENT_SSL = 2048  # the SSL capability flag of MySQL's handshake


def new_connection(connection_class: type, params: dict[str, Any], database: AsyncDatabase) -> Any:
    """A driver's connection object of ``connection_class`` for ``database``, not yet connected.

    A keyword the class does not take is refused before anything is made: the
    drivers' connect() functions check their keywords in their signature, and
    a connection object that its ``__init__`` refused still has its
    ``__del__`` run, which then fails on the half-made object.
    """
    accepted = _accepted_keywords(connection_class)
    unknown = [name for name in params if name not in accepted]
    if unknown:
        raise TypeError(f"connect() got an unexpected keyword argument {unknown[0]!r}")
    raw = connection_class(**params)
    tls: TlsSettings | None = getattr(database, "tls", None)
    raw.tls_required = tls is None or tls.required  # see RefusePlaintext
    return raw


@functools.cache
def _accepted_keywords(connection_class: type) -> frozenset[str]:
    return frozenset(inspect.signature(connection_class).parameters) - {"self"}


def quote_sql_mode(params: dict[str, Any]) -> None:
    """Quote ``params["sql_mode"]`` (in place) for drivers that send it as ``SET sql_mode=<value>``.

    aiomysql and asyncmy put the value into that statement as it is, which
    fails for a list of modes ("STRICT_TRANS_TABLES,PIPES_AS_CONCAT"); PyMySQL,
    for the sync side, passes it as a parameter. Quote it as PyMySQL would.
    """
    if params.get("sql_mode") is not None:
        params["sql_mode"] = "'" + str(params["sql_mode"]).replace("'", "''") + "'"


class UnbufferedResult(RawStream):
    """The rows of an unbuffered cursor (``SSCursor``): the server sends them as they are read.

    The connection takes no other statement until every row was read. Closed
    early, the stream reads the rest and drops it when the connection is inside
    a transaction (which must go on); otherwise it closes the connection, which
    stops the server at once, and the pool opens a new one when needed.
    """

    def __init__(self, raw: Any, cursor: Any, chunk_size: int) -> None:
        self.raw = raw
        self.cursor = cursor
        self.chunk_size = chunk_size
        self.description = cursor.description
        self.exhausted = False

    async def fetch(self) -> Sequence[Sequence[Any]]:
        rows: Sequence[Sequence[Any]] = await self.cursor.fetchmany(self.chunk_size)
        if not rows:
            self.exhausted = True
        return rows

    async def close(self) -> None:
        if not self.exhausted and not self.raw.get_transaction_status():
            self.raw.close()
            return
        await self.cursor.close()  # reads what is left of the result
