"""What every server module shares: where the files are, running commands, waiting, servers.json."""

from __future__ import annotations

import json
import os
import pathlib
import secrets
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

BASE = pathlib.Path(os.environ.get("PEEWEE_ASYNC_SERVERS", "/tmp/peewee-async-servers"))
STATE = BASE / "servers.json"
IS_ROOT = os.geteuid() == 0
HOST = "127.0.0.1"

#: A server's settings in servers.json, and what its start function returns.
Settings = dict[str, Any]
#: The whole of servers.json: each server's settings plus the certificates and passwords they share.
State = dict[str, Any]


@dataclass(frozen=True)
class Datadir:
    """A server's folder under BASE (its logs, socket, pid file) and the data directory in it."""

    name: str
    port: int

    @property
    def folder(self) -> pathlib.Path:
        return BASE / self.name

    @property
    def data(self) -> pathlib.Path:
        return self.folder / "data"


@dataclass(frozen=True)
class Server:
    """One server of ours, as the command line drives it."""

    name: str
    #: Why it cannot run on this machine (a missing binary), or None.
    missing: Callable[[], str | None]
    #: Start it (making its data first if there is none) and return its settings for servers.json.
    start: Callable[[State], Settings]
    #: Stop it and say whether it ran; ``removing``: the data goes right after, so no need to be tidy.
    stop: Callable[[bool], bool]
    ready: Callable[[], bool]
    #: What ``status`` adds after "up", e.g. whether a standby streams.
    detail: Callable[[], str] = lambda: ""


_output = threading.Lock()


def say(message: str) -> None:
    """Print one line whole: the groups of servers start in threads side by side."""
    with _output:
        sys.stdout.write(message + "\n")
        sys.stdout.flush()


def run(*command: str, user: str | None = None, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    """Run ``command`` (as ``user`` when we are root), raising with its output if it fails."""
    if user and IS_ROOT:
        command = ("runuser", "-u", user, "--", *command)
    result = subprocess.run(command, capture_output=True, text=True, stdin=subprocess.DEVNULL, **kwargs)
    if result.returncode:
        raise SystemExit(f"{' '.join(command)} failed ({result.returncode}):\n{result.stdout}{result.stderr}")
    return result


def succeeds(*command: str, user: str | None = None) -> bool:
    """Whether ``command`` exits 0; for readiness probes, which fail while a server starts."""
    if user and IS_ROOT:
        command = ("runuser", "-u", user, "--", *command)
    try:
        result = subprocess.run(command, capture_output=True, stdin=subprocess.DEVNULL, check=False)
    except FileNotFoundError:
        return False
    return result.returncode == 0


def give(path: pathlib.Path, user: str, mode: int = 0o600) -> None:
    """Make ``path`` ``user``'s own (when we are root) with ``mode``: servers refuse keys others can read."""
    path.chmod(mode)
    if IS_ROOT:
        shutil.chown(path, user, user)


def folder_for(name: str, user: str) -> pathlib.Path:
    """``BASE/name``, owned by the server's user, who writes its sockets, pid file and logs there."""
    BASE.mkdir(parents=True, exist_ok=True)
    BASE.chmod(0o755)
    folder = BASE / name
    folder.mkdir(exist_ok=True)
    give(folder, user, 0o755)
    return folder


def wait_for(what: str, ready: Callable[[], bool], seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while not ready():
        if time.monotonic() > deadline:
            raise SystemExit(f"{what} did not become ready within {seconds:.0f}s")
        time.sleep(0.1)


def find_binary(name: str) -> str | None:
    # /usr/sbin (mariadbd, pgbouncer) is not on every user's PATH.
    found = shutil.which(name)
    if found is None and pathlib.Path("/usr/sbin", name).exists():
        found = f"/usr/sbin/{name}"
    return found


def new_password() -> str:
    return "pw-" + secrets.token_hex(12)


def process_alive(pid: int) -> bool:
    try:
        stat = pathlib.Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    # A zombie (state Z) has exited; only its parent's wait() would remove it.
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def running_pid(pid_file: pathlib.Path, program: str) -> int | None:
    """The pid in ``pid_file`` if ``program`` runs with it."""
    try:
        pid = int(pid_file.read_text().strip())
        running = pathlib.Path(f"/proc/{pid}/comm").read_text().strip()
    except (FileNotFoundError, ValueError):
        return None
    # Otherwise a pid file left by a crash, its number maybe since taken by another process.
    return pid if running == program else None


def stop_pid_file(
    what: str, pid_file: pathlib.Path, program: str, sig: int = signal.SIGTERM, grace: float = 30
) -> bool:
    """Signal the ``program`` named in ``pid_file`` and wait until it is gone; SIGKILL it after ``grace``s."""
    pid = running_pid(pid_file, program)
    if pid is None:
        return False
    for sig_now, seconds in ((sig, grace), (signal.SIGKILL, 10)):
        try:
            os.kill(pid, sig_now)
        except ProcessLookupError:
            return True
        deadline = time.monotonic() + seconds
        while process_alive(pid):
            if time.monotonic() > deadline:
                break
            time.sleep(0.05)
        else:
            return True
    raise SystemExit(f"{what} (pid {pid}) did not stop")


def load_state() -> State:
    try:
        state: State = json.loads(STATE.read_text())
    except FileNotFoundError:
        return {}
    return state


def save_state(state: State) -> None:
    BASE.mkdir(parents=True, exist_ok=True)
    temporary = STATE.with_suffix(".tmp")
    temporary.write_text(json.dumps(state, indent=2) + "\n")
    temporary.chmod(0o644)
    # Tests may read it while a named start rewrites it: never let them see half a file.
    temporary.replace(STATE)
