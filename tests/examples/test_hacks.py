"""examples/hacks.py runs on each backend and prints what peewee's recipes must give on its data."""

from __future__ import annotations

import os
import subprocess
import sys
from urllib.parse import quote

import pytest

from ..conftest import _require_server, server_settings, url_options
from ..servers import ROOT
from .conftest import TARGETS

TOP_1 = "huey: huey 4 | mickey: mickey 3 | zaizee: zaizee 1"
TOP_2 = "huey: huey 4, huey 3 | mickey: mickey 3, mickey 2 | zaizee: zaizee 1"

COMMON = [
    "== Optimistic locking ==",
    "  save a new user: True, version 1",
    "  save it again unchanged: ValueError: No changes have been made.",
    "  change to kitten and save: True, version 2",
    "  a second copy saves macaw: True, version 3",
    "  the first copy saves little parrot: ConflictDetectedException: HacksUser id=1 was saved by "
    "someone else since it was read at version 2: get it again, re-apply the change and save again.",
    "  in the database: macaw, version 3",
    "  two tasks save at once: 1 saved, 1 conflict, version 4",
    f"  MAX() in a subquery: {TOP_1}",
    f"  window function RANK(): {TOP_2}",
    f"  COUNT() in a correlated subquery: {TOP_2}",
    f"  self-join, COUNT() in HAVING: {TOP_2}",
    "== Date math (tasks due at 2024-01-01 12:00:00) ==",
    "  backup (every 10s): next run 2024-01-01 12:00:05",
    "  cleanup (every 3600s): next run 2024-01-01 11:30:00",
    "  reindex (every 3600s): next run 2024-01-01 12:30:00",
    "  report (every 10s): next run 2024-01-01 11:59:50",
    "  due now: cleanup, report",
]
NO_SQLITE_FUNCTIONS = (
    "  @db.func(): not supported here (SQLite only: PostgreSQL and MySQL have no Python functions)"
)

EXPECTED = {
    "sqlite": [
        f"  GROUP BY ... HAVING MAX(): {TOP_1}",
        "  LATERAL joins: not supported here (SQLite has no LATERAL joins)",
        f"  LIMIT in an IN (subquery): {TOP_2}",
        "  stored password: scrypt$16384$8$1$<16-byte salt>$<64-byte hash>",
        "  login charlie / testing: accepted",
        "  login charlie / wrong: rejected",
    ],
    "postgres": [
        '  GROUP BY ... HAVING MAX(): not supported here (the server refused it: column "t1.id" must '
        "appear in the GROUP BY clause or be used in an aggregate function)",
        f"  LATERAL join, from HacksUser: {TOP_2}",
        f"  LATERAL join, from Tweet: {TOP_2}",
        f"  LIMIT in an IN (subquery): {TOP_2}",
        NO_SQLITE_FUNCTIONS,
    ],
    "mysql": [
        "  GROUP BY ... HAVING MAX(): not supported here (MySQL and MariaDB take the columns outside "
        "GROUP BY from any row of the group, not from the one with the MAX())",
        "LIMIT in an IN (subquery): not supported here (the server refused it: (1235,",
        NO_SQLITE_FUNCTIONS,
    ],
}


def url_of(target: str) -> str:
    server, scheme = TARGETS[target]
    settings = server_settings(server)
    password = f":{quote(settings['password'], safe='')}" if settings["password"] else ""
    return (
        f"{scheme}://{quote(settings['user'], safe='')}{password}@{settings['host']}:{settings['port']}"
        f"/{settings['database']}{url_options(server)}"
    )


@pytest.mark.parametrize("target", ["sqlite", *TARGETS])
def test_hacks_example(target: str) -> None:
    args = [sys.executable, str(ROOT / "examples" / "hacks.py")]
    server = TARGETS[target][0] if target != "sqlite" else "sqlite"
    if server != "sqlite":
        _require_server(server)
        args.append(url_of(target))
    env = {key: value for key, value in os.environ.items() if key != "DATABASE_URL"}
    done = subprocess.run(args, capture_output=True, text=True, timeout=120, env=env, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    lines = done.stdout.splitlines()
    for expected in COMMON + EXPECTED[server]:
        assert any(expected in line for line in lines), f"missing {expected!r} in:\n{done.stdout}"
    if server == "mysql":
        lateral = next(line for line in lines if "LATERAL" in line)
        # MySQL 8.0.14+ runs the LATERAL joins; older servers refuse them, MariaDB has none.
        assert lateral.endswith(TOP_2) or "not supported here" in lateral, lateral
