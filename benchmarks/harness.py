"""Running the workloads in interleaved rounds, and the table of results.

Each round runs every workload once on each contender, one after the other
(peewee-async, raw driver, sync peewee, then the next workload; each round
starts with the next contender), so that a drift of the machine's speed hits
all three alike; the table shows the median of the rounds. On a backend with
a reference (:data:`~benchmarks.sides.REFERENCES`), the reference's raw side
is a fourth contender of the same rounds. The RSS growth of ``stream`` is
measured in a fresh process for each contender (:func:`rss_child`), where
nothing else has grown the heap first.
"""

from __future__ import annotations

import asyncio
import contextlib
import cProfile
import gc
import inspect
import io
import os
import pstats
import random
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, TextIO

import peewee

from .settings import ROOT
from .sides import (
    BACKENDS,
    DRIVERS,
    INSERT_MANY_NAME,
    ITEMS,
    PAGE,
    PAGES,
    REFERENCES,
    AsyncSide,
    RawSide,
    SyncSide,
    async_database,
    by_reference,
    fill_stream_sql,
    fill_timeline,
    sync_database,
)

#: workload -> (operations per run in quick mode, in full mode, what one operation is)
WORKLOADS: dict[str, tuple[int, int, str]] = {
    "get": (300, 3000, "one row by primary key, one task"),
    "get-c32": (640, 6400, "the same, 32 tasks at once"),
    "insert": (150, 1500, "create one row"),
    "select-1000": (8, 60, "1,000 rows at once"),
    "txn-c16": (96, 960, "atomic get + update, 16 tasks at once"),
    "count": (300, 3000, "COUNT(*)"),
    "stream": (20_000, 1_000_000, "rows streamed"),
    "get-expr": (300, 3000, "one row by a select query, objects.get(Item.select().where(...))"),
    "join-20": (100, 1000, "20 messages joined to their authors, two models a row"),
    "get-expr-prepared": (300, 3000, "get-expr's query prepared once, objects.prepare(...).get(k)"),
    "join-20-prepared": (100, 1000, "join-20's query prepared once, objects.prepare(...).execute(k)"),
    "annotated-20": (100, 1000, "20 users, each with the COUNT of its messages: a model and a count a row"),
    "count-where": (300, 3000, "COUNT(*) of a filtered select"),
    "update-where": (150, 1500, "UPDATE ... SET value = value + 1 WHERE id = ..."),
    "page-20": (12, 100, "a page of 20 joined messages and the COUNT(*) of all, two statements"),
    "insert-many-100": (30, 300, "insert_many() of 100 rows, one statement"),
    "app-mix": (50, 500, "the twitter example's private timeline: get the user, then count and page at once"),
}
SIDES = ("async", "raw", "sync")
#: Workloads whose rows are deleted after each run (untimed), so that the item table stays small.
GROWING = ("insert-many-100",)
#: The fourth contender of a backend with a reference: the raw side of REFERENCES[backend].
REFERENCE = "ref"
QUICK_ROUNDS = 3
FULL_ROUNDS = 10


@dataclass
class Plan:
    backends: Sequence[str]
    workloads: Sequence[str]
    rounds: int
    sizes: dict[str, int]
    rss: bool = True
    out: TextIO = field(default_factory=lambda: sys.stdout)
    #: Also show the lowest and highest async/raw ratio of a single round.
    spread: bool = False
    #: Run SQLite's contenders on one CPU (see :func:`one_cpu`).
    pin: bool = True


@dataclass
class Result:
    backend: str
    server: str
    rates: dict[str, dict[str, list[float]]]  # workload -> side -> ops/s of each round
    rss_mb: dict[str, float]  # side -> MB of RSS growth while streaming
    cpu: int | None = None  # the one CPU the run was pinned to, if it was


@contextlib.contextmanager
def one_cpu(backend: str, plan: Plan) -> Iterator[int | None]:
    """For SQLite, run this thread and the threads it starts on one CPU; yields that CPU, or ``None``.

    Each SQLite statement is a trip from the event loop to the connection's
    thread and back, the raw side's as much as peewee-async's. On a virtual
    machine a wake-up on another CPU costs 20 to 100 microseconds and comes and
    goes with where the scheduler put the two threads (a raw one-row select
    took 22 µs a call in one run and 95 in the next), more than the
    statement; on one CPU the trip is a steady 20. Pinned, the ratio measures
    the libraries, not the scheduler. Linux only; ``--no-pin`` turns it off.
    """
    if backend != "sqlite" or not plan.pin or not hasattr(os, "sched_setaffinity"):
        yield None
        return
    before = os.sched_getaffinity(0)
    cpu = min(before)
    # Pid 0 is the calling thread: the connections' threads, started inside, inherit it.
    os.sched_setaffinity(0, {cpu})
    try:
        yield cpu
    finally:
        os.sched_setaffinity(0, before)


def sides_of(backend: str) -> tuple[str, ...]:
    """The contenders of ``backend``, in the order of a round's first workload."""
    return (*SIDES, REFERENCE) if backend in REFERENCES else SIDES


def sizes_for(quick: bool, scale: float = 1.0, stream_rows: int | None = None) -> dict[str, int]:
    sizes = {name: max(1, round((q if quick else f) * scale)) for name, (q, f, _) in WORKLOADS.items()}
    if stream_rows is not None:
        sizes["stream"] = stream_rows
    return sizes


class Bench:
    """The contenders on one backend, with the benchmark's tables made and filled."""

    def __init__(self, backend: str, workdir: str, stream_rows: int, tag: str) -> None:
        self.backend = backend
        self.sqlite_path = os.path.join(workdir, "bench.db")
        self.stream_rows = stream_rows
        self.tag = tag
        self.sync = SyncSide(sync_database(backend, self.sqlite_path), tag)
        self.async_: AsyncSide | None = None
        self.raw: RawSide | None = None
        self.ref: RawSide | None = None
        self.ids: list[int] = []
        self.user_ids: list[int] = []
        self.message_ids: list[int] = []  # in ascending order

    def models(self) -> list[type[peewee.Model]]:
        sync = self.sync
        return [sync.Item, sync.StreamRow, sync.User, sync.Relationship, sync.Message]

    def create_tables(self) -> None:
        db = self.sync.database
        db.drop_tables(self.models())
        db.create_tables(self.models())
        self.sync.Item.insert_many([{"name": f"item {i}", "value": i} for i in range(ITEMS)]).execute()
        db.execute_sql(fill_stream_sql(self.backend, self.sync.StreamRow._meta.table_name, self.stream_rows))
        fill_timeline(self.backend, self.sync.User, self.sync.Relationship, self.sync.Message)
        db.close()

    def drop_tables(self) -> None:
        db = self.sync.database
        db.drop_tables(self.models())
        db.close()

    def server_version(self) -> str:
        db = self.sync.database
        sql = "SELECT sqlite_version()" if self.backend == "sqlite" else "SELECT version()"
        version = str(db.execute_sql(sql).fetchone()[0])
        db.close()
        return version.split(" on ")[0].split(",")[0]

    async def open(self, reference: bool = True) -> None:
        """Open the contenders; the reference's raw side too unless ``reference`` is false."""
        self.async_ = AsyncSide(async_database(self.backend, self.sqlite_path), self.tag)
        self.raw = await RawSide.open(self.backend, self.sqlite_path, self.tag)
        if reference and self.backend in REFERENCES:
            # The same server, so the same tables: it reads what the others read.
            self.ref = await RawSide.open(REFERENCES[self.backend], self.sqlite_path, self.tag)
        self.sync.database.connect(reuse_if_open=True)
        sync = self.sync
        self.ids = [row[0] for row in sync.Item.select(sync.Item.id).tuples()]
        self.user_ids = [row[0] for row in sync.User.select(sync.User.id).order_by(sync.User.id).tuples()]
        message = sync.Message
        self.message_ids = [row[0] for row in message.select(message.id).order_by(message.id).tuples()]

    async def close(self) -> None:
        # Each contender is closed once, though run_backend calls this again on its way out.
        async_, raw, ref = self.async_, self.raw, self.ref
        self.async_ = self.raw = self.ref = None
        if async_ is not None:
            await async_.close()
        if raw is not None:
            await raw.close()
        if ref is not None:
            await ref.close()
        self.sync.close()

    def side(self, name: str) -> Any:
        return {"async": self.async_, "raw": self.raw, "sync": self.sync, REFERENCE: self.ref}[name]

    def argument(self, workload: str, n: int, rng: random.Random) -> Any:
        if workload in ("get", "get-c32", "txn-c16", "get-expr", "get-expr-prepared", "update-where"):
            return [rng.choice(self.ids) for _ in range(n)]
        if workload == "count-where":
            return [rng.randrange(ITEMS) for _ in range(n)]
        if workload in ("join-20", "join-20-prepared"):
            # The 20 messages up to a random id: never fewer than 20 of them.
            return [rng.choice(self.message_ids[PAGE - 1 :]) for _ in range(n)]
        if workload == "annotated-20":
            # The 20 users after a random id: never fewer than 20 of them.
            return [rng.choice(self.user_ids[:-PAGE]) for _ in range(n)]
        if workload == "page-20":
            return [rng.randint(1, PAGES) for _ in range(n)]
        if workload == "app-mix":
            return [rng.choice(self.user_ids) for _ in range(n)]
        return n

    async def run(self, side: str, workload: str, argument: Any) -> float:
        """Run one workload once on one contender; its operations per second."""
        method: Callable[[Any], Any] = getattr(self.side(side), workload.replace("-", "_"))
        gc.collect()
        start = time.perf_counter()
        done = method(argument)
        if inspect.isawaitable(done):
            done = await done
        elapsed = time.perf_counter() - start
        if workload in GROWING:
            # Not timed: the next run, and the other workloads, find the table as it was.
            item = self.sync.Item
            item.delete().where(item.name == INSERT_MANY_NAME).execute()
        return float(done) / elapsed


async def run_backend(backend: str, plan: Plan, workdir: str) -> Result:
    with one_cpu(backend, plan) as cpu:
        result = await _run_rounds(backend, plan, workdir)
    result.cpu = cpu
    return result


async def _run_rounds(backend: str, plan: Plan, workdir: str) -> Result:
    bench = Bench(backend, workdir, plan.sizes["stream"], str(os.getpid()))
    bench.create_tables()
    server = bench.server_version()
    sides = sides_of(backend)
    rates: dict[str, dict[str, list[float]]] = {w: {s: [] for s in sides} for w in plan.workloads}
    rss: dict[str, float] = {}
    # What exists now (in a test run, the whole test session's objects) is left
    # out of the collections that precede each timed run: each then scans only
    # what the contenders made.
    gc.freeze()
    try:
        await bench.open()
        rng = random.Random(1)
        # One small warm-up run of each: connections opened, code paths loaded.
        for workload in plan.workloads:
            small = 1000 if workload == "stream" else 32
            argument = bench.argument(workload, min(small, plan.sizes[workload]), rng)
            for side in sides:
                await bench.run(side, workload, argument)
        for round_ in range(plan.rounds):
            # Each round starts with another contender: none is always first
            # (after the others have warmed the server's caches) or always last.
            order = sides[round_ % len(sides) :] + sides[: round_ % len(sides)]
            for workload in plan.workloads:
                argument = bench.argument(workload, plan.sizes[workload], rng)
                for side in order:
                    rates[workload][side].append(await bench.run(side, workload, argument))
        await bench.close()
        if plan.rss and "stream" in plan.workloads:
            # Not the reference's: its own backend's line has it.
            for side in SIDES:
                rss[side] = measure_rss(backend, side, workdir, plan.sizes["stream"])
    finally:
        gc.unfreeze()
        await bench.close()
        bench.drop_tables()
    return Result(backend, server, rates, rss)


# -- memory ------------------------------------------------------------------------


def measure_rss(backend: str, side: str, workdir: str, rows: int) -> float:
    """MB by which a fresh process's peak RSS grows while ``side`` streams ``rows`` rows."""
    tag = str(os.getpid())  # the child reads the tables of this process
    command = [sys.executable, "-m", "benchmarks", "--rss-child", backend, side, workdir, str(rows), tag]
    done = subprocess.run(command, capture_output=True, text=True, timeout=900, cwd=ROOT)
    if done.returncode != 0:
        raise RuntimeError(f"Measuring the RSS of {side} on {backend} failed:\n{done.stderr}")
    return float(done.stdout.strip().splitlines()[-1])


def current_rss_mb() -> float:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def peak_rss_mb() -> float:
    """The process's RSS high-water mark (VmHWM; ``ru_maxrss`` would carry the parent's over exec)."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("/proc/self/status has no VmHWM line")


def reset_peak_rss() -> None:
    try:
        with open("/proc/self/clear_refs", "w") as clear_refs:
            clear_refs.write("5")  # resets VmHWM to the current RSS
    except OSError:
        pass  # then the peak may include the warm-up, which is smaller


def rss_child(backend: str, side: str, workdir: str, rows: int, tag: str) -> float:
    """In a process of its own: stream once on one contender, return the peak RSS growth in MB."""

    async def main() -> float:
        bench = Bench(backend, workdir, rows, tag)
        await bench.open(reference=False)
        try:
            await bench.run(side, "stream", min(rows, 1000))  # load every code path first
            gc.collect()
            before = current_rss_mb()
            reset_peak_rss()
            await bench.run(side, "stream", rows)
            return max(0.0, peak_rss_mb() - before)
        finally:
            await bench.close()

    return asyncio.run(main())


# -- profiling -----------------------------------------------------------------------


async def profile_backend(backend: str, workload: str, plan: Plan, workdir: str, top: int = 25) -> None:
    """Run ``workload`` on peewee-async under cProfile and print the functions that took longest."""
    with one_cpu(backend, plan):
        await _profile(backend, workload, plan, workdir, top)


async def _profile(backend: str, workload: str, plan: Plan, workdir: str, top: int) -> None:
    bench = Bench(backend, workdir, plan.sizes["stream"], str(os.getpid()))
    bench.create_tables()
    try:
        await bench.open(reference=False)
        rng = random.Random(1)
        await bench.run("async", workload, bench.argument(workload, min(32, plan.sizes[workload]), rng))
        argument = bench.argument(workload, plan.sizes[workload], rng)
        profiler = cProfile.Profile()
        profiler.enable()
        rate = await bench.run("async", workload, argument)
        profiler.disable()
        print(
            f"\n{BACKENDS[backend]}: {workload} on peewee-async under cProfile, {rate:,.0f} ops/s",
            file=plan.out,
        )
        for order in ("tottime", "cumulative"):
            buffer = io.StringIO()
            stats = pstats.Stats(profiler, stream=buffer)
            stats.strip_dirs().sort_stats(order).print_stats(top)
            print(f"-- top {top} by {order}", file=plan.out)
            print(_trim_stats(buffer.getvalue()), file=plan.out)
    finally:
        await bench.close()
        bench.drop_tables()


def _trim_stats(text: str) -> str:
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if line.lstrip().startswith("ncalls"):
            return "\n".join(lines[i:]).rstrip()
    return text.rstrip()


# -- the table -------------------------------------------------------------------------


def format_result(result: Result, plan: Plan) -> str:
    title = f"{BACKENDS[result.backend]}, server {result.server}"
    pool = "1 connection" if result.backend == "sqlite" else "pool of 10"
    if result.cpu is not None:
        pool += f", on CPU {result.cpu} alone"
    sides = sides_of(result.backend)
    reference = REFERENCES.get(result.backend)
    # A backend with a reference has its raw side's rate as a fourth figure and
    # peewee-async's rate over it as a third ratio, after the usual two.
    ref_rate = f"{'raw ' + DRIVERS[reference]:>14}" if reference else ""
    ref_ratio = f"{'async/' + DRIVERS[reference]:>16}" if reference else ""
    width = max(14, 1 + max(map(len, result.rates), default=0))  # the longest workload's name and a space
    lines = [
        f"{title}; {pool}; median of {plan.rounds} round(s), operations per second",
        f"{'workload':<{width}}{'peewee-async':>14}{'raw driver':>14}{'sync peewee':>14}{ref_rate}"
        f"{'async/raw':>11}{'async/sync':>12}{ref_ratio}"
        + (f"{'async/raw per round':>22}" if plan.spread else ""),
    ]
    for workload, by_side in result.rates.items():
        medians = {side: statistics.median(values) for side, values in by_side.items()}
        line = (
            f"{workload:<{width}}"
            + "".join(f"{medians[side]:>14,.0f}" for side in sides)
            + f"{medians['async'] / medians['raw']:>11.2f}{medians['async'] / medians['sync']:>12.2f}"
        )
        if reference:
            line += f"{medians['async'] / medians[REFERENCE]:>16.2f}"
        if plan.spread:
            # Each round runs the contenders back to back: the ratio of one round
            # shows how far the machine's drift moves the median's ratio.
            ratios = [a / r for a, r in zip(by_side["async"], by_side["raw"], strict=True)]
            line += f"{min(ratios):>16.2f} - {max(ratios):.2f}"
        lines.append(line)
    if result.rss_mb:
        rows = plan.sizes["stream"]
        growth = ", ".join(
            f"{title} +{result.rss_mb[side]:.1f} MB"
            for side, title in zip(SIDES, ("peewee-async", "raw driver", "sync peewee"), strict=True)
        )
        lines.append(f"stream: RSS growth over {rows:,} rows: {growth}")
    return "\n".join(lines)


def header(plan: Plan) -> str:
    import peewee_async

    text = (
        f"peewee-async {peewee_async.__version__}, peewee {peewee.__version__}, "
        f"Python {sys.version.split()[0]}, {os.cpu_count()} cores; {time.strftime('%Y-%m-%d %H:%M')}\n"
        "Rounds interleave the contenders (async, raw, sync; raw, sync, async; ...); "
        "ops/s for stream are rows/s.\n"
        "Sync peewee runs the concurrent workloads' tasks one after another."
    )
    for reference, backends in by_reference(plan.backends).items():
        driver = DRIVERS[reference]
        text += (
            f"\nOn {' and '.join(backends)}: raw {driver} is a fourth contender of the same rounds "
            f"(async, raw, sync, {driver}; raw, sync, {driver}, async; ...); "
            f"async/{driver} is peewee-async's rate over its."
        )
    return text
