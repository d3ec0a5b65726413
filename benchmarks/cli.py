"""``python -m benchmarks``: the command line."""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from collections.abc import Sequence

from .harness import (
    FULL_ROUNDS,
    QUICK_ROUNDS,
    WORKLOADS,
    Plan,
    format_result,
    header,
    profile_backend,
    rss_child,
    run_backend,
    sizes_for,
)
from .sides import BACKENDS, DRIVERS, by_reference


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description=(
            "Median ops/s of peewee-async, of its raw driver with hand-written SQL, and of sync "
            "peewee, on each backend, per workload: "
            + "; ".join(f"{name}: {what}" for name, (_, _, what) in WORKLOADS.items())
            + ". The raw side of the server's first driver runs too, for a third ratio: "
            + "; ".join(
                f"raw {DRIVERS[ref]} on {' and '.join(backends)}"
                for ref, backends in by_reference(BACKENDS).items()
            )
            + ". The servers are those of the tests (tests.json or POSTGRES_*/MYSQL_* variables)."
        ),
    )
    p.add_argument(
        "--quick",
        action="store_true",
        help=f"small runs, {QUICK_ROUNDS} rounds (about a minute a backend)",
    )
    p.add_argument("--rounds", type=int, help=f"rounds (default {QUICK_ROUNDS} quick, {FULL_ROUNDS} full)")
    p.add_argument(
        "--backend",
        action="append",
        choices=list(BACKENDS),
        help="run only this backend (repeat for several; default: all): "
        + ", ".join(f"{name} = {title}" for name, title in BACKENDS.items()),
    )
    p.add_argument(
        "--workload",
        action="append",
        choices=list(WORKLOADS),
        help="run only this workload (repeat for several; default: all)",
    )
    p.add_argument("--scale", type=float, default=1.0, help="multiply the operations of every run")
    p.add_argument(
        "--stream-rows", type=int, help="rows of the stream workload (default 20,000 quick, 1,000,000)"
    )
    p.add_argument("--no-rss", action="store_true", help="skip the RSS measurement of stream")
    p.add_argument(
        "--spread",
        action="store_true",
        help="also show the lowest and highest async/raw ratio of a single round",
    )
    p.add_argument(
        "--no-pin",
        action="store_true",
        help="run SQLite unpinned (by default its contenders share one CPU: a trip to the "
        "connection's thread across CPUs varies by up to 80 microseconds with the scheduler)",
    )
    p.add_argument(
        "--profile",
        metavar="WORKLOAD",
        choices=list(WORKLOADS),
        help="run WORKLOAD once on peewee-async under cProfile and print the top functions",
    )
    p.add_argument(
        "--rss-child", nargs=5, metavar=("BACKEND", "SIDE", "DIR", "ROWS", "TAG"), help=argparse.SUPPRESS
    )
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.rss_child:
        backend, side, workdir, rows, tag = args.rss_child
        print(f"{rss_child(backend, side, workdir, int(rows), tag):.3f}")
        return 0
    stream_rows = args.stream_rows
    if stream_rows is None and args.scale != 1.0:
        stream_rows = max(1, round(sizes_for(args.quick)["stream"] * args.scale))
    plan = Plan(
        backends=args.backend or list(BACKENDS),
        workloads=args.workload or list(WORKLOADS),
        rounds=args.rounds or (QUICK_ROUNDS if args.quick else FULL_ROUNDS),
        sizes=sizes_for(args.quick, args.scale, stream_rows),
        rss=not args.no_rss,
        spread=args.spread,
        pin=not args.no_pin,
    )
    return asyncio.run(_run(plan, args.profile))


async def _run(plan: Plan, profile: str | None) -> int:
    out = plan.out
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="peewee_async_bench_") as workdir:
        if profile is not None:
            for backend in plan.backends:
                await profile_backend(backend, profile, plan, workdir)
            return 0
        print(header(plan), file=out)
        for backend in plan.backends:
            result = await run_backend(backend, plan, workdir)
            print("\n" + format_result(result, plan), file=out, flush=True)
    print(f"\n({time.perf_counter() - start:.0f} s)", file=out)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
