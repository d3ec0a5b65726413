"""The PostgreSQL family: what every PostgreSQL driver and database class shares.

Server-side cursors for ``iterate()``, ``pg_cancel_backend`` for
``query_timeout``, libpq's connect arguments (its TLS settings included) and
the ``register_hstore`` option live here; a driver module (``aiopg.py``) adds only how its driver
connects and runs one statement.
"""

from __future__ import annotations

import itertools
import socket
import ssl
from abc import abstractmethod
from collections.abc import Sequence
from typing import Any, ClassVar

import peewee

from .base import AsyncDatabase
from .driver import ConnectionHolder, Driver, RawStream, TransactionStatus, socket_readable
from .tls import TlsAdvice

#: libpq's TLS settings. Every PostgreSQL class takes them, async and sync side
#: alike: libpq-based drivers read them themselves, asyncpg through its DSN.
LIBPQ_TLS_SETTINGS = (
    "sslmode", "sslrootcert", "sslcert", "sslkey", "sslpassword", "sslcrl", "sslnegotiation",
    "ssl_min_protocol_version", "ssl_max_protocol_version",
)  # fmt: skip
SSL_MODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")
_REQUIRED_MODES = ("require", "verify-ca", "verify-full")
_SHOWN_SETTINGS = ("sslmode", "sslrootcert", "sslcert")  # never sslpassword
_ADVICE = TlsAdvice(ca_setting="sslrootcert", chain_only="sslmode='verify-ca'")

#: What a prepared statement gone missing (or found twice) means: a pooler in transaction mode.
PREPARED_STATEMENT_ADVICE = (
    "A prepared statement of this connection is gone or exists twice: the server is reached "
    "through a pooler in transaction mode (PgBouncer's pool_mode = transaction), which runs "
    "each transaction in any of its server sessions. Pass transaction_pooling=True to the "
    "database class."
)


class PostgresqlFamily(AsyncDatabase):
    """What the PostgreSQL classes of ``peewee_async`` and ``peewee_asyncext`` share, whatever the driver."""

    family = "postgresql"
    driver: ClassVar[PostgresqlDriver]

    #: Set with ``transaction_pooling=True``: the server is reached through a
    #: pooler in transaction mode (PgBouncer's ``pool_mode = transaction``),
    #: where consecutive transactions of one connection may run on different
    #: server sessions. Then no named prepared statement is kept (asyncpg's
    #: statement cache, psycopg 3's automatic preparing), and ``query_timeout``
    #: stops a statement with the protocol's cancel request, which the pooler
    #: forwards to the right session, instead of ``pg_cancel_backend(pid)``,
    #: whose process id would be the pooler's own.
    transaction_pooling: bool = False

    def init(self, database: str | None, *args: Any, **kwargs: Any) -> None:
        pooling = kwargs.pop("transaction_pooling", self.transaction_pooling)
        if not isinstance(pooling, bool):
            raise TypeError(f"transaction_pooling takes True or False, got {pooling!r}")
        self.transaction_pooling = pooling
        super().init(database, *args, **kwargs)
        self._check_tls_settings()

    def _check_tls_settings(self) -> None:
        params = self.connect_params
        given = params.get("ssl")
        if isinstance(given, str):
            # asyncpg's own spelling of a mode (ssl="verify-full"): libpq's name for it.
            if "sslmode" in params:
                raise ValueError(
                    f"ssl={given!r} and sslmode={params['sslmode']!r} both set the TLS mode: "
                    "give sslmode alone."
                )
            params["sslmode"] = params.pop("ssl")
        mode = params.get("sslmode")
        if mode is not None and mode not in SSL_MODES:
            raise ValueError(f"sslmode={mode!r} is not one of libpq's modes: {', '.join(SSL_MODES)}.")
        if "ssl" not in params:
            return
        if not self.driver.takes_ssl_context:
            raise ValueError(
                f"{type(self).__name__} connects through libpq ({self.driver.name}), which makes the TLS "
                "connection itself and takes no ssl= argument: give libpq's settings instead, e.g. "
                "sslmode='verify-full', sslrootcert='/path/to/ca.pem' (and sslcert, sslkey for a client "
                "certificate)."
            )
        if not isinstance(given, ssl.SSLContext | bool):
            raise TypeError(f"ssl takes an ssl.SSLContext (or True, False), got {type(given).__name__}.")
        clashing = sorted(name for name in LIBPQ_TLS_SETTINGS if name in params)
        if clashing:
            raise ValueError(
                f"ssl= and {', '.join(clashing)} both configure TLS: give an SSLContext alone, "
                "or libpq's settings alone."
            )

    def tls_required(self) -> bool:
        """Whether the settings refuse a connection without TLS: ``sslmode`` require or stricter, ``ssl=``."""
        # init() let through only an SSLContext, True or False as ssl=.
        params = self.connect_params
        return params.get("sslmode") in _REQUIRED_MODES or bool(params.get("ssl"))

    def connect_advice(self, message: str) -> str:
        if not self.tls_required():
            return ""
        params = self.connect_params
        shown = [f"{name}={params[name]!r}" for name in _SHOWN_SETTINGS if name in params]
        if "ssl" in params:
            shown.append("ssl=<SSLContext>" if params["ssl"] is not True else "ssl=True")
        return _ADVICE(message, ", ".join(shown))

    def _connect(self) -> Any:
        # The sync side runs on psycopg, which cannot use an SSLContext.
        if "ssl" in self.connect_params:
            raise peewee.ImproperlyConfigured(
                f"{self.describe()} was given ssl=, which only its async side ({self.driver.name}) can use; "
                "peewee's sync side connects through libpq. Give libpq's settings instead "
                "(sslmode='verify-full', sslrootcert='/path/to/ca.pem'): both sides take those."
            )
        conn = super()._connect()
        if self.transaction_pooling and hasattr(conn, "prepare_threshold"):
            # psycopg 3 (peewee 4's sync side) prepares a statement run often: not through a pooler.
            conn.prepare_threshold = None
        return conn

    @property
    def register_hstore(self) -> bool:
        """Whether connections decode hstore columns to dicts (the ext classes' option)."""
        return bool(getattr(self, "_register_hstore", False))


class PostgresqlDriver(Driver):
    """A PostgreSQL driver: server-side cursors for streams, ``pg_cancel_backend`` to stop a statement."""

    #: Whether the driver takes ``ssl=`` an :class:`ssl.SSLContext` (asyncpg); libpq-based ones do not.
    takes_ssl_context: ClassVar[bool] = False

    @abstractmethod
    def session_id(self, conn: ConnectionHolder) -> int:
        """The server process id of ``conn`` (``pg_backend_pid()``), known without a round trip."""

    async def open_stream(
        self, conn: ConnectionHolder, sql: str, params: Sequence[Any], chunk_size: int
    ) -> RawStream:
        stream = ServerCursor(self, conn, chunk_size)
        await stream.declare(sql, params)
        return stream

    async def cancel(self, database: AsyncDatabase, conn: ConnectionHolder, timeout: float) -> None:
        if getattr(database, "transaction_pooling", False):
            await self.cancel_request(conn, timeout)
            return
        sql = self.driver_sql("SELECT pg_cancel_backend(%s)")
        await self.execute_aside(database, timeout, sql, (self.session_id(conn),))

    @abstractmethod
    async def cancel_request(self, conn: ConnectionHolder, timeout: float) -> None:
        """Send the protocol's cancel request for the statement running on ``conn``.

        A pooler in transaction mode forwards it to the server session that
        runs the statement; ``pg_cancel_backend`` would need that session's id,
        which only the pooler knows.
        """


_cursor_names = itertools.count(1)


class ServerCursor(RawStream):
    """A server-side cursor: ``DECLARE ... CURSOR``, then ``FETCH n`` until the rows run out.

    A cursor lives inside a transaction: the task's open one, or else one that
    the stream begins at DECLARE and commits at its close.
    """

    def __init__(self, driver: Driver, conn: ConnectionHolder, chunk_size: int) -> None:
        self.driver = driver
        self.conn = conn
        self.name = f"peewee_async_cursor_{next(_cursor_names)}"
        self.fetch_sql = f"FETCH FORWARD {int(chunk_size)} FROM {self.name}"
        self.began = False
        self.declared = False

    async def declare(self, sql: str, params: Sequence[Any]) -> None:
        if self.driver.transaction_status(self.conn) is TransactionStatus.IDLE:
            await self.driver.execute(self.conn, "BEGIN", ())
            self.began = True
        await self.driver.execute(self.conn, f"DECLARE {self.name} NO SCROLL CURSOR FOR {sql}", params)
        self.declared = True

    async def fetch(self) -> Sequence[Sequence[Any]]:
        result = await self.driver.execute(self.conn, self.fetch_sql, ())
        self.description = result.description
        return result.rows

    async def close(self) -> None:
        if self.began:
            # Ending the transaction closes the cursor with it.
            self.began = self.declared = False
            await self.driver.execute(self.conn, "COMMIT", ())
        elif self.declared:
            self.declared = False
            if self.driver.transaction_status(self.conn) is TransactionStatus.FAILED:
                return  # a failed transaction takes no CLOSE; its ROLLBACK drops the cursor
            await self.driver.execute(self.conn, f"CLOSE {self.name}", ())


def connect_arguments(database: AsyncDatabase, timeout: float | None) -> tuple[str | None, dict[str, Any]]:
    """libpq's connect arguments for ``database``: a DSN (when the name is a URL) and keywords."""
    params = dict(database.connect_params)
    name = database.database
    dsn = None
    if name and name.startswith(("postgres://", "postgresql://")):
        dsn = name
    else:
        params["database"] = name
    # libpq takes whole seconds; 0 would mean "wait for ever".
    params.setdefault("connect_timeout", max(1, round(timeout)) if timeout else 0)
    return dsn, params


def server_said_goodbye(fd: int) -> bool:
    """Whether the server closed the idle connection on socket ``fd``, seen without reading from it.

    An idle connection has nothing to read but a notification, or the server's
    goodbye: an ErrorResponse ('E', e.g. "terminating connection due to
    administrator command") and the end of the stream.
    """
    if not socket_readable(fd):
        return False
    with socket.fromfd(fd, socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            first = sock.recv(1, socket.MSG_PEEK)
        except BlockingIOError:
            return False
        except OSError:
            return True
    return first in (b"", b"E")


#: peewee 4 takes ``prefer_psycopg3``: its sync side then connects with psycopg 3,
#: and it compiles for a driver that binds values on the server.
PEEWEE_TAKES_PSYCOPG3 = hasattr(peewee, "Psycopg3Adapter")


def prefer_psycopg3(options: dict[str, Any], installed: bool) -> None:
    """Have peewee's sync side run on psycopg 3 (peewee 4, psycopg 3 ``installed``) unless told otherwise."""
    if PEEWEE_TAKES_PSYCOPG3 and installed:
        options.setdefault("prefer_psycopg3", True)


def nul_in_text_error(message: str) -> peewee.DataError:
    """The error for a NUL character in a text parameter, which PostgreSQL refuses; ``message`` first."""
    return peewee.DataError(
        f"{message} PostgreSQL text cannot contain NUL (0x00) characters: store binary data in a "
        "BlobField (bytea), or remove the NUL characters from the text."
    )
