"""Where the database servers of the tests (and of the benchmarks) are.

``tests.json`` at the repository root (copy ``tests.json.sample``), then the
environment (``POSTGRES_HOST``, ``POSTGRES_PORT``, ``POSTGRES_USER``,
``POSTGRES_PASSWORD``, ``POSTGRES_DB`` and the same with ``MYSQL_``), over the
defaults of a local server with trust authentication.
"""

from __future__ import annotations

import json
import os
import pathlib
from typing import Any, NoReturn

import peewee
import pytest

from peewee_async import AsyncDatabase

ROOT = pathlib.Path(__file__).resolve().parent.parent
DEFAULTS: dict[str, dict[str, Any]] = {
    "postgres": {"database": "test", "host": "127.0.0.1", "port": 5432, "user": "postgres", "password": ""},
    "mysql": {"database": "test", "host": "127.0.0.1", "port": 3306, "user": "root", "password": ""},
}
ENV_KEYS = {"database": "DB", "host": "HOST", "port": "PORT", "user": "USER", "password": "PASSWORD"}


#: The pytest-xdist worker of this process ("gw0", "gw1", ...), or None outside one.
WORKER = os.environ.get("PYTEST_XDIST_WORKER") or None


def server_settings(server: str, *, of_worker: bool = True) -> dict[str, Any]:
    """Connection settings of ``server`` ("postgres" or "mysql").

    In a pytest-xdist worker the database is the worker's own, named after the
    configured one (``test_gw0``): the workers' tests run side by side, and each
    makes, fills and empties the same tables. ``of_worker=False`` gives the
    configured database itself.
    """
    settings = dict(DEFAULTS[server])
    config_file = ROOT / "tests.json"
    if config_file.exists():
        settings.update(json.loads(config_file.read_text()).get(server, {}))
    for key, suffix in ENV_KEYS.items():
        value = os.environ.get(f"{server.upper()}_{suffix}")
        if value is not None:
            settings[key] = int(value) if key == "port" else value
    if of_worker:
        settings["database"] = worker_database(settings["database"])
    return settings


def worker_database(name: str) -> str:
    """This pytest-xdist worker's database beside database ``name`` (``test_gw0``); ``name`` outside one."""
    return f"{name}_{WORKER}" if WORKER else name


def make_worker_database(server: str) -> None:
    """Make this worker's database on ``server``, beside the configured one, unless it is there.

    Raises peewee's ``DatabaseError`` when the server cannot be reached or the
    user may not make databases.
    """
    if not WORKER:
        return
    settings = server_settings(server, of_worker=False)
    base = settings.pop("database")
    name = worker_database(base)
    if server == "postgres":
        admin: peewee.Database = peewee.PostgresqlDatabase(base, **settings)
        try:
            if admin.execute_sql("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone() is None:
                admin.execute_sql('CREATE DATABASE "{}"'.format(name.replace('"', '""')))
        finally:
            admin.close()
    else:
        admin = peewee.MySQLDatabase(base, ssl_disabled=True, **settings)
        try:
            admin.execute_sql("CREATE DATABASE IF NOT EXISTS `{}`".format(name.replace("`", "``")))
        finally:
            admin.close()


#: Where ``scripts/servers.py`` describes the servers it started (TLS, replication, PgBouncer).
SCRIPT_STATE = (
    pathlib.Path(os.environ.get("PEEWEE_ASYNC_SERVERS", "/tmp/peewee-async-servers")) / "servers.json"
)


def script_servers() -> dict[str, Any]:
    """What ``scripts/servers.py start`` wrote: each server's settings and the certificate files.

    Without it the calling test is skipped, naming the script; under CI it fails.
    """
    if not SCRIPT_STATE.exists():
        fail_or_skip(
            f"the servers of scripts/servers.py are not running (no {SCRIPT_STATE}): "
            "start them with `python scripts/servers.py start`"
        )
    state: dict[str, Any] = json.loads(SCRIPT_STATE.read_text())
    return state


def script_server(name: str) -> dict[str, Any]:
    """The settings of one server of ``scripts/servers.py``; skips (fails under CI) without it."""
    state = script_servers()
    if name not in state:
        fail_or_skip(f"{name} is not running: start it with `python scripts/servers.py start`")
    settings = dict(state[name])
    if name == "pgbouncer":  # in front of the machine's server: the worker's database there
        settings["database"] = worker_database(settings["database"])
    return settings


def fail_or_skip(message: str) -> NoReturn:
    """Skip the calling test, saying ``message``; under CI, where every server must run, fail it."""
    if in_ci():
        pytest.fail(f"CI needs every server: {message}")
    pytest.skip(message)


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def new_database(cls: type[AsyncDatabase], name: str = "test", **settings: Any) -> AsyncDatabase:
    """``cls(name, **settings)``, hstore off for the ext classes: the script's servers have none."""
    if "register_hstore" in cls.__init__.__code__.co_varnames:
        settings.setdefault("register_hstore", False)
    return cls(name, **settings)
