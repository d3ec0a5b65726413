"""The primaries and replicas of ``scripts/servers.py``, for the replica and PgBouncer tests.

The script starts a PostgreSQL primary with a hot standby and a MariaDB
primary with a replica, on ports of their own. Here: a primary database object
of any class with its replica, waiting until the replica has replayed the
primary's writes, pausing and resuming the replay (a lagging replica), and
stopping and starting servers through the script.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from typing import Any

import peewee

from peewee_async import AsyncDatabase

from . import servers
from .conftest import BACKENDS
from .models import ALL_MODELS

SCRIPT = servers.ROOT / "scripts" / "servers.py"

#: What a PostgreSQL class needs behind the script's PgBouncer (transaction pooling).
BOUNCER_OPTIONS = {"transaction_pooling": True}

#: Every class that takes replicas: all but SQLite.
REPLICATED = sorted(name for name, (server, _, _) in BACKENDS.items() if server != "sqlite")


def names(backend: str) -> tuple[str, str]:
    """The script's names of the primary and the replica for ``backend``'s family."""
    if BACKENDS[backend][0] == "postgres":
        return "postgresql-primary", "postgresql-standby"
    return "mariadb-primary", "mariadb-replica"


def cluster(backend: str, **options: Any) -> tuple[AsyncDatabase, AsyncDatabase]:
    """``(primary, replica)`` of ``backend``'s class on the script's servers; the primary has the replica."""
    _, cls, extra = BACKENDS[backend]
    extra = {**extra, **options}
    primary_name, replica_name = names(backend)
    replica = _database(cls, servers.script_server(replica_name), extra)
    primary = _database(cls, servers.script_server(primary_name), {**extra, "replicas": [replica]})
    return primary, replica


_tables_made: set[str] = set()


def reset(primary: AsyncDatabase, backend: str) -> None:
    """Empty the tables of ALL_MODELS (bound to ``primary``), made anew once per family in a run."""
    previous = primary.allow_sync
    primary.allow_sync = True
    try:
        family = BACKENDS[backend][0]
        if family not in _tables_made:
            primary.drop_tables(ALL_MODELS)
            primary.create_tables(ALL_MODELS)
            _tables_made.add(family)
        for model in reversed(ALL_MODELS):
            model.delete().execute()
    finally:
        primary.close()
        primary.allow_sync = previous


def client_sessions(name: str) -> int:
    """How many client sessions server ``name`` has open on the test database, the admin's aside."""
    database = admin(name)
    if name.startswith("postgresql"):
        sql = (
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
            "AND backend_type = 'client backend' AND pid <> pg_backend_pid()"
        )
        return int(_scalar(database, sql))
    user = servers.script_server(name)["user"]
    sql = "SELECT count(*) FROM information_schema.processlist WHERE user = %s"
    return int(_scalar(database, sql, (user,)))


async def wait_for_no_sessions(*server_names: str, seconds: float = 10) -> None:
    """Wait until none of the servers has a client session left (once every pool is closed)."""
    deadline = time.monotonic() + seconds
    for name in server_names:
        while (left := client_sessions(name)) > 0:
            if time.monotonic() > deadline:
                raise AssertionError(f"{name} still has {left} client session(s) of ours")
            await asyncio.sleep(0.05)


def _database(cls: type[AsyncDatabase], config: dict[str, Any], extra: dict[str, Any]) -> AsyncDatabase:
    config.pop("socket", None)
    name = config.pop("database")
    return servers.new_database(cls, name, **{**config, **extra})


def admin(name: str) -> peewee.Database:
    """A sync peewee database on server ``name`` as its administrator (replay control, checks)."""
    config = servers.script_server(name)
    if name.startswith("postgresql"):
        return peewee.PostgresqlDatabase(
            config["database"], host=config["host"], port=config["port"], user="postgres"
        )
    # root, by the server's socket: replication control needs more than the tests' user has.
    socket = servers.SCRIPT_STATE.parent / name / "mariadb.sock"
    return peewee.MySQLDatabase(config["database"], unix_socket=str(socket), user="root")


def _scalar(database: peewee.Database, sql: str, params: tuple[Any, ...] = ()) -> Any:
    with database.connection_context():
        return database.execute_sql(sql, params).fetchone()[0]


def caught_up(backend: str, seconds: float = 20) -> None:
    """Wait until the replica has replayed everything the primary has committed."""
    primary_name, replica_name = names(backend)
    primary, replica = admin(primary_name), admin(replica_name)
    if primary_name.startswith("postgresql"):
        lsn = _scalar(primary, "SELECT pg_current_wal_lsn()")
        check = "SELECT pg_wal_lsn_diff(pg_last_wal_replay_lsn(), %s) >= 0"
        deadline = time.monotonic() + seconds
        while not _scalar(replica, check, (lsn,)):
            if time.monotonic() > deadline:
                raise AssertionError(f"{replica_name} did not replay up to {lsn} within {seconds}s")
            time.sleep(0.02)
        return
    position = _scalar(primary, "SELECT @@gtid_binlog_pos")
    if _scalar(replica, "SELECT MASTER_GTID_WAIT(%s, %s)", (position, seconds)) != 0:
        raise AssertionError(f"{replica_name} did not apply up to {position} within {seconds}s")


def pause_replay(backend: str) -> None:
    """The replica stops applying the primary's changes: it lags from now on."""
    _replay(backend, "SELECT pg_wal_replay_pause()", "STOP SLAVE SQL_THREAD")


def resume_replay(backend: str) -> None:
    """The replica applies the primary's changes again."""
    _replay(backend, "SELECT pg_wal_replay_resume()", "START SLAVE SQL_THREAD")


def _replay(backend: str, postgresql: str, mariadb: str) -> None:
    _, replica_name = names(backend)
    replica = admin(replica_name)
    with replica.connection_context():
        replica.execute_sql(postgresql if replica_name.startswith("postgresql") else mariadb)


def port_sql(backend: str) -> str:
    """SQL giving the port of the server that runs it: which of primary and replica answered."""
    return "inet_server_port()" if BACKENDS[backend][0] == "postgres" else "@@port"


def control(command: str, *server_names: str) -> None:
    """``scripts/servers.py start|stop NAME...``: start or stop some of the script's servers."""
    result = subprocess.run(
        [sys.executable, str(SCRIPT), command, *server_names], capture_output=True, text=True, timeout=120
    )
    if result.returncode:
        called = " ".join((command, *server_names))
        raise AssertionError(f"servers.py {called} failed:\n{result.stdout}{result.stderr}")


async def control_async(command: str, *server_names: str) -> None:
    """:func:`control` in a thread, so that the load on the event loop goes on meanwhile."""
    await asyncio.to_thread(control, command, *server_names)
