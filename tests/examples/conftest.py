"""Run the example apps as real servers, on SQLite, PostgreSQL and MySQL.

Each app runs in a subprocess on a free port, against a database URL built
from the same settings as the other tests (``tests.json`` or the environment).
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

import peewee_async

from ..conftest import _require_server, server_settings, url_options
from ..servers import ROOT

_missing = [
    name
    for name in ("httpx", "tornado", "aiohttp", "starlette", "uvicorn")
    if not importlib.util.find_spec(name)
]
if _missing:
    raise ImportError(
        f"The example apps' tests need {', '.join(_missing)}: install the examples extra, "
        "pip install -e '.[examples]'."
    )

import httpx  # noqa: E402

EXAMPLES = ROOT / "examples"
START_TIMEOUT = 20.0
STOP_TIMEOUT = 10.0


#: What the example apps run on besides SQLite, by test id: (test server, URL scheme of
#: the database class without "+pool"). Each server with each of its drivers.
TARGETS: dict[str, tuple[str, str]] = {
    "postgres": ("postgres", "postgres"),
    "asyncpg": ("postgres", "postgres+asyncpg"),
    "psycopg": ("postgres", "postgres+psycopg"),
    "mysql": ("mysql", "mysql"),
    "asyncmy": ("mysql", "mysql+asyncmy"),
}


def server_url(target: str) -> str:
    """The pooled database URL of a target, e.g. ``postgres+pool://postgres@127.0.0.1:5432/test``."""
    server, scheme = TARGETS[target]
    settings = server_settings(server)
    credentials = quote(settings["user"], safe="")
    if settings["password"]:
        credentials += ":" + quote(settings["password"], safe="")
    where = f"{settings['host']}:{settings['port']}/{settings['database']}"
    return f"{scheme}+pool://{credentials}@{where}{url_options(server)}"


@pytest.fixture(scope="module", params=["sqlite", *TARGETS])
def database_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> str:
    """A database URL for each backend: a fresh SQLite file, or a test server."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path_factory.mktemp('examples') / 'example.db'}"
    _require_server(TARGETS[request.param][0])
    return server_url(request.param)


def connect(url: str) -> peewee_async.AsyncDatabase:
    """A database object for the test's own sync queries."""
    return peewee_async.db_url.connect(url, unquote_password=True)


def query(url: str, sql: str) -> list[tuple[Any, ...]]:
    """Rows of a sync query, on a connection of the test's own."""
    database = connect(url)
    try:
        return [tuple(row) for row in database.execute_sql(sql).fetchall()]
    finally:
        database.close()


def drop_tables(url: str, *tables: str) -> None:
    database = connect(url)
    try:
        for table in tables:
            database.execute_sql(f"DROP TABLE IF EXISTS {table}")
    finally:
        database.close()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class ExampleServer:
    """An example app serving in a subprocess; ``client`` talks to it over HTTP."""

    def __init__(self, script: str, database_url: str, log_dir: Path, via_environment: bool = False) -> None:
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.stdout_path = log_dir / f"{script}.{self.port}.out"
        self.stderr_path = log_dir / f"{script}.{self.port}.err"
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        args = [sys.executable, str(EXAMPLES / script), "--port", str(self.port)]
        if via_environment:
            env["DATABASE_URL"] = database_url
        else:
            args.insert(2, database_url)
        with open(self.stdout_path, "w") as stdout, open(self.stderr_path, "w") as stderr:
            self.process = subprocess.Popen(args, cwd=ROOT, env=env, stdout=stdout, stderr=stderr)
        self.client = httpx.Client(base_url=self.base_url, timeout=10.0)

    def output(self) -> str:
        return self.stdout_path.read_text()

    def logs(self) -> str:
        return f"stdout:\n{self.output()}\nstderr:\n{self.stderr_path.read_text()}"

    def wait_until_serving(self, probe_path: str) -> None:
        """Wait for the app to print its URL and answer ``probe_path``."""
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail(f"The example exited with {self.process.returncode}.\n{self.logs()}")
            if self.base_url in self.output():
                try:
                    self.client.get(probe_path)
                    return
                except httpx.TransportError:
                    pass
            time.sleep(0.05)
        pytest.fail(f"The example did not serve {self.base_url} within {START_TIMEOUT} s.\n{self.logs()}")

    def stop(self) -> int:
        """Stop it as Ctrl+C or a service manager would (SIGTERM); returns the exit code."""
        self.client.close()
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode


@contextlib.contextmanager
def serve_example(
    script: str, database_url: str, log_dir: Path, probe_path: str, via_environment: bool = False
) -> Iterator[ExampleServer]:
    """A serving ExampleServer, stopped on the way out whatever happens."""
    server = ExampleServer(script, database_url, log_dir, via_environment)
    try:
        server.wait_until_serving(probe_path)
        yield server
    finally:
        server.stop()
