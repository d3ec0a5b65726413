"""A TCP proxy on loopback between the library and a database server, to inject network faults.

The proxy runs its own event loop in a thread, so it keeps forwarding (or
stalling) whatever the test's event loop is doing, and sync code can use it too.
Its switches:

- :meth:`Proxy.cut` closes every connection through it at once (both sides);
- :meth:`Proxy.stall` stops forwarding, in both directions, on every connection
  (new ones too) without closing anything: the network is silently gone;
- :meth:`Proxy.refuse` closes each new connection as soon as it is accepted;
- :meth:`Proxy.restore` undoes stall and refuse.

The ``faulty`` fixture gives a database object of the backend's class that
connects through a proxy, with the test models bound to it and their tables
empty; ``observer`` is a second, direct database to look at the server with.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import threading
from collections.abc import AsyncIterator, Coroutine, Iterator
from typing import Any

import pytest

import peewee_async
from peewee_async.databases.pool import Pool

from .. import tables
from ..conftest import BACKENDS, _require_server, make_database, server_settings
from ..models import ALL_MODELS

#: The backends the network faults run on: one pooled class per driver.
PROXIED_BACKENDS = ["postgres-pool", "asyncpg-pool", "psycopg-pool", "mysql-pool", "asyncmy-pool"]


class Proxy:
    """Forwards 127.0.0.1:<port> to ``target_host``:``target_port``, with switches for faults."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target_host = target_host
        self.target_port = target_port
        self.port = 0
        self.accepted = 0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="db-proxy", daemon=True)
        self._server: asyncio.Server | None = None
        self._flowing: asyncio.Event | None = None
        self._refusing = False
        self._links: set[tuple[asyncio.StreamWriter, asyncio.StreamWriter]] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    # -- life cycle ---------------------------------------------------------

    def start(self) -> Proxy:
        self._thread.start()
        self._call(self._start())
        return self

    def stop(self) -> None:
        self._call(self._stop())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        self._loop.close()

    async def _start(self) -> None:
        self._flowing = asyncio.Event()
        self._flowing.set()
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _stop(self) -> None:
        assert self._server is not None and self._flowing is not None
        self._server.close()
        self._flowing.set()
        self._cut()
        await self._server.wait_closed()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    # -- the switches -------------------------------------------------------

    def cut(self) -> None:
        """Close every open connection, client and server side, at once."""
        self._call(self._run_soon(self._cut))

    def stall(self) -> None:
        """Stop forwarding bytes, in both directions, without closing anything."""
        self._call(self._run_soon(lambda: self._flow(False)))

    def refuse(self) -> None:
        """Close every new connection as soon as it is accepted."""
        self._call(self._run_soon(lambda: setattr(self, "_refusing", True)))

    def restore(self) -> None:
        """Forward again, and accept new connections."""

        def undo() -> None:
            self._refusing = False
            self._flow(True)

        self._call(self._run_soon(undo))

    @property
    def open_connections(self) -> int:
        return len(self._links)

    # -- inside the proxy's loop ---------------------------------------------

    def _call(self, coro: Coroutine[Any, Any, None]) -> None:
        future: concurrent.futures.Future[None] = asyncio.run_coroutine_threadsafe(coro, self._loop)
        future.result(5)

    @staticmethod
    async def _run_soon(action: Any) -> None:
        action()

    def _flow(self, on: bool) -> None:
        assert self._flowing is not None
        if on:
            self._flowing.set()
        else:
            self._flowing.clear()

    def _cut(self) -> None:
        for client, server in list(self._links):
            client.transport.abort()
            server.transport.abort()
        self._links.clear()

    async def _accept(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        if self._refusing:
            client_writer.transport.abort()
            return
        try:
            server_reader, server_writer = await asyncio.open_connection(self.target_host, self.target_port)
        except OSError:
            client_writer.transport.abort()
            return
        link = (client_writer, server_writer)
        self._links.add(link)
        for reader, writer in ((client_reader, server_writer), (server_reader, client_writer)):
            task = asyncio.get_running_loop().create_task(self._pump(reader, writer, link))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _pump(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        link: tuple[asyncio.StreamWriter, asyncio.StreamWriter],
    ) -> None:
        assert self._flowing is not None
        try:
            while True:
                data = await reader.read(65536)
                await self._flowing.wait()  # a stall holds the bytes (and the end of stream) here
                if not data:
                    break
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            # One side ended: end the other, as a plain TCP path would.
            self._links.discard(link)
            for end in link:
                end.transport.abort() if reader.exception() else end.close()


@pytest.fixture
def proxy(backend: str) -> Iterator[Proxy]:
    """A started proxy to the backend's server; stopped (every connection closed) after the test."""
    settings = server_settings(BACKENDS[backend][0])
    started = Proxy(settings["host"], int(settings["port"])).start()
    try:
        yield started
    finally:
        started.stop()


def direct_database(backend: str, **overrides: Any) -> peewee_async.AsyncDatabase:
    """A database of the backend's class connected straight to the server."""
    return make_database(backend, **overrides)


@pytest.fixture
async def faulty(
    backend: str, proxy: Proxy, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[peewee_async.AsyncDatabase]:
    """A database of the backend's class that connects through ``proxy``; the test models are bound
    to it and their tables are empty. Timeouts are short so that a fault shows within seconds.

    Each stall waits out one of them: a connect through the proxy takes milliseconds, a
    server told to stop a statement answers in milliseconds, so a second is ample for both.
    """
    monkeypatch.setattr(Pool, "cancel_grace", 1.0)
    _require_server(BACKENDS[backend][0])
    direct = direct_database(backend)
    server = BACKENDS[backend][0]
    tables.prepare(direct, server, ALL_MODELS)
    database = make_database(
        backend, host="127.0.0.1", port=proxy.port, connect_timeout=1, acquire_timeout=2, query_timeout=1
    )
    with database.bind_ctx(ALL_MODELS):
        try:
            yield database
        finally:
            proxy.restore()
            with contextlib.suppress(Exception):
                await database.close_async()
            tables.empty(direct, server, ALL_MODELS)
