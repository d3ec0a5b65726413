"""Prepared queries: a function building a query of its arguments, read once for each kind of arguments.

The statement cache (:mod:`.compiler`) spares a repeated query peewee's
compile, not its building: each call still builds the query with peewee's
builder methods, each of which copies the query, and walks it for its key.
On a fast server, for a join or a short select, that is as long as the
statement itself. A :class:`PreparedQuery` builds the query only when it
meets a new kind of arguments; every other call binds its arguments into the
SQL compiled then and builds the rows, as the cache's own shapes do.

How the function is read, once for each tuple of argument types:

1. It is called with the call's arguments; the query it returns is walked
   (:mod:`.query_keys`) and its statement compiled, as any query is.
2. It is called again with a :class:`Placeholder` for each argument, and
   that query is walked too. Where a placeholder is a leaf of the walk (a
   value peewee binds as one parameter), that parameter is the argument's.
3. The two walks must agree: the same key but for the placeholders' types,
   each placeholder's leaf holding the very argument object in the first
   walk, every other leaf an equal value. An argument that decides the SQL
   (a list for ``IN``, ``None`` for ``IS NULL``, a ``LIMIT``, a Python
   ``if``, text made of it) breaks that agreement, or raises on the
   placeholder: the function is then not prepared for those types, and each
   call builds and runs its query as :meth:`Manager.execute
   <peewee_async.Manager.execute>` would. Never a guess: a call is either
   bound into SQL proven the same, or built.

A value the function computes itself (the time now, a setting) is read when
it is prepared: pass it as an argument.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Coroutine, Sequence
from typing import TYPE_CHECKING, Any, Generic, ParamSpec

import peewee

from . import compiler, operations, shapes
from .compiler import Derived, Fallback
from .cursor import FetchedCursor
from .execution import built_rows, database_of, execute, read_intent
from .intent import Intent
from .query_keys import Unkeyable, Walk, walk

if TYPE_CHECKING:
    from .databases.base import AsyncDatabase

P = ParamSpec("P")


class Placeholder:
    """Stands for one argument while the function of a prepared query is read the second time.

    It may only be stored in the query, where peewee binds a value. Any use
    of its own (a truth test, a comparison, text, arithmetic, iteration)
    raises, and the function is not prepared for those argument types.
    """

    __slots__ = ("name",)

    def __init__(self, name: int | str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return f"<argument {self.name!r} of a prepared query>"

    def _refuse(self, *args: Any) -> Any:
        raise _Used(f"argument {self.name!r} is used to build the query, not only bound in it")

    __bool__ = __str__ = __format__ = __len__ = __iter__ = __contains__ = __getitem__ = _refuse
    __eq__ = __ne__ = __lt__ = __le__ = __gt__ = __ge__ = _refuse
    __hash__ = object.__hash__


class _Used(Exception):
    """A placeholder was used other than as a value to bind."""


class _Plan:
    """The statement of one prepared query for one tuple of argument types, and how to bind it."""

    __slots__ = ("cache", "stamps", "shape", "leaves", "slots", "query", "select", "intent")

    def __init__(
        self,
        cache: Any,
        stamps: list[tuple[Any, tuple[Any, ...]]],
        shape: compiler.Shape,
        leaves: list[Any],
        slots: list[tuple[int, int | str]],
        query: Any,
    ) -> None:
        self.cache = cache  # the database's statement cache: a new one (init()) makes plans anew
        self.stamps = stamps  # (meta, stamp) of each model in the query
        self.shape = shape
        self.leaves = leaves  # the first walk's leaves: the function's own values
        self.slots = slots  # (leaf index, argument position or name)
        self.query = query  # the query built first: the rows' row type and wrapper
        self.select = isinstance(query, peewee.SelectBase)  # else an update or a delete
        # Where a select runs when the database has replicas: a locking one on the primary.
        self.intent = read_intent(query) if self.select else Intent.WRITE

    def fresh(self, database: AsyncDatabase) -> bool:
        return self.cache is database.statement_cache and all(
            shapes.stamped(meta, stamp) for meta, stamp in self.stamps
        )


_UNREAD = object()  # not read yet for these argument types (or not while the server was unknown)


class PreparedQuery(Generic[P]):
    """A query built by ``build(*args, **kwargs)``, run with other arguments without building it again.

    Made by :meth:`Manager.prepare <peewee_async.Manager.prepare>`; each
    method takes the function's arguments and returns what the Manager's
    method of the same name returns for the query the function builds.
    """

    def __init__(self, database: Callable[[], AsyncDatabase], build: Callable[P, Any]) -> None:
        if not callable(build):
            raise TypeError(
                f"prepare() takes a function building a query of its arguments, got {build!r}: "
                "e.g. `objects.prepare(lambda user_id: Tweet.select().where(Tweet.user == user_id))`."
            )
        if inspect.iscoroutinefunction(build):
            raise TypeError(
                f"prepare() takes a plain function returning the query, got the async function {build!r}: "
                "building a query awaits nothing, so define it with `def` (or a lambda)."
            )
        self._database = database
        self.build = build
        self._plans: dict[tuple[Derived | None, tuple[Any, ...]], Any] = {}

    def __repr__(self) -> str:
        return f"<PreparedQuery of {getattr(self.build, '__qualname__', self.build)!r}>"

    def query(self, *args: P.args, **kwargs: P.kwargs) -> Any:
        """The peewee query the function builds of these arguments."""
        query = self.build(*args, **kwargs)
        if inspect.iscoroutine(query):
            query.close()  # never awaited: closed now rather than warned of later
        if not isinstance(query, peewee.BaseQuery):
            raise TypeError(
                f"The function of {self!r} returned {query!r}, not a peewee query: it must return "
                "the query itself (Model.select()..., Model.update()..., Model.delete()...), unexecuted."
            )
        return query

    # -- the Manager's methods ------------------------------------------------

    async def execute(self, *args: P.args, **kwargs: P.kwargs) -> Any:
        """:meth:`Manager.execute <peewee_async.Manager.execute>` of the query: its rows, or a row count."""
        db = self._database()
        ran = self._running(db, None, args, kwargs)
        if ran is not None:
            plan, running = ran
            cursor = await running
            if plan.select:
                return built_rows(plan.query, cursor, plan.shape)
            return plan.query.handle_result(db, cursor)
        query = self.query(*args, **kwargs)
        return await execute(database_of(query, db), query)

    async def get(self, *args: P.args, **kwargs: P.kwargs) -> Any:
        """:meth:`Manager.get <peewee_async.Manager.get>` of the query: its first row, or ``DoesNotExist``."""
        db = self._database()
        ran = self._running(db, operations.FIRST_ROW, args, kwargs)
        if ran is not None:
            plan, running = ran
            rows = built_rows(plan.query, await running, plan.shape)
            if rows:
                return rows[0]
            query = self.query(*args, **kwargs)
            raise operations._does_not_exist(operations.select_for_get(query))
        return await operations.get(db, self.query(*args, **kwargs))

    async def get_or_none(self, *args: P.args, **kwargs: P.kwargs) -> Any:
        """Like :meth:`get`, but ``None`` when no row matches."""
        try:
            return await self.get(*args, **kwargs)
        except peewee.DoesNotExist:
            return None

    async def count(self, *args: P.args, **kwargs: P.kwargs) -> int:
        """:meth:`Manager.count <peewee_async.Manager.count>` of the query."""
        db = self._database()
        ran = self._running(db, operations.COUNTS[False], args, kwargs)
        if ran is not None:
            return operations.counted((await ran[1]).rows)
        return await operations.count(db, self.query(*args, **kwargs))

    async def exists(self, *args: P.args, **kwargs: P.kwargs) -> bool:
        """:meth:`Manager.exists <peewee_async.Manager.exists>` of the query."""
        db = self._database()
        ran = self._running(db, operations.EXISTS, args, kwargs)
        if ran is not None:
            return operations.existing((await ran[1]).rows)
        return await operations.exists(db, self.query(*args, **kwargs))

    async def scalar(self, *args: P.args, **kwargs: P.kwargs) -> Any:
        """:meth:`Manager.scalar <peewee_async.Manager.scalar>` of the query: its first value, or ``None``."""
        db = self._database()
        ran = self._running(db, operations.SCALAR, args, kwargs)
        if ran is not None:
            plan, running = ran
            rows = built_rows(plan.query, await running, plan.shape, rows_of=operations._tuples)
            return rows[0][0] if rows else None
        return await operations.scalar(db, self.query(*args, **kwargs))

    def _running(
        self, db: AsyncDatabase, derived: Derived | None, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> tuple[_Plan, Coroutine[Any, Any, FetchedCursor]] | None:
        """The plan and the run of its statement with these arguments, to await; ``None``: build the query.

        Not a coroutine itself: one await less between the caller and the driver.
        """
        plan = self._plan(db, derived, args, kwargs)
        if plan is None:
            return None
        found = self._bound(db, plan, derived, args, kwargs)
        if found is None:
            return None
        intent = Intent.WRITE if not plan.select else Intent.READ if db._replicas is None else plan.intent
        return plan, db._execute(intent, *found)

    # -- plans -------------------------------------------------------------------

    def _plan(
        self, db: AsyncDatabase, derived: Derived | None, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> _Plan | None:
        """The plan for these arguments' types, read now if need be; ``None``: build each call."""
        types: tuple[Any, ...] = tuple(map(type, args))
        if kwargs:
            types += tuple((name, type(value)) for name, value in kwargs.items())
        key = (derived, types)
        plan = self._plans.get(key, _UNREAD)
        if plan is None:
            return None
        if isinstance(plan, _Plan) and plan.fresh(db):
            return plan
        read = self._read(db, derived, args, kwargs)
        if read is _UNREAD:
            return None
        self._plans[key] = read
        return read  # type: ignore[no-any-return]

    def _read(
        self, db: AsyncDatabase, derived: Derived | None, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        """A new :class:`_Plan`; ``None`` if the function cannot be prepared for these types;
        ``_UNREAD`` while the server version, which peewee's SQL may depend on, is unknown.
        """
        query = self.query(*args, **kwargs)
        database_of(query, db)  # the errors of a query the Manager cannot run
        if not _preparable(query, derived):
            return None
        if db.server_version is None:
            return _UNREAD
        try:
            first = walk(query)
        except Unkeyable:
            return None
        found = compiler.lookup(db, query, derived)
        if found is None:
            return None
        placeholders = [Placeholder(index) for index in range(len(args))]
        named = {name: Placeholder(name) for name in kwargs}
        try:
            marked = walk(self.build(*placeholders, **named))  # type: ignore[arg-type]
        except Exception:  # a placeholder used, or the function failing on one
            return None
        slots = _slots(first, marked, args, kwargs)
        if slots is None:
            return None
        metas: set[Any] = {held._meta for held in first.holds if isinstance(held, peewee.ModelBase)}  # type: ignore[attr-defined]
        stamps = [(meta, shapes.stamp(meta)) for meta in metas]
        return _Plan(db.statement_cache, stamps, found[2], list(first.leaves), slots, query)

    def _bound(
        self,
        db: AsyncDatabase,
        plan: _Plan,
        derived: Derived | None,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> tuple[str, list[Any]] | None:
        """The plan's SQL and the parameters of these arguments; ``None`` where peewee must compile."""
        leaves = plan.leaves.copy()
        for index, name in plan.slots:
            leaves[index] = args[name] if type(name) is int else kwargs[name]  # type: ignore[index]
        shape = plan.shape
        try:
            params = shape.params(leaves)
        except Fallback:
            return None
        if compiler.VERIFY:
            query = self.query(*args, **kwargs)
            checked = query if derived is None else derived.build(query)
            compiler.verify_statement(db, checked, shape.sql, params)
        return shape.sql, params


def _preparable(query: Any, derived: Derived | None) -> bool:
    """Whether a statement of this kind is prepared: selects, and updates and deletes without RETURNING."""
    if getattr(query, "_load_tree", None):
        return False  # with_related() runs more queries: the generic path says what to do
    if derived is operations.FIRST_ROW:
        return type(query) is peewee.ModelSelect
    if isinstance(query, peewee.SelectBase):
        return True
    return (
        derived is None
        and isinstance(query, peewee.Update | peewee.Delete)
        and not getattr(query, "_returning", None)
    )


def _slots(
    first: Walk, marked: Walk, args: Sequence[Any], kwargs: dict[str, Any]
) -> list[tuple[int, int | str]] | None:
    """Where each argument is bound among the leaves of ``first``, if ``marked`` proves it; else ``None``.

    ``first`` is the walk of the query built of the arguments, ``marked`` of
    the one built of placeholders.
    """
    if len(first.leaves) != len(marked.leaves):
        return None
    slots: list[tuple[int, int | str]] = []
    bound_types = []
    for index, (value, mark) in enumerate(zip(first.leaves, marked.leaves, strict=True)):
        if type(mark) is Placeholder:
            name = mark.name
            if value is not (args[name] if type(name) is int else kwargs[name]):  # type: ignore[index]
                return None
            slots.append((index, name))
            bound_types.append(type(value))
        elif not _same(value, mark):
            return None  # a value the function computes, not the same twice
    # The walk writes each leaf's type in the key: the placeholders' stand for the arguments'.
    if sum(1 for entry in marked.key if entry is Placeholder) != len(bound_types):
        return None
    types = iter(bound_types)
    expected = tuple(next(types) if entry is Placeholder else entry for entry in marked.key)
    return slots if expected == first.key else None


def _same(value: Any, other: Any) -> bool:
    if value is other:
        return True
    try:
        return type(value) is type(other) and bool(value == other)
    except Exception:  # a value whose == cannot answer is not known to be the same
        return False
