"""A server that cannot be reached at start: a clear error naming host, port and database, no hang."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
from typing import Any

import peewee
import pytest

import peewee_async

from ..conftest import BACKENDS, make_database, server_settings
from .proxy import PROXIED_BACKENDS, Proxy

pytestmark = pytest.mark.parametrize("backend", PROXIED_BACKENDS, indirect=True)

CONNECT_TIMEOUT = 1


def closed_port() -> int:
    """A loopback port nobody listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def connect_error(database: peewee_async.AsyncDatabase) -> peewee.OperationalError:
    """The error of the first query, which must come within the connect timeout (plus slack), not hang."""
    try:
        async with asyncio.timeout(CONNECT_TIMEOUT + 3):
            with pytest.raises(peewee.OperationalError) as raised:
                await database.execute_sql_async("SELECT 1")
        assert not database.is_connected
        # A second try fails the same way: nothing half-open was kept.
        async with asyncio.timeout(CONNECT_TIMEOUT + 3):
            with pytest.raises(type(raised.value)):
                await database.connect_async()
        return raised.value
    finally:
        await database.close_async()


def assert_names_the_server(error: Exception, host: str, port: int, name: str) -> None:
    message = str(error)
    assert message.startswith("Could not connect to "), message
    assert f"{host}:{port}" in message and repr(name) in message, message


def settings(backend: str) -> dict[str, Any]:
    return server_settings(BACKENDS[backend][0])


async def test_wrong_port(backend):
    port = closed_port()
    database = make_database(backend, port=port, connect_timeout=CONNECT_TIMEOUT)
    error = await connect_error(database)
    assert_names_the_server(error, settings(backend)["host"], port, settings(backend)["database"])
    # libpq says "Connection refused"; PyMySQL names the OSError of asyncio's connect.
    assert "Connection refused" in str(error) or "Connect call failed" in str(error), str(error)


@pytest.mark.direct_server  # PgBouncer here trusts every login
async def test_wrong_credentials(backend):
    if BACKENDS[backend][0] == "postgres":
        database = make_database(backend, user="no_such_user_faults", connect_timeout=CONNECT_TIMEOUT)
        expected = 'role "no_such_user_faults" does not exist'
    else:
        database = make_database(backend, password="wrong-password", connect_timeout=CONNECT_TIMEOUT)
        expected = "Access denied"
    error = await connect_error(database)
    s = settings(backend)
    assert_names_the_server(error, s["host"], s["port"], s["database"])
    assert expected in str(error)


async def test_missing_database(backend):
    s = settings(backend)
    _, cls, extra = BACKENDS[backend]
    missing = f"{s['database']}_missing"
    params = {k: v for k, v in s.items() if k != "database"}
    database = cls(missing, **{**params, **extra, "connect_timeout": CONNECT_TIMEOUT})
    error = await connect_error(database)
    assert_names_the_server(error, s["host"], s["port"], missing)
    assert missing in str(error).split(": ", 1)[1]  # the driver's own text names it too


async def test_proxy_refusing(backend, proxy: Proxy):
    proxy.refuse()
    database = make_database(backend, host="127.0.0.1", port=proxy.port, connect_timeout=CONNECT_TIMEOUT)
    error = await connect_error(database)
    assert_names_the_server(error, "127.0.0.1", proxy.port, settings(backend)["database"])
    assert proxy.accepted >= 1


async def test_proxy_stalling_the_connect(backend, proxy: Proxy):
    proxy.stall()
    database = make_database(backend, host="127.0.0.1", port=proxy.port, connect_timeout=CONNECT_TIMEOUT)
    error = await connect_error(database)
    assert_names_the_server(error, "127.0.0.1", proxy.port, settings(backend)["database"])
    assert f"within {CONNECT_TIMEOUT}s" in str(error)


async def test_refused_new_connection_after_start(backend, faulty, proxy: Proxy):
    """The pool is open, its connection is cut, and new ones are refused: a clear error, then recovery."""
    assert (await faulty.execute_sql_async("SELECT 1")).fetchone() == (1,)
    proxy.refuse()
    proxy.cut()
    with pytest.raises(peewee.OperationalError) as raised:
        await faulty.execute_sql_async("SELECT 1")
    assert_names_the_server(raised.value, "127.0.0.1", proxy.port, settings(backend)["database"])
    assert faulty.pool.used == 0
    proxy.restore()
    assert (await faulty.execute_sql_async("SELECT 1")).fetchone() == (1,)
    assert faulty.pool.used == 0


async def test_stalled_new_connection_after_start(backend, faulty, proxy: Proxy):
    """The pool is open, its connection is cut, and new ones stall: a connect error, not "all in use"."""
    assert (await faulty.execute_sql_async("SELECT 1")).fetchone() == (1,)
    proxy.stall()
    proxy.cut()
    async with asyncio.timeout(faulty.acquire_timeout + 3):
        with pytest.raises(peewee.OperationalError) as raised:
            await faulty.execute_sql_async("SELECT 1")
    assert not isinstance(raised.value, peewee_async.PoolTimeout)
    assert_names_the_server(raised.value, "127.0.0.1", proxy.port, settings(backend)["database"])
    assert f"within acquire_timeout={faulty.acquire_timeout}s" in str(raised.value)
    assert "server did not answer" in str(raised.value)
    assert faulty.pool.used == 0
    proxy.restore()
    assert (await faulty.execute_sql_async("SELECT 1")).fetchone() == (1,)
    assert faulty.pool.used == 0


class ServerGoneAfterTlsOffer:
    """Accepts one connection, offers TLS to it and hangs up, and listens no more.

    A PostgreSQL server going down does this to a client with libpq's default
    ``sslmode=prefer``: the TLS handshake fails, libpq opens a new socket
    without TLS (it usually gets the number of the one it just closed), and
    that connect is refused. A MySQL client is only hung up on.
    """

    def __init__(self) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self._listener.getsockname()[1])
        self._thread = threading.Thread(target=self._serve, name="tls-offer", daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        conn, _ = self._listener.accept()
        self._listener.close()
        with conn:
            conn.settimeout(5)
            with contextlib.suppress(OSError):
                if conn.recv(8):  # libpq's SSLRequest (a MySQL client waits for the server)
                    conn.sendall(b"S")

    def join(self) -> None:
        self._thread.join(5)


async def test_server_gone_between_tls_offer_and_retry(backend):
    """The retry without TLS is refused: peewee's OperationalError naming the server, not an OSError."""
    server = ServerGoneAfterTlsOffer()
    try:
        database = make_database(backend, host="127.0.0.1", port=server.port, connect_timeout=CONNECT_TIMEOUT)
        error = await connect_error(database)
    finally:
        server.join()
    assert_names_the_server(error, "127.0.0.1", server.port, settings(backend)["database"])
