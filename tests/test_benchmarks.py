"""The benchmark runs to the end on every backend and prints its table.

Nothing here is about speed: a run at a tiny size must complete and give a
figure and both ratios for every workload, and the RSS growth of ``stream``;
on a backend with a reference (asyncpg, psycopg, asyncmy), the reference's
figure and the third ratio too.
"""

from __future__ import annotations

import re

import pytest

from benchmarks.cli import main
from benchmarks.harness import WORKLOADS
from benchmarks.sides import BACKENDS, DRIVERS, REFERENCES, SERVERS

from .conftest import _require_server

NUMBER = r"[\d,]+"
RATIO = r"\d+\.\d\d"


@pytest.mark.parametrize("backend", list(BACKENDS))
def test_quick_run_prints_a_ratio_per_workload(backend: str, capsys: pytest.CaptureFixture[str]) -> None:
    _require_server(SERVERS[backend])
    assert (
        main(["--quick", "--backend", backend, "--rounds", "1", "--scale", "0.05", "--stream-rows", "3000"])
        == 0
    )
    out = capsys.readouterr().out
    assert BACKENDS[backend] in out
    reference = REFERENCES.get(backend)
    # Four rates and three ratios with a reference, three and two without.
    rates, ratios = (4, 3) if reference else (3, 2)
    columns = r"\s+".join([NUMBER] * rates + [RATIO] * ratios)
    for workload in WORKLOADS:
        line = rf"^{re.escape(workload)}\s+{columns}$"
        found = re.search(line, out, re.MULTILINE)
        assert found, f"no result line for {workload}:\n{out}"
        if reference:
            # The third ratio is peewee-async's rate over the reference's. Both rates are
            # printed rounded to whole operations, which at a tiny size (24 against 25)
            # moves their quotient by several hundredths: the printed ratio must lie
            # between the quotients of the rates' rounding bounds, to its own rounding.
            figures = [float(f.replace(",", "")) for f in found.group().split()[1:]]
            ours, theirs, ratio = figures[0], figures[3], figures[6]
            lowest = max(ours - 0.5, 0.0) / (theirs + 0.5)
            highest = (ours + 0.5) / max(theirs - 0.5, 0.5)
            assert lowest - 0.005 <= ratio <= highest + 0.005, found.group()
    if reference:
        driver = DRIVERS[reference]
        heading = rf"^workload\s+peewee-async\s+raw driver\s+sync peewee\s+raw {driver}\s+async/raw\s+"
        assert re.search(rf"{heading}async/sync\s+async/{driver}$", out, re.MULTILINE), out
        assert f"On {backend}: raw {driver} is a fourth contender of the same rounds" in out
    else:
        assert "fourth contender" not in out
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
