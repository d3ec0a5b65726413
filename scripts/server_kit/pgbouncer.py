"""PgBouncer of our own, in transaction pooling mode, in front of the machine's PostgreSQL."""

from __future__ import annotations

import os
import pathlib
import signal
import subprocess

from .common import (
    BASE,
    HOST,
    IS_ROOT,
    Server,
    Settings,
    State,
    find_binary,
    folder_for,
    run,
    running_pid,
    say,
    stop_pid_file,
    succeeds,
    wait_for,
)

NAME = "pgbouncer"
PORT = 54350
#: The machine's own PostgreSQL, which the pool serves.
UPSTREAM_PORT = 5432
FOLDER = BASE / NAME
POLICY = pathlib.Path("/usr/sbin/policy-rc.d")


def missing() -> str | None:
    if not find_binary("psql"):
        return "psql is not installed (it tells when pgbouncer is up)"
    if find_binary("pgbouncer") or (IS_ROOT and find_binary("apt-get")):
        return None  # start installs it
    return "pgbouncer is not installed, and installing it needs root and apt-get"


def install() -> str:
    """apt-get install pgbouncer, without Debian starting its own pgbouncer service meanwhile."""
    say(f"{NAME}: installing the pgbouncer package")
    made_policy = not POLICY.exists()
    if made_policy:
        # invoke-rc.d asks this script before it starts a service; 101 means "don't".
        POLICY.write_text(
            "#!/bin/sh\n# scripts/servers.py: no service starts while it installs pgbouncer\nexit 101\n"
        )
        POLICY.chmod(0o755)
    try:
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        command = ("apt-get", "install", "-y", "-q", "--no-install-recommends", "pgbouncer")
        if subprocess.run(command, env=env, capture_output=True, stdin=subprocess.DEVNULL).returncode:
            # The package lists are probably missing or stale (a fresh container has none).
            run("apt-get", "update", "-q", env=env)
            run(*command, env=env)
    finally:
        if made_policy:
            POLICY.unlink(missing_ok=True)
    binary = find_binary("pgbouncer")
    if binary is None:
        raise SystemExit(f"{NAME}: installed, yet no pgbouncer binary found")
    return binary


def ready() -> bool:
    if not (FOLDER / "pgbouncer.pid").exists():
        return False
    return succeeds("psql", "-X", "-h", HOST, "-p", str(PORT), "-U", "postgres", "-tAc", "SELECT 1", "test")


def config() -> str:
    upstream = f"host={HOST} port={UPSTREAM_PORT}"
    return (
        "[databases]\n"
        f"test = {upstream} dbname=test\n"
        f"postgres = {upstream} dbname=postgres\n"
        # Any other name, the database of that name upstream: each pytest-xdist worker's own.
        f"* = {upstream}\n"
        "\n[pgbouncer]\n"
        f"listen_addr = {HOST}\n"
        f"listen_port = {PORT}\n"
        f"unix_socket_dir = {FOLDER}\n"
        f"pidfile = {FOLDER / 'pgbouncer.pid'}\n"
        f"logfile = {FOLDER / 'pgbouncer.log'}\n"
        # trust still wants the user in auth_file.
        "auth_type = trust\n"
        f"auth_file = {FOLDER / 'userlist.txt'}\n"
        "admin_users = postgres\n"
        "pool_mode = transaction\n"
        "max_client_conn = 1000\n"
        "default_pool_size = 40\n"
        # A reset query runs only in session mode: in transaction mode the pool returns a server
        # connection after each transaction, with nothing to reset.
        "server_reset_query =\n"
        # Startup parameters PgBouncer does not track refuse the connection ("unsupported
        # startup parameter") unless listed here; these are what the drivers may send.
        "ignore_startup_parameters = extra_float_digits,options,search_path\n"
    )


def start(state: State) -> Settings:
    settings = {"host": HOST, "port": PORT, "database": "test", "user": "postgres", "password": ""}
    if ready():
        ini = FOLDER / "pgbouncer.ini"
        if ini.exists() and ini.read_text() != config():
            # Started by an older checkout: the settings of this one, read again by SIGHUP.
            ini.write_text(config())
            pid = running_pid(FOLDER / "pgbouncer.pid", "pgbouncer")
            if pid is not None:
                os.kill(pid, signal.SIGHUP)
                say(f"{NAME}: already up, its settings reloaded")
                return settings
        say(f"{NAME}: already up")
        return settings
    # Running, yet not answering: the machine's PostgreSQL is down, and a second one would not help.
    if running_pid(FOLDER / "pgbouncer.pid", "pgbouncer") is None:
        binary = find_binary("pgbouncer") or install()
        folder_for(NAME, "postgres")
        files = {FOLDER / "pgbouncer.ini": config(), FOLDER / "userlist.txt": '"postgres" ""\n'}
        for path, text in files.items():
            path.write_text(text)
            path.chmod(0o644)
        # -d: it goes into the background by itself, with a pid file; it refuses to run as root.
        run(binary, "-d", "-q", str(FOLDER / "pgbouncer.ini"), user="postgres")
    try:
        wait_for(NAME, ready, 30)
    except SystemExit:
        log = FOLDER / "pgbouncer.log"
        tail = "".join(log.read_text().splitlines(keepends=True)[-20:]) if log.exists() else ""
        raise SystemExit(
            f"{NAME} did not answer on {HOST}:{PORT} within 30s; its log ends:\n{tail}"
        ) from None
    say(f"{NAME}: started on {HOST}:{PORT}, pooling transactions for {HOST}:{UPSTREAM_PORT}")
    return settings


def stop(removing: bool) -> bool:
    # SIGTERM: PgBouncer 1.18 drops its clients and exits at once (from 1.23 on it waits for
    # them, and SIGQUIT is the immediate one): stop_pid_file kills it after a grace period either way.
    return stop_pid_file(NAME, FOLDER / "pgbouncer.pid", "pgbouncer", signal.SIGTERM)


SERVERS = [Server(NAME, missing, start, stop, ready)]
