"""The servers that ``scripts/servers.py`` starts, one module per kind (see that script's docstring).

``SERVERS`` lists them in the order they start; ``GROUPS`` says which must start one after the
other (a standby after its primary): the groups themselves start side by side.
"""

from __future__ import annotations

from . import mariadb, pgbouncer, postgresql
from .common import Server

SERVERS: dict[str, Server] = {
    server.name: server for server in (*postgresql.SERVERS, *mariadb.SERVERS, *pgbouncer.SERVERS)
}
GROUPS: list[list[str]] = [
    ["postgresql-tls"],
    ["mariadb-tls"],
    ["postgresql-primary", "postgresql-standby"],
    ["mariadb-primary", "mariadb-replica"],
    ["pgbouncer"],
]
assert sorted(name for group in GROUPS for name in group) == sorted(SERVERS)
