"""Start and stop the project's own database servers for the tests, beside the machine's.

    python scripts/servers.py start    # idempotent: starts what is not running yet
    python scripts/servers.py status
    python scripts/servers.py stop     # stops what start started, and removes its files

The machine's own PostgreSQL (5432) and MariaDB (3306) serve most tests; the
servers here are the ones a test needs with a configuration of its own, on
ports of their own, with datadirs under ``$PEEWEE_ASYNC_SERVERS``
(``/tmp/peewee-async-servers`` by default). Nothing of the machine's servers is
touched.

* ``postgresql-tls`` and ``mariadb-tls``: TLS-enabled servers with a throwaway
  CA made at start and a server certificate naming ``localhost`` only. Their
  user ``peewee_tls`` may connect only over TLS and only with its password;
  PostgreSQL's ``peewee_cert`` only with a client certificate.

``start`` writes ``servers.json`` in that folder: each server's address, users,
password and certificate files, which ``tests/servers.py`` reads. It needs
``trustme`` (in the ``develop`` extra) and, run as root, runs the servers as
the ``postgres`` and ``mysql`` users.
"""

from __future__ import annotations

import json
import os
import pathlib
import secrets
import shutil
import signal
import subprocess
import sys
import time
from typing import Any

BASE = pathlib.Path(os.environ.get("PEEWEE_ASYNC_SERVERS", "/tmp/peewee-async-servers"))
STATE = BASE / "servers.json"
PORTS = {"postgresql-tls": 54332, "mariadb-tls": 53306}
TLS_USER = "peewee_tls"
CERT_USER = "peewee_cert"
IS_ROOT = os.geteuid() == 0


def run(*command: str, user: str | None = None, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    """Run ``command`` (as ``user`` when we are root), raising with its output if it fails."""
    if user and IS_ROOT:
        command = ("runuser", "-u", user, "--", *command)
    result = subprocess.run(command, capture_output=True, text=True, **kwargs)
    if result.returncode:
        raise SystemExit(f"{' '.join(command)} failed ({result.returncode}):\n{result.stdout}{result.stderr}")
    return result


def give(path: pathlib.Path, user: str, mode: int = 0o600) -> None:
    """Make ``path`` ``user``'s own (when we are root) with ``mode``: servers refuse keys others can read."""
    path.chmod(mode)
    if IS_ROOT:
        shutil.chown(path, user, user)


def wait_for(what: str, ready: Any, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while not ready():
        if time.monotonic() > deadline:
            raise SystemExit(f"{what} did not become ready within {seconds:.0f}s")
        time.sleep(0.2)


# -- certificates --------------------------------------------------------------


def make_certificates(folder: pathlib.Path) -> dict[str, str]:
    """A CA, a server certificate for ``localhost`` only, a client certificate, and a CA that signed none."""
    import trustme

    folder.mkdir(parents=True, exist_ok=True)
    folder.chmod(0o755)
    ca = trustme.CA(key_type=trustme.KeyType.RSA)
    server = ca.issue_cert("localhost", key_type=trustme.KeyType.RSA)
    client = ca.issue_cert("peewee-cert.test", common_name=CERT_USER, key_type=trustme.KeyType.RSA)
    files = {
        "ca": folder / "ca.pem",
        "other_ca": folder / "other-ca.pem",
        "server_cert": folder / "server.pem",
        "server_key": folder / "server.key",
        "client_cert": folder / "client.pem",
        "client_key": folder / "client.key",
    }
    ca.cert_pem.write_to_path(str(files["ca"]))
    trustme.CA(key_type=trustme.KeyType.RSA).cert_pem.write_to_path(str(files["other_ca"]))
    server.cert_chain_pems[0].write_to_path(str(files["server_cert"]))
    server.private_key_pem.write_to_path(str(files["server_key"]))
    client.cert_chain_pems[0].write_to_path(str(files["client_cert"]))
    client.private_key_pem.write_to_path(str(files["client_key"]))
    for name in ("ca", "other_ca", "server_cert", "client_cert"):
        files[name].chmod(0o644)
    files["client_key"].chmod(0o600)
    return {name: str(path) for name, path in files.items()}


def server_copy(certs: dict[str, str], folder: pathlib.Path, user: str) -> dict[str, str]:
    """The CA, certificate and key a server reads, copied into its folder as its user's own."""
    copies = {}
    for name in ("ca", "server_cert", "server_key"):
        target = folder / pathlib.Path(certs[name]).name
        shutil.copyfile(certs[name], target)
        give(target, user, 0o600 if name == "server_key" else 0o644)
        copies[name] = str(target)
    return copies


# -- PostgreSQL ------------------------------------------------------------------


def pg_bin(name: str) -> str:
    bindir = run("pg_config", "--bindir").stdout.strip()
    return str(pathlib.Path(bindir) / name)


def start_postgresql_tls(certs: dict[str, str], password: str) -> dict[str, Any]:
    port = PORTS["postgresql-tls"]
    folder = BASE / "postgresql-tls"
    data = folder / "data"
    settings = {
        "host": "localhost", "port": port, "database": "test", "user": TLS_USER, "password": password,
        "cert_user": CERT_USER,
    }  # fmt: skip
    if pg_ready(folder, port):
        return settings
    folder.mkdir(parents=True, exist_ok=True)
    give(folder, "postgres", 0o755)
    if not data.exists():
        run(
            pg_bin("initdb"),
            "-D",
            str(data),
            "-U",
            "postgres",
            "--auth-local=trust",
            "--no-sync",
            user="postgres",
        )
    files = server_copy(certs, folder, "postgres")
    (data / "postgresql.auto.conf").write_text(
        f"port = {port}\n"
        "listen_addresses = '127.0.0.1'\n"
        f"unix_socket_directories = '{folder}'\n"
        "ssl = on\n"
        f"ssl_cert_file = '{files['server_cert']}'\n"
        f"ssl_key_file = '{files['server_key']}'\n"
        f"ssl_ca_file = '{files['ca']}'\n"
        "password_encryption = 'scram-sha-256'\n"
        "max_connections = 40\n"
        "shared_buffers = 16MB\n"
        "fsync = off\n"
    )
    # Only TLS ("hostssl") for TCP: plaintext finds no entry and is refused.
    (data / "pg_hba.conf").write_text(
        "local all postgres trust\n"
        f"hostssl all {TLS_USER} 127.0.0.1/32 scram-sha-256\n"
        f"hostssl all {CERT_USER} 127.0.0.1/32 cert\n"
    )
    for path in (data / "postgresql.auto.conf", data / "pg_hba.conf"):
        give(path, "postgres")
    run(pg_bin("pg_ctl"), "-D", str(data), "-l", str(folder / "server.log"), "-w", "start", user="postgres")
    psql = (pg_bin("psql"), "-h", str(folder), "-p", str(port), "-U", "postgres", "-v", "ON_ERROR_STOP=1")
    for role in (TLS_USER, CERT_USER):
        exists = run(
            *psql, "-tAc", f"SELECT 1 FROM pg_roles WHERE rolname = '{role}'", "postgres", user="postgres"
        )
        if not exists.stdout.strip():
            run(*psql, "-c", f"CREATE ROLE {role} LOGIN", "postgres", user="postgres")
    run(*psql, "-c", f"ALTER ROLE {TLS_USER} PASSWORD '{password}'", "postgres", user="postgres")
    if not run(
        *psql, "-tAc", "SELECT 1 FROM pg_database WHERE datname = 'test'", "postgres", user="postgres"
    ).stdout.strip():
        run(*psql, "-c", f"CREATE DATABASE test OWNER {TLS_USER}", "postgres", user="postgres")
        run(*psql, "-c", f"GRANT ALL ON SCHEMA public TO {CERT_USER}", "test", user="postgres")
    wait_for("postgresql-tls", lambda: pg_ready(folder, port))
    return settings


def pg_ready(folder: pathlib.Path, port: int) -> bool:
    if not (folder / "data" / "postmaster.pid").exists():
        return False
    result = subprocess.run((pg_bin("pg_isready"), "-q", "-h", str(folder), "-p", str(port)), check=False)
    return result.returncode == 0


def stop_postgresql(folder: pathlib.Path) -> None:
    data = folder / "data"
    if (data / "postmaster.pid").exists():
        run(pg_bin("pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop", user="postgres")


# -- MariaDB ---------------------------------------------------------------------


def start_mariadb_tls(certs: dict[str, str], password: str) -> dict[str, Any]:
    port = PORTS["mariadb-tls"]
    folder = BASE / "mariadb-tls"
    data = folder / "data"
    socket = folder / "mariadb.sock"
    settings = {"host": "localhost", "port": port, "database": "test", "user": TLS_USER, "password": password}
    if mariadb_ready(socket):
        return settings
    folder.mkdir(parents=True, exist_ok=True)
    give(folder, "mysql", 0o755)
    if not data.exists():
        run(
            "mariadb-install-db", "--no-defaults", f"--datadir={data}",
            "--auth-root-authentication-method=normal", "--skip-test-db",
            *(["--user=mysql"] if IS_ROOT else []),
        )  # fmt: skip
    files = server_copy(certs, folder, "mysql")
    mariadbd = shutil.which("mariadbd") or "/usr/sbin/mariadbd"  # /usr/sbin is not on every PATH
    server = [
        mariadbd, "--no-defaults", f"--datadir={data}", f"--port={port}", "--bind-address=127.0.0.1",
        f"--socket={socket}", f"--pid-file={folder / 'mariadb.pid'}", f"--log-error={folder / 'error.log'}",
        f"--ssl-ca={files['ca']}", f"--ssl-cert={files['server_cert']}", f"--ssl-key={files['server_key']}",
        # Every TCP connection must be TLS: plaintext is refused before any password is asked.
        "--require-secure-transport=ON",
        "--skip-log-bin", "--skip-name-resolve", "--innodb-buffer-pool-size=16M", "--max-connections=60",
        *(["--user=mysql"] if IS_ROOT else []),
    ]  # fmt: skip
    subprocess.Popen(
        server,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    wait_for("mariadb-tls", lambda: mariadb_ready(socket))
    mariadb = ("mariadb", "--no-defaults", f"--socket={socket}", "-uroot")
    run(
        *mariadb, "-e",
        "CREATE DATABASE IF NOT EXISTS test;"
        f"CREATE USER IF NOT EXISTS '{TLS_USER}'@'%' IDENTIFIED BY '{password}' REQUIRE SSL;"
        f"ALTER USER '{TLS_USER}'@'%' IDENTIFIED BY '{password}' REQUIRE SSL;"
        f"GRANT ALL ON test.* TO '{TLS_USER}'@'%';",
    )  # fmt: skip
    return settings


def mariadb_ready(socket: pathlib.Path) -> bool:
    if not socket.exists():
        return False
    command = (
        "mariadb-admin",
        "--no-defaults",
        f"--socket={socket}",
        "-uroot",
        "--connect-timeout=2",
        "ping",
    )
    return subprocess.run(command, capture_output=True, check=False).returncode == 0


def stop_mariadb(folder: pathlib.Path) -> None:
    pid_file = folder / "mariadb.pid"
    if not pid_file.exists():
        return
    pid = int(pid_file.read_text().strip())
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    wait_for("mariadb-tls to stop", lambda: not pathlib.Path(f"/proc/{pid}").exists(), 60)


# -- commands --------------------------------------------------------------------


def start() -> None:
    BASE.mkdir(parents=True, exist_ok=True)
    BASE.chmod(0o755)
    state = json.loads(STATE.read_text()) if STATE.exists() else {}
    certs = state.get("certificates") or make_certificates(BASE / "certificates")
    password = state.get("password") or "pw-" + secrets.token_hex(12)
    state = {"certificates": certs, "password": password}
    for name, start_server, binary in (
        ("postgresql-tls", start_postgresql_tls, "pg_config"),
        ("mariadb-tls", start_mariadb_tls, "mariadbd"),
    ):
        if shutil.which(binary) is None and not pathlib.Path("/usr/sbin", binary).exists():
            # The tests that need it skip, naming this script (and fail under CI=true).
            print(f"{name}: not started, {binary} is not installed")
            continue
        state[name] = start_server(certs, password)
    STATE.write_text(json.dumps(state, indent=2))
    STATE.chmod(0o644)
    print(f"servers up; settings in {STATE}")


def stop() -> None:
    stop_postgresql(BASE / "postgresql-tls")
    stop_mariadb(BASE / "mariadb-tls")
    shutil.rmtree(BASE, ignore_errors=True)
    print("servers stopped")


def status() -> None:
    """Print each server's state; exit 1 unless every one is up."""
    up = {
        "postgresql-tls": shutil.which("pg_config") is not None
        and pg_ready(BASE / "postgresql-tls", PORTS["postgresql-tls"]),
        "mariadb-tls": mariadb_ready(BASE / "mariadb-tls" / "mariadb.sock"),
    }
    for name, running in up.items():
        print(f"{name}: {'up' if running else 'down'}")
    if not all(up.values()):
        raise SystemExit(1)


if __name__ == "__main__":
    commands = {"start": start, "stop": stop, "status": status}
    if len(sys.argv) != 2 or sys.argv[1] not in commands:
        raise SystemExit(f"usage: python {sys.argv[0]} {{{'|'.join(commands)}}}")
    commands[sys.argv[1]]()
