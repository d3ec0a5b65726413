"""One backend fixture for every database class, against real servers.

Connection settings come from ``tests.json`` at the repository root (copy
``tests.json.sample``), or from the environment (``POSTGRES_HOST``,
``POSTGRES_PORT``, ``POSTGRES_USER``, ``POSTGRES_PASSWORD``, ``POSTGRES_DB`` and
the same with ``MYSQL_``). A server that cannot be reached skips its tests with
a message saying so, except under ``CI=true``, where it fails the run. SQLite
needs no server: its tests use a file in a temporary folder of this run.

With ``PEEWEE_ASYNC_PGBOUNCER=1`` (``.ci/run`` does it once) only the tests of
``PGBOUNCER_BACKENDS`` run, every PostgreSQL class connecting through the
PgBouncer of ``scripts/servers.py`` in transaction mode, with
``transaction_pooling=True``.

The tests run on two pytest-xdist workers (``-n 2`` in pyproject.toml; ``-n 0``
runs them in one process). Each worker has a database of its own on each
server, ``test_gw0`` beside the configured ``test`` (see ``tests/servers.py``),
made at its first use; the tests that restart servers of ``scripts/servers.py``
take turns (the ``one_at_a_time`` fixture).
"""

from __future__ import annotations

import atexit
import fcntl
import os
import pathlib
import shutil
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import peewee
import pytest

import peewee_async
import peewee_asyncext

from . import servers, tables
from .models import ALL_MODELS

_sqlite_folder: pathlib.Path | None = None


def sqlite_path(name: str = "test.db") -> str:
    """A database file in this run's temporary folder, removed at exit."""
    global _sqlite_folder
    if _sqlite_folder is None:
        _sqlite_folder = pathlib.Path(tempfile.mkdtemp(prefix="peewee_async_tests_"))
        atexit.register(shutil.rmtree, _sqlite_folder, ignore_errors=True)
    return str(_sqlite_folder / name)


#: The run of the PostgreSQL tests through PgBouncer (see the module's docstring).
THROUGH_PGBOUNCER = os.environ.get("PEEWEE_ASYNC_PGBOUNCER", "") == "1"


def url_options(server: str, *options: str) -> str:
    """The query string of a database URL of ``server`` with ``options`` ("name=value"), and what
    this run needs (``transaction_pooling``): ``""`` or ``"?..."``."""
    if server == "postgres" and THROUGH_PGBOUNCER:
        options = (*options, "transaction_pooling=true")
    return "?" + "&".join(options) if options else ""


def server_settings(server: str) -> dict[str, Any]:
    if server == "sqlite":
        return {"database": sqlite_path()}
    if server == "postgres" and THROUGH_PGBOUNCER:
        return servers.script_server("pgbouncer")
    return servers.server_settings(server)


# peewee 3.17 sets sql_mode to PIPES_AS_CONCAT alone, dropping the server's
# strict mode (bad values then become warnings and truncated rows); peewee 4
# keeps the server's. The tests run both peewee versions in strict mode.
MYSQL_SQL_MODE = "STRICT_TRANS_TABLES,PIPES_AS_CONCAT"

# id -> (server, database class, extra constructor arguments)
BACKENDS: dict[str, tuple[str, type[peewee_async.AsyncDatabase], dict[str, Any]]] = {
    "postgres": ("postgres", peewee_async.PostgresqlDatabase, {}),
    "postgres-pool": ("postgres", peewee_async.PooledPostgresqlDatabase, {"max_connections": 4}),
    "postgres-ext": ("postgres", peewee_asyncext.PostgresqlExtDatabase, {"register_hstore": True}),
    "postgres-ext-pool": (
        "postgres",
        peewee_asyncext.PooledPostgresqlExtDatabase,
        {"register_hstore": True, "max_connections": 4},
    ),
    "asyncpg": ("postgres", peewee_async.AsyncpgDatabase, {}),
    "asyncpg-pool": ("postgres", peewee_async.PooledAsyncpgDatabase, {"max_connections": 4}),
    "asyncpg-ext": ("postgres", peewee_asyncext.AsyncpgExtDatabase, {"register_hstore": True}),
    "asyncpg-ext-pool": (
        "postgres",
        peewee_asyncext.PooledAsyncpgExtDatabase,
        {"register_hstore": True, "max_connections": 4},
    ),
    "psycopg": ("postgres", peewee_async.PsycopgDatabase, {}),
    "psycopg-pool": ("postgres", peewee_async.PooledPsycopgDatabase, {"max_connections": 4}),
    "psycopg-ext": ("postgres", peewee_asyncext.PsycopgExtDatabase, {"register_hstore": True}),
    "psycopg-ext-pool": (
        "postgres",
        peewee_asyncext.PooledPsycopgExtDatabase,
        {"register_hstore": True, "max_connections": 4},
    ),
    "mysql": ("mysql", peewee_async.MySQLDatabase, {"sql_mode": MYSQL_SQL_MODE}),
    "mysql-pool": (
        "mysql",
        peewee_async.PooledMySQLDatabase,
        {"max_connections": 4, "sql_mode": MYSQL_SQL_MODE},
    ),
    "asyncmy": ("mysql", peewee_async.AsyncmyDatabase, {"sql_mode": MYSQL_SQL_MODE}),
    "asyncmy-pool": (
        "mysql",
        peewee_async.PooledAsyncmyDatabase,
        {"max_connections": 4, "sql_mode": MYSQL_SQL_MODE},
    ),
    # SQLite checks foreign keys only when asked, as applications do. Several
    # connections to one file are tested on their own, in test_sqlite.py.
    "sqlite": ("sqlite", peewee_async.SqliteDatabase, {"pragmas": {"foreign_keys": 1}}),
}
if THROUGH_PGBOUNCER:
    for _name, (_server, _cls, _extra) in BACKENDS.items():
        if _server == "postgres":
            _extra["transaction_pooling"] = True

POOLED = {
    name
    for name, (_, cls, extra) in BACKENDS.items()
    if extra.get("max_connections", cls.default_max_connections) > 1
}

_reachable: dict[str, str | None] = {}


def make_database(backend: str, **overrides: Any) -> peewee_async.AsyncDatabase:
    """A fresh database object of the ``backend`` class, connected to its test server.

    SQLite databases get ``SLEEP(seconds)`` and ``CLOCK()`` (the time now)
    functions, so that tests can run the same slow statements as on MySQL.
    """
    server, cls, extra = BACKENDS[backend]
    settings = server_settings(server)
    name = settings.pop("database")
    database = cls(name, **{**settings, **extra, **overrides})
    if isinstance(database, peewee.SqliteDatabase):
        database.register_function(_sleep, "SLEEP", 1)
        database.register_function(time.time, "CLOCK", 0)
    return database


def _sleep(seconds: float) -> int:
    time.sleep(seconds)
    return 0


def _require_server(server: str) -> None:
    if server == "sqlite":
        return
    if server not in _reachable:
        settings = server_settings(server)
        probe = make_database("postgres" if server == "postgres" else "mysql")
        try:
            servers.make_worker_database(server)
            probe.connect()
            if server == "postgres":
                probe.execute_sql("CREATE EXTENSION IF NOT EXISTS hstore")
            probe.close()
            _reachable[server] = None
        except peewee.DatabaseError as exc:
            own = (
                f" With pytest-xdist each worker makes a database of its own ({settings['database']!r}): "
                "the user needs the right to make databases, or run with -n 0."
                if servers.WORKER
                else ""
            )
            _reachable[server] = (
                f"{server} at {settings['host']}:{settings['port']} (database {settings['database']!r}, "
                f"user {settings['user']!r}) is unreachable: {exc}. Copy tests.json.sample to tests.json "
                f"and point it at a server, or set {server.upper()}_HOST/PORT/USER/PASSWORD/DB.{own}"
            )
    error = _reachable[server]
    if error is not None:
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(f"CI needs every backend: {error}")
        pytest.skip(error)


#: The classes the PgBouncer run takes through PgBouncer: per driver, the plain class and the
#: pooled one with the ext codecs (hstore and JSON registered on each new connection). The
#: other PostgreSQL classes differ from these in nothing a pooler in between could change.
PGBOUNCER_BACKENDS = (
    *("postgres", "postgres-ext-pool"),
    *("asyncpg", "asyncpg-ext-pool"),
    *("psycopg", "psycopg-ext-pool"),
)


#: The marks of a module of tests on the servers of scripts/servers.py (see pytest_configure).
SCRIPT_SERVERS = [pytest.mark.script_servers, pytest.mark.usefixtures("one_at_a_time")]


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "direct_server: the test needs the server itself, not a pooler in front of it: it finds the "
        "server session of a connection by its process id (to watch or kill it), which a pooler "
        "hides, or tests the server's own login; not run through PgBouncer",
    )
    config.addinivalue_line(
        "markers",
        "script_servers: the test runs on the primaries, replicas and PgBouncer of scripts/servers.py, "
        "stopping and restarting some (SCRIPT_SERVERS also makes it hold the one_at_a_time lock); "
        "not run again through PgBouncer, as it picks its servers itself",
    )


def pytest_runtest_setup(item: pytest.Item) -> None:
    """A test without the ``db`` fixture may have written to the tables: emptied before their next use."""
    if "db" not in getattr(item, "fixturenames", ()):
        tables.forget_emptiness()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Through PgBouncer, only the tests of PGBOUNCER_BACKENDS run, but those marked
    direct_server or script_servers."""
    if not THROUGH_PGBOUNCER:
        return
    kept, dropped = [], []
    for item in items:
        params = getattr(item, "callspec", None)
        values = params.params.values() if params is not None else ()
        through = any(isinstance(v, str) and v in PGBOUNCER_BACKENDS for v in values)
        elsewhere = any(item.get_closest_marker(mark) for mark in ("direct_server", "script_servers"))
        (kept if through and not elsewhere else dropped).append(item)
    config.hook.pytest_deselected(items=dropped)
    items[:] = kept


@pytest.fixture
def one_at_a_time() -> Iterator[None]:
    """The test holds a lock that one test at a time may hold, across the pytest-xdist workers
    (and other runs on this machine): the tests that stop and restart servers of
    scripts/servers.py, or fill their databases, must not overlap."""
    with open(pathlib.Path(tempfile.gettempdir()) / "peewee-async-tests.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


@pytest.fixture(params=list(BACKENDS))
def backend(request: pytest.FixtureRequest) -> str:
    """The id of the backend under test (a key of BACKENDS)."""
    name: str = request.param
    _require_server(BACKENDS[name][0])
    return name


@pytest.fixture
async def db(backend: str) -> AsyncIterator[peewee_async.AsyncDatabase]:
    """A new database object of the backend's class, with ALL_MODELS bound to it and empty.

    After the test it checks that nothing leaked: no transaction left open and
    every pooled connection given back. Then it empties the tables, those of
    the models ``bind_models`` added first.
    """
    database = make_database(backend)
    server = BACKENDS[backend][0]
    tables.prepare(database, server, ALL_MODELS)
    with database.bind_ctx(ALL_MODELS):
        try:
            yield database
            assert database._open_transactions == 0, "a transaction was left open"
            pool = database.pool
            if pool is not None:
                await pool.settle()
                assert pool.used == 0, f"{pool.used} connection(s) not given back to the pool"
        finally:
            database.allow_sync = True
            await database.close_async()
            tables.empty(database, server, *reversed(_bound.pop(id(database), [])), ALL_MODELS)


# The models bind_models added, per database object under test: emptied with ALL_MODELS.
_bound: dict[int, list[list[type[peewee.Model]]]] = {}


@pytest.fixture
async def observer(backend: str) -> AsyncIterator[peewee_async.AsyncDatabase]:
    """A second database object for the backend's server, with connections of its own.

    It only ever sees committed rows, and looks at (or kills) the server
    sessions of the database under test.
    """
    other = make_database(backend)
    try:
        yield other
    finally:
        await other.close_async()


@pytest.fixture
def objects(db: peewee_async.AsyncDatabase) -> peewee_async.Manager:
    return peewee_async.Manager(db)


@pytest.fixture
def bind_models(backend: str, db: peewee_async.AsyncDatabase) -> Callable[..., None]:
    """``bind_models(ModelA, ModelB)``: bind extra models of a test module to ``db``, their tables empty.

    The tables stay for the next test that binds the same models (see ``tests/tables.py``).
    """

    def bind(*models: type[peewee.Model]) -> None:
        db.bind(models)
        tables.prepare(db, BACKENDS[backend][0], models)
        _bound.setdefault(id(db), []).append(list(models))

    return bind
