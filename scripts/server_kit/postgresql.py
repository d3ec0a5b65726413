"""PostgreSQL servers of our own: the TLS one, and a primary with a hot standby streaming from it."""

from __future__ import annotations

import functools
import pathlib
import shutil
from dataclasses import dataclass

from .certificates import CERT_USER, TLS_USER, certificates, server_copy, tls_password
from .common import HOST, Datadir, Server, Settings, State, folder_for, give, run, say, succeeds, wait_for

STANDBY_NAME = "postgresql-standby"


def missing() -> str | None:
    return None if shutil.which("pg_config") else "pg_config is not installed"


@functools.cache
def pg_bin(name: str) -> str:
    # Debian keeps the server's binaries (initdb, pg_ctl) off PATH, in the version's bindir.
    bindir = run("pg_config", "--bindir").stdout.strip()
    return str(pathlib.Path(bindir) / name)


@dataclass(frozen=True)
class Cluster(Datadir):
    """One data directory and the postmaster serving it, reached as ``postgres`` over its own socket."""

    def ready(self) -> bool:
        if missing() or not (self.data / "postmaster.pid").exists():
            return False
        # As postgres: pg_isready counts a refused login as up, but the server logs it as an error.
        return succeeds(
            pg_bin("pg_isready"), "-q", "-h", str(self.folder), "-p", str(self.port), "-U", "postgres",
            "-d", "postgres",
        )  # fmt: skip

    def query(self, sql: str, database: str = "postgres") -> str | None:
        """``sql``'s output as text, or None if it failed (while the server starts, for one)."""
        psql = (pg_bin("psql"), "-X", "-h", str(self.folder), "-p", str(self.port), "-U", "postgres")
        try:
            result = run(*psql, "-v", "ON_ERROR_STOP=1", "-tAc", sql, database, user="postgres")
        except SystemExit:
            return None
        return result.stdout.strip()

    def execute(self, sql: str, database: str = "postgres") -> str:
        psql = (pg_bin("psql"), "-X", "-h", str(self.folder), "-p", str(self.port), "-U", "postgres")
        return run(*psql, "-v", "ON_ERROR_STOP=1", "-tAc", sql, database, user="postgres").stdout.strip()

    def initdb(self) -> None:
        run(
            pg_bin("initdb"), "-D", str(self.data), "-U", "postgres", "--auth-local=trust", "--no-sync",
            "--no-instructions", user="postgres",
        )  # fmt: skip

    def configure(self, settings: str, hba: str | None = None) -> None:
        """Our settings in ``postgresql.auto.conf`` (which overrides postgresql.conf), and pg_hba.conf."""
        files = {self.data / "postgresql.auto.conf": settings}
        if hba is not None:
            files[self.data / "pg_hba.conf"] = hba
        for path, text in files.items():
            path.write_text(text)
            give(path, "postgres")

    def launch(self) -> None:
        # -w: return once it accepts connections (a hot standby too).
        log = str(self.folder / "server.log")
        run(pg_bin("pg_ctl"), "-D", str(self.data), "-l", log, "-w", "-t", "60", "start", user="postgres")

    def stop(self, removing: bool) -> bool:
        if missing() or not (self.data / "postmaster.pid").exists():
            return False
        if not succeeds(pg_bin("pg_ctl"), "-D", str(self.data), "status", user="postgres"):
            return False  # a postmaster.pid left by a crash: nothing runs
        # "fast" ends the sessions but checkpoints, so a primary hands its standby all its WAL;
        # "immediate" is enough when the data is removed right after.
        mode = "immediate" if removing else "fast"
        run(pg_bin("pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop", user="postgres")
        return True


def base_settings(cluster: Cluster) -> str:
    return (
        f"port = {cluster.port}\n"
        f"listen_addresses = '{HOST}'\n"
        f"unix_socket_directories = '{cluster.folder}'\n"
        f"cluster_name = '{cluster.name}'\n"
        "fsync = off\n"
        "shared_buffers = 16MB\n"
    )


# -- the TLS server ----------------------------------------------------------------------

TLS = Cluster("postgresql-tls", 54332)


def start_tls(state: State) -> Settings:
    password = tls_password(state)
    settings = {
        "host": "localhost", "port": TLS.port, "database": "test", "user": TLS_USER, "password": password,
        "cert_user": CERT_USER,
    }  # fmt: skip
    if TLS.ready():
        say(f"{TLS.name}: already up")
        return settings
    folder = folder_for(TLS.name, "postgres")
    if not TLS.data.exists():
        TLS.initdb()
    files = server_copy(certificates(state), folder, "postgres")
    TLS.configure(
        base_settings(TLS) + "ssl = on\n"
        f"ssl_cert_file = '{files['server_cert']}'\n"
        f"ssl_key_file = '{files['server_key']}'\n"
        f"ssl_ca_file = '{files['ca']}'\n"
        "password_encryption = 'scram-sha-256'\n"
        "max_connections = 40\n",
        # Only TLS ("hostssl") for TCP: plaintext finds no entry and is refused.
        "local all postgres trust\n"
        f"hostssl all {TLS_USER} 127.0.0.1/32 scram-sha-256\n"
        f"hostssl all {CERT_USER} 127.0.0.1/32 cert\n",
    )
    TLS.launch()
    for role in (TLS_USER, CERT_USER):
        if not TLS.execute(f"SELECT 1 FROM pg_roles WHERE rolname = '{role}'"):
            TLS.execute(f"CREATE ROLE {role} LOGIN")
    TLS.execute(f"ALTER ROLE {TLS_USER} PASSWORD '{password}'")
    if not TLS.execute("SELECT 1 FROM pg_database WHERE datname = 'test'"):
        TLS.execute(f"CREATE DATABASE test OWNER {TLS_USER}")
        TLS.execute(f"GRANT ALL ON SCHEMA public TO {CERT_USER}", "test")
    say(f"{TLS.name}: started on localhost:{TLS.port}")
    return settings


# -- the primary and its hot standby -------------------------------------------------------

PRIMARY = Cluster("postgresql-primary", 54340)
STANDBY = Cluster(STANDBY_NAME, 54341)

# A standby needs max_connections and the like at least as high as its primary's: the same text.
REPLICATION_SETTINGS = (
    "max_connections = 100\n"  # the load tests open many connections
    "wal_level = replica\n"
    "max_wal_senders = 5\n"
    # No replication slot (a standby made anew would find the old one in the way): WAL kept
    # instead, enough for the standby to catch up after a fault test stopped it for a while.
    "wal_keep_size = '256MB'\n"
    "hot_standby = on\n"
    "hot_standby_feedback = on\n"
    # After its primary went away the standby retries every 5s by default: fault tests wait less.
    "wal_retrieve_retry_interval = '200ms'\n"
)
REPLICATION_HBA = (
    "local all all trust\n"
    "host all all 127.0.0.1/32 trust\n"
    "local replication all trust\n"
    "host replication all 127.0.0.1/32 trust\n"
)


def settings_of(cluster: Cluster) -> Settings:
    return {"host": HOST, "port": cluster.port, "database": "test", "user": "postgres", "password": ""}


def streaming() -> bool:
    """Whether the primary sees the standby streaming WAL from it."""
    sql = (
        f"SELECT 1 FROM pg_stat_replication WHERE application_name = '{STANDBY_NAME}' AND state = 'streaming'"
    )
    return PRIMARY.ready() and PRIMARY.query(sql) == "1"


def wait_for_streaming() -> None:
    wait_for(f"{STANDBY.name} streaming from {PRIMARY.name}", streaming, 30)


def start_primary(state: State) -> Settings:
    if PRIMARY.ready():
        say(f"{PRIMARY.name}: already up")
        return settings_of(PRIMARY)
    folder_for(PRIMARY.name, "postgres")
    made = not PRIMARY.data.exists()
    if made:
        PRIMARY.initdb()
    PRIMARY.configure(base_settings(PRIMARY) + REPLICATION_SETTINGS, REPLICATION_HBA)
    PRIMARY.launch()
    # Checked at every start, not only after initdb: a start stopped halfway must still end with them.
    if not PRIMARY.execute("SELECT 1 FROM pg_database WHERE datname = 'test'"):
        PRIMARY.execute("CREATE DATABASE test")
    PRIMARY.execute("CREATE EXTENSION IF NOT EXISTS hstore", "test")
    if STANDBY.ready():
        wait_for_streaming()  # its standby reconnects by itself; fault tests want it back before going on
    say(f"{PRIMARY.name}: {'made and ' if made else ''}started on {HOST}:{PRIMARY.port}")
    return settings_of(PRIMARY)


def start_standby(state: State) -> Settings:
    if STANDBY.ready():
        say(f"{STANDBY.name}: already up")
        return settings_of(STANDBY)
    folder_for(STANDBY.name, "postgres")
    made = not STANDBY.data.exists()
    if made:
        if not PRIMARY.ready():
            raise SystemExit(f"{STANDBY.name}: cannot be made while {PRIMARY.name} is down; start it first")
        # -R writes primary_conninfo (with this application_name, which pg_stat_replication shows)
        # and standby.signal; a fast checkpoint spares waiting for a spread one.
        conninfo = f"host={HOST} port={PRIMARY.port} user=postgres application_name={STANDBY_NAME}"
        run(
            pg_bin("pg_basebackup"), "-D", str(STANDBY.data), "-d", conninfo, "-R", "-X", "stream",
            "--checkpoint=fast", "--no-sync", user="postgres",
        )  # fmt: skip
    # The copied postgresql.auto.conf is the primary's (its port, its socket) plus what -R added.
    auto_conf = (STANDBY.data / "postgresql.auto.conf").read_text().splitlines()
    conninfo_lines = "".join(line + "\n" for line in auto_conf if line.startswith("primary_conninfo"))
    if not conninfo_lines:
        raise SystemExit(f"{STANDBY.name}: no primary_conninfo in {STANDBY.data / 'postgresql.auto.conf'}")
    STANDBY.configure(base_settings(STANDBY) + REPLICATION_SETTINGS + conninfo_lines)
    STANDBY.launch()
    wait_for(f"{STANDBY.name} in recovery", lambda: STANDBY.query("SELECT pg_is_in_recovery()") == "t", 30)
    if PRIMARY.ready():
        wait_for_streaming()
        how = "streaming from"
    else:
        how = "waiting for"
    say(
        f"{STANDBY.name}: {'made and ' if made else ''}started on {HOST}:{STANDBY.port}, {how} {PRIMARY.name}"
    )
    return settings_of(STANDBY)


def standby_detail() -> str:
    return "streaming" if streaming() else "not streaming"


SERVERS = [
    Server(TLS.name, missing, start_tls, TLS.stop, TLS.ready),
    Server(PRIMARY.name, missing, start_primary, PRIMARY.stop, PRIMARY.ready),
    Server(STANDBY.name, missing, start_standby, STANDBY.stop, STANDBY.ready, standby_detail),
]
