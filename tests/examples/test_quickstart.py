"""examples/quickstart.py run as a script: SQLite by default, a server from a URL."""

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from ..conftest import _require_server
from .conftest import EXAMPLES, ROOT, TARGETS, connect, server_url

EXPECTED = "Yo, I can do it sync!\nNot bad. Watch this, I'm async!\n"


def run_quickstart(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(EXAMPLES / "quickstart.py"), *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def assert_table_dropped(url: str) -> None:
    database = connect(url)
    try:
        assert not database.table_exists("quickstartmodel")
    finally:
        database.close()


def test_sqlite_file_in_the_temp_folder_by_default() -> None:
    env = {key: value for key, value in os.environ.items() if key != "DATABASE_URL"}
    done = run_quickstart([], env)
    assert done.returncode == 0, done.stderr
    assert done.stdout == EXPECTED
    assert_table_dropped(f"sqlite:///{Path(tempfile.gettempdir()) / 'peewee_async_quickstart.db'}")


@pytest.mark.parametrize("target", list(TARGETS))
def test_server_given_as_argument(target: str) -> None:
    _require_server(TARGETS[target][0])
    url = server_url(target)
    done = run_quickstart([url], {**os.environ, "DATABASE_URL": "sqlite:///not-this-one.db"})
    assert done.returncode == 0, done.stderr
    assert done.stdout == EXPECTED
    assert_table_dropped(url)
    assert not (ROOT / "not-this-one.db").exists()


@pytest.mark.parametrize("target", list(TARGETS))
def test_server_given_in_database_url(target: str) -> None:
    _require_server(TARGETS[target][0])
    url = server_url(target)
    done = run_quickstart([], {**os.environ, "DATABASE_URL": url})
    assert done.returncode == 0, done.stderr
    assert done.stdout == EXPECTED
    assert_table_dropped(url)
