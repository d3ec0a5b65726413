"""Start and stop the project's own database servers for the tests, beside the machine's.

    python scripts/servers.py start [NAME...]   # idempotent: starts what is not running yet
    python scripts/servers.py status [NAME...]  # exits 1 unless every one named (or all) is up
    python scripts/servers.py stop              # stops all that start started, and removes their files
    python scripts/servers.py stop NAME...      # stops only those, keeping their data

The machine's own PostgreSQL (5432) and MariaDB (3306) serve most tests; the
servers here are the ones a test needs with a configuration of its own, on
ports of their own on 127.0.0.1, with datadirs under ``$PEEWEE_ASYNC_SERVERS``
(``/tmp/peewee-async-servers`` by default). Nothing of the machine's servers is
touched. The NAMEs:

* ``postgresql-tls`` (54332) and ``mariadb-tls`` (53306): TLS-enabled servers
  with a throwaway CA made at start and a server certificate naming
  ``localhost`` only. Their user ``peewee_tls`` may connect only over TLS and
  only with its password; PostgreSQL's ``peewee_cert`` only with a client
  certificate.
* ``postgresql-primary`` (54340) and ``postgresql-standby`` (54341): a primary
  and a hot standby streaming from it (made by ``pg_basebackup -R``), both
  trusting ``postgres`` on the loopback, database ``test`` with hstore. A
  standby stopped or a primary restarted reconnects by itself.
* ``mariadb-primary`` (53340) and ``mariadb-replica`` (53341): a primary with a
  binary log and a replica replicating all of it by GTID, database ``test`` and
  the user ``peewee`` (a password of its own) on both.
* ``pgbouncer`` (54350): PgBouncer in transaction pooling mode in front of the
  machine's PostgreSQL (databases ``test``, ``postgres`` and any other name, as
  the test workers' ``test_gw0``; user ``postgres`` trusted). Run as root,
  ``start`` installs Debian's package if it is missing.

The named forms are for fault tests: ``stop postgresql-primary`` then ``start
postgresql-primary`` restarts it on its data. Each returns once the servers are
really down, or up (and, for a primary whose standby or replica runs, once that
replicates again). A server whose binaries are missing is not started, and
``start`` says so; the tests that need it skip (and fail under CI=true).

``start`` writes ``servers.json`` in that folder: each server's address,
database, user and password, and the certificate files, which
``tests/servers.py`` reads. The TLS servers need ``trustme`` (in the
``develop`` extra). Run as root, it runs the servers as the ``postgres`` and
``mysql`` users. The servers themselves are in ``scripts/server_kit/``.
"""

from __future__ import annotations

import shutil
import sys
import time
from concurrent.futures import ThreadPoolExecutor

from server_kit import GROUPS, SERVERS
from server_kit.common import BASE, STATE, load_state, save_state, say

USAGE = f"usage: python {sys.argv[0]} {{start|status|stop}} [NAME...]; NAMEs: {', '.join(SERVERS)}"


def start(names: list[str]) -> None:
    began = time.monotonic()
    state = load_state()
    groups = [[name for name in group if not names or name in names] for group in GROUPS]
    groups = [group for group in groups if group]

    def start_group(group: list[str]) -> None:
        for name in group:
            server = SERVERS[name]
            reason = server.missing()
            if reason:
                say(f"{name}: not started, {reason}")
                state.pop(name, None)
                continue
            # Before the next of the group starts: a replica takes its password from its primary's.
            state[name] = server.start(state)

    failures = []
    # One thread per group: most of a start is waiting for initdb, install-db or a server.
    with ThreadPoolExecutor(len(groups)) as pool:
        for future in [pool.submit(start_group, group) for group in groups]:
            try:
                future.result()
            except SystemExit as failure:
                failures.append(str(failure))
    # Threads finish in any order; the file keeps one: what the servers share, then SERVERS' order.
    order = ["certificates", "password", *SERVERS]
    save_state(dict(sorted(state.items(), key=lambda item: order.index(item[0]) if item[0] in order else 0)))
    if failures:
        raise SystemExit("\n".join(failures))
    wanted = [name for group in groups for name in group]
    up = sum(name in state for name in wanted)
    say(f"{up} of {len(wanted)} servers up after {time.monotonic() - began:.1f}s; settings in {STATE}")


def stop(names: list[str]) -> None:
    for name in reversed(SERVERS):  # a standby or replica before its primary
        if names and name not in names:
            continue
        stopped = SERVERS[name].stop(not names)
        if names:
            say(f"{name}: {'stopped' if stopped else 'was not running'}")
    if not names:
        shutil.rmtree(BASE, ignore_errors=True)
        say("servers stopped")


def status(names: list[str]) -> None:
    """Print each server's state; exit 1 unless every one is up."""
    all_up = True
    for name, server in SERVERS.items():
        if names and name not in names:
            continue
        reason = server.missing()
        if reason:
            all_up = False
            say(f"{name}: down ({reason})")
        elif server.ready():
            detail = server.detail()
            say(f"{name}: up{f' ({detail})' if detail else ''}")
        else:
            all_up = False
            say(f"{name}: down")
    if not all_up:
        raise SystemExit(1)


def main(argv: list[str]) -> None:
    commands = {"start": start, "status": status, "stop": stop}
    if not argv or argv[0] not in commands:
        raise SystemExit(USAGE)
    names = argv[1:]
    unknown = [name for name in names if name not in SERVERS]
    if unknown:
        raise SystemExit(f"unknown server {', '.join(unknown)}; {USAGE}")
    commands[argv[0]](names)


if __name__ == "__main__":
    main(sys.argv[1:])
