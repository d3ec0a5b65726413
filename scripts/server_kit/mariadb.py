"""MariaDB servers of our own: the TLS one, and a primary with a replica replicating from it by GTID."""

from __future__ import annotations

import pathlib
import shutil
import subprocess
from dataclasses import dataclass

from .certificates import TLS_USER, certificates, server_copy, tls_password
from .common import (
    HOST,
    IS_ROOT,
    Datadir,
    Server,
    Settings,
    State,
    find_binary,
    folder_for,
    new_password,
    run,
    say,
    stop_pid_file,
    succeeds,
    wait_for,
)

#: The user the tests log in as on the primary and the replica (over TCP, with a password).
USER = "peewee"
#: The replica's login on the primary. No password: the server listens on the loopback only,
#: and servers.json, readable by every local user, holds the tests' password anyway.
REPLICATION_USER = "replication"


def missing() -> str | None:
    return None if find_binary("mariadbd") else "mariadbd is not installed"


@dataclass(frozen=True)
class Instance(Datadir):
    """One datadir and the mariadbd serving it, reached as root over its own socket."""

    @property
    def socket(self) -> pathlib.Path:
        return self.folder / "mariadb.sock"

    def ready(self) -> bool:
        if not self.socket.exists():
            return False
        return succeeds(
            "mariadb-admin",
            "--no-defaults",
            f"--socket={self.socket}",
            "-uroot",
            "--connect-timeout=2",
            "ping",
        )

    def execute(self, sql: str) -> str:
        """Run ``sql`` as root; its output, tab-separated and without column names."""
        client = (
            "mariadb",
            "--no-defaults",
            f"--socket={self.socket}",
            "-uroot",
            "--batch",
            "--skip-column-names",
        )
        return run(*client, "-e", sql).stdout.strip()

    def status(self, sql: str) -> dict[str, str]:
        """The one row of a SHOW ... STATUS statement (empty if none), by column name."""
        client = ("mariadb", "--no-defaults", f"--socket={self.socket}", "-uroot", "--vertical")
        row = {}
        for line in run(*client, "-e", sql).stdout.splitlines():
            key, colon, value = line.partition(":")
            if colon and not key.startswith("*"):
                row[key.strip()] = value.strip()
        return row

    def launch(self, *options: str) -> None:
        """Start mariadbd (making its datadir first if there is none) and wait until it answers."""
        folder_for(self.name, "mysql")
        as_mysql = ["--user=mysql"] if IS_ROOT else []
        if not self.data.exists():
            self.make_data(as_mysql)
        server = [
            find_binary("mariadbd") or "mariadbd", "--no-defaults", f"--datadir={self.data}",
            f"--port={self.port}", f"--bind-address={HOST}", f"--socket={self.socket}",
            f"--pid-file={self.folder / 'mariadb.pid'}", f"--log-error={self.folder / 'error.log'}",
            f"--tmpdir={folder_for(f'{self.name}/tmp', 'mysql')}",
            "--skip-name-resolve", "--innodb-buffer-pool-size=16M",
            # Throwaway data: no waiting for the disk at each commit.
            "--innodb-flush-log-at-trx-commit=0", "--innodb-doublewrite=0",
            *options, *as_mysql,
        ]  # fmt: skip
        # Its own session and no pipes of ours: a caller's subprocess.run(capture_output=True)
        # must not wait for the server to close them.
        subprocess.Popen(
            server,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        wait_for(self.name, self.ready)

    def make_data(self, as_mysql: list[str]) -> None:
        """Make the datadir: in a folder of its own first, renamed once complete, so that a failed
        install never leaves a datadir behind that a later start would serve half-made. The
        bootstrap's temporary tables go to a folder of ours, not the shared /tmp. One retry: a
        bootstrap beside the others on a busy machine has been seen to fail once."""
        making = self.folder / "data.new"
        scratch = self.folder / "tmp"
        for attempt in (1, 2):
            for folder in (making, scratch):
                shutil.rmtree(folder, ignore_errors=True)
            folder_for(f"{self.name}/tmp", "mysql")
            try:
                run(
                    "mariadb-install-db", "--no-defaults", f"--datadir={making}", f"--tmpdir={scratch}",
                    "--auth-root-authentication-method=normal", "--skip-test-db", *as_mysql,
                )  # fmt: skip
            except SystemExit as failure:
                if attempt == 2:
                    raise
                say(f"{self.name}: making its datadir failed, trying once more:\n{failure}")
                continue
            making.rename(self.data)
            return

    def stop(self, removing: bool) -> bool:
        return stop_pid_file(self.name, self.folder / "mariadb.pid", "mariadbd")


# -- the TLS server ----------------------------------------------------------------------

TLS = Instance("mariadb-tls", 53306)


def start_tls(state: State) -> Settings:
    password = tls_password(state)
    settings = {
        "host": "localhost",
        "port": TLS.port,
        "database": "test",
        "user": TLS_USER,
        "password": password,
    }
    if TLS.ready():
        say(f"{TLS.name}: already up")
        return settings
    files = server_copy(certificates(state), folder_for(TLS.name, "mysql"), "mysql")
    TLS.launch(
        f"--ssl-ca={files['ca']}", f"--ssl-cert={files['server_cert']}", f"--ssl-key={files['server_key']}",
        # Every TCP connection must be TLS: plaintext is refused before any password is asked.
        "--require-secure-transport=ON",
        "--skip-log-bin", "--max-connections=60",
    )  # fmt: skip
    TLS.execute(
        "CREATE DATABASE IF NOT EXISTS test;"
        f"CREATE USER IF NOT EXISTS '{TLS_USER}'@'%' IDENTIFIED BY '{password}' REQUIRE SSL;"
        f"ALTER USER '{TLS_USER}'@'%' IDENTIFIED BY '{password}' REQUIRE SSL;"
        f"GRANT ALL ON test.* TO '{TLS_USER}'@'%';"
    )
    say(f"{TLS.name}: started on localhost:{TLS.port}")
    return settings


# -- the primary and its replica -------------------------------------------------------------

PRIMARY = Instance("mariadb-primary", 53340)
REPLICA = Instance("mariadb-replica", 53341)


def user_password(state: State) -> str | None:
    """The tests' password as servers.json has it (the datadirs hold it too), or None."""
    for name in (PRIMARY.name, REPLICA.name):
        password = (state.get(name) or {}).get("password")
        if password:
            return str(password)
    return None


def settings_of(instance: Instance, password: str) -> Settings:
    return {"host": HOST, "port": instance.port, "database": "test", "user": USER, "password": password}


def replicating() -> bool:
    """Whether the replica's IO and SQL threads both run (the IO one says "Connecting" while it can't)."""
    if not REPLICA.ready():
        return False
    row = REPLICA.status("SHOW SLAVE STATUS")
    return row.get("Slave_IO_Running") == "Yes" and row.get("Slave_SQL_Running") == "Yes"


def wait_until_replicated() -> None:
    """Until the replica replicates and has applied all the primary has written so far."""
    wait_for(f"{REPLICA.name} replicating from {PRIMARY.name}", replicating, 30)
    position = PRIMARY.execute("SELECT @@gtid_binlog_pos")
    if REPLICA.execute(f"SELECT MASTER_GTID_WAIT('{position}', 30)") != "0":
        raise SystemExit(f"{REPLICA.name} did not reach {PRIMARY.name}'s GTID {position} within 30s")


def start_primary(state: State) -> Settings:
    password = user_password(state)
    if PRIMARY.ready() and password:
        say(f"{PRIMARY.name}: already up")
        return settings_of(PRIMARY, password)
    password = password or new_password()
    made = not PRIMARY.data.exists()
    if not PRIMARY.ready():
        # Binary log from the very first start on: the replica replays all of it, users included.
        PRIMARY.launch(
            "--log-bin=primary-bin", "--server-id=1", "--binlog-format=ROW", "--max-connections=200"
        )
    # Idempotent, so run at every start: a start stopped halfway still ends with all of it.
    # '%' for the tests' user: with --skip-name-resolve a TCP client's host is its address
    # (127.0.0.1), never 'localhost', whichever name the test connected with.
    PRIMARY.execute(
        f"CREATE USER IF NOT EXISTS '{REPLICATION_USER}'@'{HOST}';"
        f"GRANT REPLICATION SLAVE ON *.* TO '{REPLICATION_USER}'@'{HOST}';"
        "CREATE DATABASE IF NOT EXISTS test;"
        f"CREATE USER IF NOT EXISTS '{USER}'@'%' IDENTIFIED BY '{password}';"
        f"ALTER USER '{USER}'@'%' IDENTIFIED BY '{password}';"
        f"GRANT ALL ON test.* TO '{USER}'@'%';"
        # PROCESS: the tests see every connection in SHOW PROCESSLIST (KILL of one's own needs
        # nothing more); SLAVE MONITOR and BINLOG MONITOR: they can ask how far the replica is.
        f"GRANT PROCESS, SLAVE MONITOR, BINLOG MONITOR ON *.* TO '{USER}'@'%';"
    )
    if REPLICA.ready():
        wait_until_replicated()  # the replica reconnects by itself; fault tests want it back before going on
    say(f"{PRIMARY.name}: {'made and ' if made else ''}started on {HOST}:{PRIMARY.port}")
    return settings_of(PRIMARY, password)


def start_replica(state: State) -> Settings:
    # The primary, started first, has settled the password; the user reaches the replica from it.
    password = user_password(state) or new_password()
    if REPLICA.ready():
        say(f"{REPLICA.name}: already up")
        return settings_of(REPLICA, password)
    made = not REPLICA.data.exists()
    if made and not PRIMARY.ready():
        raise SystemExit(f"{REPLICA.name}: cannot be made while {PRIMARY.name} is down; start it first")
    # No --skip-slave-start: restarted, it resumes replicating by itself from where it was.
    REPLICA.launch(
        "--server-id=2", "--read-only=OFF", "--skip-log-bin", "--relay-log=replica-relay-bin",
        "--max-connections=200",
    )  # fmt: skip
    if not REPLICA.status("SHOW SLAVE STATUS"):
        # An empty gtid_slave_pos: the replica asks for the primary's binary log from its start.
        # Retry every second (not every minute) while the primary is down in a fault test.
        REPLICA.execute(
            f"CHANGE MASTER TO MASTER_HOST='{HOST}', MASTER_PORT={PRIMARY.port},"
            f" MASTER_USER='{REPLICATION_USER}', MASTER_PASSWORD='', MASTER_USE_GTID=slave_pos,"
            " MASTER_CONNECT_RETRY=1;"
            "START SLAVE;"
        )
    if PRIMARY.ready():
        wait_until_replicated()
        how = "replicating from"
    else:
        wait_for(
            f"{REPLICA.name}'s SQL thread",
            lambda: REPLICA.status("SHOW SLAVE STATUS").get("Slave_SQL_Running") == "Yes",
            30,
        )
        how = "waiting for"
    say(
        f"{REPLICA.name}: {'made and ' if made else ''}started on {HOST}:{REPLICA.port}, {how} {PRIMARY.name}"
    )
    return settings_of(REPLICA, password)


def replica_detail() -> str:
    if not REPLICA.ready():
        return ""
    row = REPLICA.status("SHOW SLAVE STATUS")
    if row.get("Slave_IO_Running") == "Yes" and row.get("Slave_SQL_Running") == "Yes":
        return "replicating"
    io, sql = row.get("Slave_IO_Running", "-"), row.get("Slave_SQL_Running", "-")
    return f"not replicating (IO {io}, SQL {sql})"


SERVERS = [
    Server(TLS.name, missing, start_tls, TLS.stop, TLS.ready),
    Server(PRIMARY.name, missing, start_primary, PRIMARY.stop, PRIMARY.ready),
    Server(REPLICA.name, missing, start_replica, REPLICA.stop, REPLICA.ready, replica_detail),
]
