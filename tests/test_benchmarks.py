"""The benchmark runs to the end on every backend and prints its table.

Nothing here is about speed: a run at a tiny size must complete and give a
figure and both ratios for every workload, and the RSS growth of ``stream``.
"""

from __future__ import annotations

import re

import pytest

from benchmarks.cli import main
from benchmarks.harness import WORKLOADS
from benchmarks.sides import BACKENDS

from .conftest import _require_server

NUMBER = r"[\d,]+"
RATIO = r"\d+\.\d\d"


@pytest.mark.parametrize("backend", list(BACKENDS))
def test_quick_run_prints_a_ratio_per_workload(backend: str, capsys: pytest.CaptureFixture[str]) -> None:
    if backend != "sqlite":
        _require_server(backend)
    assert (
        main(["--quick", "--backend", backend, "--rounds", "1", "--scale", "0.05", "--stream-rows", "3000"])
        == 0
    )
    out = capsys.readouterr().out
    assert BACKENDS[backend] in out
    for workload in WORKLOADS:
        line = rf"^{re.escape(workload)}\s+{NUMBER}\s+{NUMBER}\s+{NUMBER}\s+{RATIO}\s+{RATIO}$"
        assert re.search(line, out, re.MULTILINE), f"no result line for {workload}:\n{out}"
    growth = r"\+\d+\.\d MB"
    rss = (
        rf"^stream: RSS growth over 3,000 rows: peewee-async {growth}, raw driver {growth}, "
        rf"sync peewee {growth}$"
    )
    assert re.search(rss, out, re.MULTILINE), out


def test_one_workload_and_the_profile(capsys: pytest.CaptureFixture[str]) -> None:
    args = ["--quick", "--backend", "sqlite", "--rounds", "2", "--scale", "0.05"]
    assert main([*args, "--workload", "count", "--workload", "get"]) == 0
    out = capsys.readouterr().out
    assert re.search(rf"^count\s+{NUMBER}", out, re.MULTILINE)
    assert re.search(rf"^get\s+{NUMBER}", out, re.MULTILINE)
    assert "insert" not in out and "RSS" not in out
    assert main([*args, "--profile", "get"]) == 0
    out = capsys.readouterr().out
    assert "get on peewee-async under cProfile" in out
    assert "-- top 25 by tottime" in out and "ncalls" in out
    assert "operations.py" in out  # peewee-async's own functions are in the profile
