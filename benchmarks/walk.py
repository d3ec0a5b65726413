"""The walk of peewee-async's own code through one statement, traced with ``sys.setprofile``.

Run ``python -m benchmarks.walk [--backend postgres|mysql|sqlite] [-v]`` from the
repository root, or run this file directly (``python benchmarks/walk.py``): it
needs nothing of the repository but the installed ``peewee_async`` package,
whichever one comes first on ``sys.path``. For two statements on a warm
database, each run a few times first and then traced once::

    await objects.execute(User.select().where(User.name == 'x'))
    await objects.get(User, name='x')

it prints

* the walk: the modules of the package (``peewee_async.*`` and
  ``peewee_asyncext.*``, named relative to ``peewee_async``) that the running
  task calls into, in order, consecutive repeats collapsed;
* how many distinct modules that is, and the calls back: how often the walk
  enters a module it had already entered, and left, before;
* the frames of the package on the stack at the driver call of the statement:
  the first call into the driver (aiopg, aiomysql, aiosqlite, asyncpg,
  psycopg, asyncmy) that is given the statement's SQL.

The counting rules:

* Only fresh calls count. A coroutine resumed after an ``await`` gets a
  profiler ``'call'`` event too; it is not a new call. On Python 3.11 and
  later every ``'call'`` event stands at a ``RESUME`` instruction (so
  ``frame.f_lasti >= 0`` holds for fresh calls too): the event is a fresh call
  when that instruction's argument says "start of the function" (0), a
  resumption otherwise. On Python 3.10 and earlier a fresh frame has
  ``f_lasti == -1``. A frame once seen in the trace is a resumption whatever
  its instruction says. The rule is checked on a small coroutine chain at
  every run.
* A frame is the package's when its code's file lies in the package's
  directory: code the package generates at run time (e.g. a compiled row
  builder, whose file is ``<...>``) is not counted, nor are peewee's frames.
* Only calls made while the traced task runs are counted: event-loop
  callbacks (the drivers' socket readers, timers) run outside any task. A
  worker thread (aiosqlite's) is not traced at all.
"""

from __future__ import annotations

import argparse
import asyncio
import dis
import importlib.util
import inspect
import os
import sys
import tempfile
import types
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import peewee

import peewee_async

TABLE = "walk_user"
WARM_RUNS = 5
PACKAGES = ("peewee_async", "peewee_asyncext")
DRIVERS = ("aiopg", "aiomysql", "aiosqlite", "asyncpg", "psycopg", "asyncmy")
DEFAULTS: dict[str, dict[str, Any]] = {
    "postgres": {"database": "test", "host": "127.0.0.1", "port": 5432, "user": "postgres", "password": ""},
    "mysql": {"database": "test", "host": "127.0.0.1", "port": 3306, "user": "root", "password": ""},
}
ENV_KEYS = {"database": "DB", "host": "HOST", "port": "PORT", "user": "USER", "password": "PASSWORD"}

_GENERATOR_FLAGS = (
    inspect.CO_GENERATOR | inspect.CO_COROUTINE | inspect.CO_ASYNC_GENERATOR | inspect.CO_ITERABLE_COROUTINE
)
_RESUME = dis.opmap.get("RESUME")  # Python 3.11+


# -- where code lives ----------------------------------------------------


def _package_dir(name: str) -> str | None:
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        return None
    return os.path.realpath(next(iter(spec.submodule_search_locations)))


def _dirs(names: Sequence[str]) -> dict[str, str]:
    found = {}
    for name in names:
        path = _package_dir(name)
        if path is not None:
            found[name] = path
    return found


class Places:
    """Which package a code object's file lies in: ours (by short module name) or a driver's."""

    def __init__(self) -> None:
        self.ours = _dirs(PACKAGES)
        self.drivers = _dirs(DRIVERS)
        self._by_file: dict[str, tuple[str | None, str | None]] = {}

    def where(self, filename: str) -> tuple[str | None, str | None]:
        """(our short module name, driver package name) of ``filename``; either or both None."""
        known = self._by_file.get(filename)
        if known is None:
            known = self._by_file[filename] = (self._ours(filename), self._driver(filename))
        return known

    def _ours(self, filename: str) -> str | None:
        if filename.startswith("<"):
            return None
        path = os.path.realpath(filename)
        for package, directory in self.ours.items():
            if path.startswith(directory + os.sep):
                relative = os.path.splitext(os.path.relpath(path, directory))[0].split(os.sep)
                if relative[-1] == "__init__":
                    relative.pop()
                if package == "peewee_async":
                    return ".".join(relative) or package
                return ".".join([package, *relative])
        return None

    def _driver(self, filename: str) -> str | None:
        if filename.startswith("<"):
            return None
        path = os.path.realpath(filename)
        for package, directory in self.drivers.items():
            if path.startswith(directory + os.sep):
                return package
        return None


def _function_name(frame: types.FrameType) -> str:
    code = frame.f_code
    module = frame.f_globals.get("__name__", "?")
    return f"{module}.{getattr(code, 'co_qualname', code.co_name)}"


# -- fresh calls and resumptions -----------------------------------------


def started_before(frame: types.FrameType) -> bool:
    """Whether a ``'call'`` event for ``frame`` resumes a generator or coroutine already started.

    Python 3.11+: the event stands at a ``RESUME`` instruction whose argument
    is 0 at the start of the function, and 1-3 after a yield/yield from/await
    (3.13 adds flags above the two low bits). Python 3.10 and earlier: a fresh
    frame has ``f_lasti == -1``.
    """
    code = frame.f_code
    if not code.co_flags & _GENERATOR_FLAGS:
        return False
    lasti = frame.f_lasti
    if lasti < 0:
        return False
    if _RESUME is None:
        return True
    raw = code.co_code
    if lasti + 1 < len(raw) and raw[lasti] == _RESUME:
        return raw[lasti + 1] & 3 != 0
    return True  # not at a RESUME: not the start of the function


class FreshCalls:
    """Tells fresh calls from resumptions: by frame identity, and by :func:`started_before`."""

    def __init__(self) -> None:
        self._seen: set[int] = set()
        self._alive: list[types.FrameType] = []  # keeps ids from being reused during the trace
        self.resumptions = 0

    def is_fresh(self, frame: types.FrameType) -> bool:
        key = id(frame)
        if key in self._seen or started_before(frame):
            self.resumptions += 1
            return False
        self._seen.add(key)
        self._alive.append(frame)
        return True


def check_resume_rule() -> str:
    """Check :func:`started_before` and the frame-identity rule on a coroutine chain that suspends.

    ``outer`` awaits ``middle`` twice; ``middle`` awaits ``inner``, which
    suspends twice (``asyncio.sleep(0)``): 5 fresh calls (outer, middle, inner,
    middle, inner), and 4 suspensions of the 3 frames, 12 resumptions.
    """
    names = ("_probe_outer", "_probe_middle", "_probe_inner")
    by_rule: list[tuple[str, bool]] = []
    seen: set[int] = set()
    alive: list[types.FrameType] = []
    disagreements: list[str] = []

    def hook(frame: types.FrameType, event: str, arg: Any) -> None:
        if event != "call" or frame.f_code.co_name not in names:
            return
        resumed = started_before(frame)
        known = id(frame) in seen
        if resumed != known:
            disagreements.append(f"{frame.f_code.co_name}: f_lasti rule {resumed}, identity rule {known}")
        seen.add(id(frame))
        alive.append(frame)
        by_rule.append((frame.f_code.co_name, resumed))

    async def main() -> None:
        sys.setprofile(hook)
        try:
            await _probe_outer()
        finally:
            sys.setprofile(None)

    asyncio.run(main())
    fresh = [name for name, resumed in by_rule if not resumed]
    expected = ["_probe_outer", "_probe_middle", "_probe_inner", "_probe_middle", "_probe_inner"]
    resumed = sum(1 for _, was in by_rule if was)
    if disagreements or fresh != expected or resumed != 12:
        raise SystemExit(
            "The resume rule fails on this Python: "
            f"fresh calls {fresh} (expected {expected}), {resumed} resumptions (expected 12); "
            + "; ".join(disagreements)
        )
    rule = "RESUME oparg" if _RESUME is not None else "f_lasti == -1"
    return f"resume rule checked ({rule}, Python {sys.version.split()[0]})"


async def _probe_inner() -> None:
    await asyncio.sleep(0)
    await asyncio.sleep(0)


async def _probe_middle() -> None:
    await _probe_inner()


async def _probe_outer() -> None:
    await _probe_middle()
    await _probe_middle()


# -- the tracer ----------------------------------------------------------


@dataclass
class Walk:
    """What one traced statement did."""

    modules: list[str] = field(default_factory=list)
    calls: list[str] = field(default_factory=list)  # every fresh call of ours, for --verbose
    first_driver_call: str | None = None
    driver_call: str | None = None
    driver_stack: list[str] = field(default_factory=list)  # our frames at the driver call, innermost first
    resumptions: int = 0

    @property
    def distinct(self) -> int:
        return len(set(self.modules))

    @property
    def calls_back(self) -> int:
        return sum(1 for index, module in enumerate(self.modules) if module in self.modules[:index])


def _carries_sql(frame: types.FrameType) -> bool:
    """Whether an argument of the call at ``frame`` is SQL naming the walk's table."""
    code = frame.f_code
    count = code.co_argcount + code.co_kwonlyargcount + bool(code.co_flags & inspect.CO_VARARGS)
    values = frame.f_locals
    for name in code.co_varnames[:count]:
        value = values.get(name)
        items = value if isinstance(value, tuple | list) else (value,)
        for item in items:
            if isinstance(item, str) and TABLE in item:
                return True
            if isinstance(item, bytes | bytearray) and TABLE.encode() in item:
                return True
    return False


class Tracer:
    """A ``sys.setprofile`` hook recording the walk of the task that installs it."""

    def __init__(self, places: Places) -> None:
        self.places = places
        self.walk = Walk()
        self.fresh = FreshCalls()
        self.task: asyncio.Task[Any] | None = None

    def hook(self, frame: types.FrameType, event: str, arg: Any) -> None:
        if event != "call":
            return
        ours, driver = self.places.where(frame.f_code.co_filename)
        if ours is None and driver is None:
            return
        if asyncio.current_task() is not self.task:
            return  # event-loop internals: callbacks that run outside the task
        if not self.fresh.is_fresh(frame):
            return
        walk = self.walk
        if ours is not None:
            walk.calls.append(f"{ours}: {getattr(frame.f_code, 'co_qualname', frame.f_code.co_name)}")
            if not walk.modules or walk.modules[-1] != ours:
                walk.modules.append(ours)
            return
        if walk.first_driver_call is None:
            walk.first_driver_call = _function_name(frame)
        if walk.driver_call is None and _carries_sql(frame):
            walk.driver_call = _function_name(frame)
            walk.driver_stack = self._our_frames(frame.f_back)

    def _our_frames(self, frame: types.FrameType | None) -> list[str]:
        found = []
        while frame is not None:
            ours, _ = self.places.where(frame.f_code.co_filename)
            if ours is not None:
                found.append(f"{ours}: {getattr(frame.f_code, 'co_qualname', frame.f_code.co_name)}")
            frame = frame.f_back
        return found

    async def trace(self, statement: Callable[[], Awaitable[Any]]) -> Walk:
        self.task = asyncio.current_task()
        sys.setprofile(self.hook)
        try:
            await statement()
        finally:
            sys.setprofile(None)
        self.walk.resumptions = self.fresh.resumptions
        return self.walk


# -- the database and the statements -------------------------------------


def settings(server: str) -> dict[str, Any]:
    """Connection settings: the local defaults, overridden by ``POSTGRES_HOST`` etc. (as the tests)."""
    found = dict(DEFAULTS[server])
    for key, suffix in ENV_KEYS.items():
        value = os.environ.get(f"{server.upper()}_{suffix}")
        if value is not None:
            found[key] = int(value) if key == "port" else value
    return found


def make_database(backend: str, workdir: str) -> Any:
    if backend == "sqlite":
        return peewee_async.SqliteDatabase(os.path.join(workdir, "walk.db"))
    params = settings(backend)
    name = params.pop("database")
    if not params.get("password"):
        params.pop("password", None)
    if backend == "postgres":
        return peewee_async.PooledPostgresqlDatabase(name, **params)
    return peewee_async.PooledMySQLDatabase(name, **params)


def make_model(database: Any) -> type[peewee.Model]:
    class User(peewee.Model):
        name = peewee.CharField()

        class Meta:
            table_name = TABLE

    User.bind(database)
    return User


def statements(objects: Any, user: Any) -> list[tuple[str, Callable[[], Awaitable[Any]]]]:
    async def execute_select() -> Any:
        return await objects.execute(user.select().where(user.name == "x"))

    async def get_by_name() -> Any:
        return await objects.get(user, name="x")

    return [("objects.execute(select)", execute_select), ("objects.get(User, name=...)", get_by_name)]


async def run(objects: Any, user: Any, places: Places) -> list[tuple[str, Walk]]:
    walks = []
    try:
        for label, statement in statements(objects, user):
            for _ in range(WARM_RUNS):
                await statement()
            walks.append((label, await Tracer(places).trace(statement)))
    finally:
        await objects.close()
    return walks


# -- the report ----------------------------------------------------------


def report(label: str, walk: Walk, verbose: bool) -> list[str]:
    at_driver = "no driver call found"
    if walk.driver_call is not None:
        at_driver = f"{len(walk.driver_stack)} frames of ours at the driver call"
    lines = [
        f"{label}: {' > '.join(walk.modules)} "
        f"({walk.distinct} modules, {walk.calls_back} calls back), {at_driver}",
    ]
    driver = f"    driver call: {walk.driver_call or '-'}"
    if walk.first_driver_call != walk.driver_call:
        driver += f" (first driver call: {walk.first_driver_call or '-'})"
    lines.append(driver)
    if verbose:
        lines.append(f"    {len(walk.calls)} fresh calls of ours ({walk.resumptions} resumptions ignored):")
        lines.extend(f"      {call}" for call in walk.calls)
        lines.append("    our frames at the driver call, outermost first:")
        lines.extend(f"      {call}" for call in reversed(walk.driver_stack))
    return lines


def main(argv: Sequence[str] | None = None) -> None:
    summary = (__doc__ or "").split("\n")[0]
    parser = argparse.ArgumentParser(prog="python -m benchmarks.walk", description=summary)
    parser.add_argument("--backend", choices=("postgres", "mysql", "sqlite"), default="postgres")
    parser.add_argument("-v", "--verbose", action="store_true", help="list every call and the driver stack")
    args = parser.parse_args(argv)

    rule = check_resume_rule()
    places = Places()
    with tempfile.TemporaryDirectory(prefix="peewee_async_walk_") as workdir:
        database = make_database(args.backend, workdir)
        user = make_model(database)
        with database.connection_context():
            user.drop_table(safe=True)
            user.create_table()
            user.create(name="x")
        try:
            walks = asyncio.run(run(peewee_async.Manager(database), user, places))
        finally:
            with database.connection_context():
                user.drop_table(safe=True)

    print(
        f"peewee_async from {places.ours['peewee_async']}, {type(database).__name__} "
        f"({args.backend}), warm after {WARM_RUNS} runs; {rule}"
    )
    for label, walk in walks:
        print("\n".join(report(label, walk, args.verbose)))


if __name__ == "__main__":
    main()
