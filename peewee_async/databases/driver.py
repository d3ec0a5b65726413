"""The driver contract: what a driver module implements, and nothing more.

A *driver module* (``asyncpg.py``, ``psycopg.py``, ``aiopg.py``, ``asyncmy.py``,
``aiomysql.py``, ``aiosqlite.py``) adapts one asyncio driver to this contract; a
*family module* (``postgres.py``, ``mysql.py``, ``sqlite.py``) holds what every
driver of one database server shares (server-side cursors, the statement that
stops a running query, how transactions begin). Everything else, pooling,
timeouts, cancellation, transactions and peewee's exceptions, is written once,
on top of the contract, in :mod:`.pool` and :mod:`.base`.

The contract is small on purpose: open and close one connection, run one
statement and read its whole result, stream the rows of a select, tell the
transaction status and whether a connection broke, stop a running statement
from another connection, and translate the driver's exceptions. Our own state
per connection (a kept cursor, whether a statement was cut off) lives on a
:class:`ConnectionHolder`, never on the driver's connection object: some
drivers' connections take no new attributes.
"""

from __future__ import annotations

import enum
import importlib
import select
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

import peewee

from ..cursor import FetchedCursor

if TYPE_CHECKING:
    from types import ModuleType

    from .base import AsyncDatabase


#: The most rows a connection's kept cursor may hold on to. Drivers whose cursors
#: cost a noticeable part of a short statement to make keep one per connection
#: between statements, but not one holding a large result until the next statement.
KEPT_RESULT_ROWS = 100


class TransactionStatus(enum.Enum):
    """What the server says of a connection's transaction, read without a round trip."""

    IDLE = "idle"  # no transaction open: the connection can go back to the pool as it is
    OPEN = "open"  # inside a transaction block
    FAILED = "failed"  # inside a transaction that an error aborted; only ROLLBACK is taken
    CLOSED = "closed"  # the connection is closed, and with it any transaction it had


class ConnectionHolder:
    """One connection of a pool: the driver's connection and our state about it.

    :attr:`raw` is the driver's own connection object. :attr:`kept` is the
    driver module's to use (e.g. a cursor kept between statements).
    """

    __slots__ = ("raw", "kept", "interrupted", "stop_sent", "closed")

    def __init__(self, raw: Any) -> None:
        self.raw = raw
        self.kept: Any = None
        #: A statement on it was cut off (cancelled) before its answer was read:
        #: the protocol state is unknown, so the connection is closed, never reused.
        self.interrupted = False
        #: The server was told to stop its statement (query_timeout).
        self.stop_sent = False
        #: Closed by us.
        self.closed = False

    def __repr__(self) -> str:
        return f"<ConnectionHolder of {self.raw!r}>"


class RawStream(ABC):
    """The rows of one select, read from the server a chunk at a time.

    :meth:`Driver.open_stream` returns one. It keeps its connection busy until
    :meth:`close` (or the end of the rows) has left the connection ready for
    the next statement.
    """

    #: The DB-API description of the result; known once the first chunk was fetched.
    description: Sequence[Sequence[Any]] | None = None

    @abstractmethod
    async def fetch(self) -> Sequence[Sequence[Any]]:
        """The next rows (at most the chunk size); empty once every row was read."""

    @abstractmethod
    async def close(self) -> None:
        """Leave the connection ready for the next statement, even if rows are left unread."""


class ErrorMap:
    """Driver exception classes to peewee's, looked up along the exception's MRO.

    peewee's own translation goes by class *name*; a map of classes finds a
    driver's subclasses (``psycopg2.errors.UniqueViolation``) through their
    bases, and never touches an exception of another package that happens to
    share a name.
    """

    __slots__ = ("_map", "_by_type", "_messages")

    def __init__(
        self,
        mapping: dict[type[BaseException], type[peewee.PeeweeException]],
        messages: dict[type[BaseException], str] | None = None,
    ) -> None:
        self._map = mapping
        self._by_type: dict[type[BaseException], type[peewee.PeeweeException] | None] = {}
        # Errors whose driver message would mislead: ours instead, naming the fix.
        self._messages = messages or {}

    def translate(self, exc: BaseException) -> peewee.PeeweeException | None:
        """peewee's exception for ``exc`` (``orig`` set, the driver's args kept), or ``None``."""
        kind = type(exc)
        try:
            target = self._by_type[kind]
        except KeyError:
            target = next((self._map[cls] for cls in kind.__mro__ if cls in self._map), None)
            self._by_type[kind] = target
        if target is None:
            return None
        if self._messages:
            for cls, message in self._messages.items():
                if isinstance(exc, cls):
                    # The driver's first line only: its hint may name a setting of its own.
                    reason = driver_message(exc).split("\n", 1)[0].rstrip(".")
                    return target(exc, f"{reason}. {message}")
        # As peewee's ExceptionWrapper makes them: str() shows the driver's message.
        return target(exc, *exc.args)


def dbapi_errors(module: ModuleType) -> dict[type[BaseException], type[peewee.PeeweeException]]:
    """The map of a DB-API 2.0 module's standard exception classes to peewee's."""
    names = (
        "DatabaseError", "DataError", "IntegrityError", "InterfaceError", "InternalError",
        "NotSupportedError", "OperationalError", "ProgrammingError",
    )  # fmt: skip
    return {getattr(module, name): getattr(peewee, name) for name in names}


class Driver(ABC):
    """One asyncio driver, seen through what peewee-async needs of it.

    One instance serves every database object of its classes; it keeps no
    state of its own. Every method but :meth:`connect` takes the
    :class:`ConnectionHolder` of a connection that :meth:`connect` opened.
    """

    #: The driver's name, as the registry and messages show it (``"aiopg"``).
    name: ClassVar[str]
    #: The pip extra that installs the driver (``pip install 'peewee-async[<extra>]'``).
    extra: ClassVar[str]
    #: The statement that opens a transaction.
    begin_statement: ClassVar[str] = "BEGIN"
    #: The driver's exceptions translated to peewee's (see :class:`ErrorMap`).
    errors: ClassVar[ErrorMap]
    #: Whether :meth:`driver_sql` rewrites SQL: the driver's parameter style is not peewee's.
    translates_sql: ClassVar[bool] = False

    @abstractmethod
    def installed(self) -> bool:
        """Whether the driver package can be imported."""

    def init_options(self, options: dict[str, Any]) -> None:  # noqa: B027 - an optional hook
        """Adjust the options of the database's ``init()`` for this driver (in place)."""

    def driver_sql(self, sql: str) -> str:
        """``sql``, compiled by peewee in its parameter style (``%s`` or ``?``), in the driver's.

        Called, when :attr:`translates_sql` is set, once per compile (the
        statement cache keeps the result) and on the SQL given to
        ``execute_sql_async()``; and by family code on SQL of its own that
        takes parameters. Of today's drivers only asyncpg's translates.
        """
        return sql

    def require(self) -> None:
        """Raise ``ImproperlyConfigured`` naming the pip extra if the driver is missing."""
        if not self.installed():
            raise peewee.ImproperlyConfigured(
                f"{self.name} is not installed: pip install 'peewee-async[{self.extra}]'"
            )

    @abstractmethod
    async def connect(self, database: AsyncDatabase, timeout: float | None, plain: bool = False) -> Any:
        """Open one connection of ``database`` in autocommit mode; the driver's connection object.

        ``timeout`` bounds the connect (``None``: the driver's default).
        ``plain`` asks for a bare session (no type adapters set up), for a
        short-lived side connection such as the one that stops a statement.
        """

    @abstractmethod
    def close(self, conn: ConnectionHolder) -> Awaitable[None] | None:
        """Start closing ``conn`` now, without waiting for the server.

        A driver that can only close by awaiting returns that awaitable; the
        pool awaits it in the background.
        """

    @abstractmethod
    def terminate(self, conn: ConnectionHolder) -> None:
        """Close ``conn``'s socket at once, awaiting nothing: its event loop may be gone."""

    async def reset(self, conn: ConnectionHolder) -> None:
        """Bring a connection given back inside a transaction back to idle."""
        await self.execute(conn, "ROLLBACK", ())

    @abstractmethod
    async def execute(self, conn: ConnectionHolder, sql: str, params: Sequence[Any]) -> FetchedCursor:
        """Run one statement and read its whole result: rows, description, rowcount, last id.

        ``sql`` is in the driver's parameter style (:meth:`driver_sql` made
        it from peewee's), ``params`` already converted by the fields. A
        cancellation mid-statement may leave the connection unusable: the pool
        then closes it.
        """

    @abstractmethod
    async def open_stream(
        self, conn: ConnectionHolder, sql: str, params: Sequence[Any], chunk_size: int
    ) -> RawStream:
        """Start streaming the rows of one select, ``chunk_size`` rows per fetch.

        Outside a transaction the server may need one for the time of the
        stream (PostgreSQL's cursors do); the stream then opens and ends it itself.
        """

    @abstractmethod
    def transaction_status(self, conn: ConnectionHolder) -> TransactionStatus:
        """The connection's transaction status as the driver last saw it; ``CLOSED`` once it is closed."""

    @abstractmethod
    def is_closed(self, conn: ConnectionHolder) -> bool:
        """Whether the driver knows ``conn`` closed (by us, by the driver or by the server)."""

    def connection_lost(self, conn: ConnectionHolder) -> bool:
        """Whether an idle ``conn`` is known dead, found without a round trip to the server."""
        return self.is_closed(conn)

    @abstractmethod
    async def cancel(self, database: AsyncDatabase, conn: ConnectionHolder, timeout: float) -> None:
        """Tell the server to stop the statement running on ``conn``, from another connection."""

    async def execute_aside(
        self, database: AsyncDatabase, timeout: float, sql: str, params: Sequence[Any]
    ) -> FetchedCursor:
        """Run one statement on a short-lived plain connection of its own, e.g. to stop another's."""
        side = ConnectionHolder(await self.connect(database, timeout, plain=True))
        try:
            return await self.execute(side, sql, params)
        finally:
            closing = self.close(side)
            if closing is not None:
                await closing

    @abstractmethod
    def version_source(self, conn: ConnectionHolder) -> Any:
        """What peewee's ``_set_server_version()`` reads the server version from.

        A DB-API connection for most drivers; a stand-in with the same
        attribute for drivers that have none.
        """


def optional_import(name: str) -> Any:
    """The module ``name``, or ``None`` when it is not installed (a driver's extra was not)."""
    try:
        return importlib.import_module(name)
    except ImportError:
        return None


def socket_readable(fd: int) -> bool:
    """Whether ``fd`` has data or an end-of-file waiting (an idle connection should have neither)."""
    if hasattr(select, "poll"):
        poller = select.poll()
        poller.register(fd, select.POLLIN)
        return bool(poller.poll(0))
    readable, _, _ = select.select([fd], [], [], 0)
    return bool(readable)


def driver_message(exc: BaseException) -> str:
    """The driver's own message in a peewee exception made from a driver exception."""
    inner = getattr(exc, "orig", None) or exc
    text = str(inner).strip()
    cause = inner.__cause__  # e.g. the OSError under PyMySQL's "Can't connect to MySQL server"
    if cause is not None and str(cause) not in text:
        text += f" ({cause})"
    return text
