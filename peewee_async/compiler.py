"""Where a peewee query becomes SQL and parameters: one function, and the cache of compiled statements.

Every path that runs a query (``execute()``, the Manager's shortcuts,
``iterate()``) compiles it here, with the database's own SQL context, so
peewee writes exactly the SQL it would write for sync code.

Compiling costs peewee more than the round trip of a small query, and an
application runs the same few query shapes over and over with new values.
So a select, update or delete is looked up first by its structural key
(:mod:`.query_keys`): a query whose shape was compiled before gets that SQL
back with its own values bound, converted as peewee converts them. A new
shape is compiled once by peewee itself, with numbered placeholders in the
places of its values (:class:`Shape`), in the database's
:class:`StatementCache`. A query the key cannot describe exactly is compiled
by peewee every time.

With ``PEEWEE_ASYNC_VERIFY=1`` in the environment (or :data:`VERIFY` set),
every statement served from the cache is also compiled by peewee and the two
compared (SQL and parameters); rows built by our own row builders are
compared with those of peewee's cursor wrappers too (:mod:`.execution`). A
difference raises :class:`VerificationError`. The test suite runs once in
this mode in CI.
"""

from __future__ import annotations

import datetime
import decimal
import logging
import os
import uuid
from collections import OrderedDict
from collections.abc import Hashable, Sequence
from typing import TYPE_CHECKING, Any

import peewee

from .field_values import unchanged_type
from .query_keys import Slot, Unkeyable, slot_in, walk

if TYPE_CHECKING:
    from .databases.base import AsyncDatabase

logger = logging.getLogger("peewee.async")

#: Compiled statements one database keeps by default.
DEFAULT_STATEMENT_CACHE_SIZE = 1000

#: Compare every cached statement and every fast-built row with peewee's own.
VERIFY = os.environ.get("PEEWEE_ASYNC_VERIFY", "").strip().lower() not in ("", "0", "false", "no")

_Model = peewee.Model
_ForeignKeyField = peewee.ForeignKeyField
# What peewee writes as SQL rather than bind: nodes (model instances too) and classes.
_SQL_VALUES = (peewee.Node, type)
_UNKNOWN = object()


class VerificationError(AssertionError):
    """Verification mode found a statement or a row that differs from peewee's own."""


class Fallback(Exception):
    """A value peewee would not bind as it is (it makes SQL of its own): compile this query by peewee."""


def peewee_compile(database: AsyncDatabase, query: Any) -> tuple[str, list[Any]]:
    """peewee's own SQL and parameters for ``query`` on ``database``, in the driver's parameter style."""
    sql, params = database.get_sql_context().sql(query).query()
    driver = database.driver
    return (driver.driver_sql(sql) if driver.translates_sql else sql), params


def compile_query(database: AsyncDatabase, query: Any) -> tuple[str, list[Any]]:
    """The SQL of ``query`` on ``database`` and its parameters, as peewee's ``Database.execute`` makes them.

    The SQL is in the driver's parameter style. peewee's SQL may depend on the
    server version, which an async database reads when its pool opens: compile
    once a connection was picked.
    """
    found = lookup(database, query)
    if found is not None:
        return found[0], found[1]
    return peewee_compile(database, query)


def lookup(
    database: AsyncDatabase, query: Any, derived: Derived | None = None
) -> tuple[str, list[Any], Shape] | None:
    """SQL, parameters and :class:`Shape` of ``query`` from the cache (compiling its shape once), or ``None``.

    With ``derived``, those of the statement it derives from ``query`` (the
    first row of it, its count...), under a key of its own: the query is walked,
    and the derived statement is built only when its shape is compiled (with
    the query's slots in it), not at every call.

    ``None`` when the query cannot be keyed, when a value must be compiled by
    peewee, or while the server version is unknown.
    """
    if database.server_version is None:
        return None
    try:
        found = walk(query)
    except Unkeyable:
        return None
    cache = database.statement_cache
    key = found.key if derived is None else (derived, found.key)
    shape = cache.get(key, _UNKNOWN)
    if shape is _UNKNOWN:
        # Walked again, noting where each leaf is, to put slots in their places.
        shape = _compile_shape(database, query, walk(query, placing=True, defaults=found.filled), derived)
        cache.put(key, shape)
    else:
        cache.move_to_end(key)  # used now: the last to be pruned
    if shape is None:
        return None
    try:
        params = shape.params(found.leaves)
    except Fallback:
        return None
    if VERIFY:
        checked = query if derived is None else derived.build(query)
        if found.filled:
            # Compiled again, peewee would call the defaults again: give it the ones sent.
            checked = with_defaults(query, found.filled)
        verify_statement(database, checked, shape.sql, params)
    return shape.sql, params, shape


def with_defaults(query: Any, filled: list[tuple[Any, Any, Any]]) -> Any:
    """A copy of the insert ``query`` whose rows name the defaults of ``filled`` (a :class:`Walk`'s)."""
    copy = query.clone()
    rows = query._insert
    if type(rows) is dict:
        copy._insert = {**rows, **{field: value for _, field, value in filled}}
        return copy
    # Rows of dicts name each default; rows of tuples take them after their values, in order.
    made = [dict(row) if type(row) is dict else list(row) for row in rows]
    for index, field, value in filled:
        row = made[index]
        if type(row) is dict:
            row[field] = value
        else:
            row.append(value)
    copy._insert = made
    return copy


class Derived:
    """A statement made of a query (``get()``'s first row, ``count()``...): ``build(query)`` makes it.

    Hashable by identity, it is part of the cache key of the statements it
    makes: each kind of derived statement is one object, made once.
    """

    __slots__ = ("name", "build")

    def __init__(self, name: str, build: Any) -> None:
        self.name = name
        self.build = build

    def __repr__(self) -> str:
        return f"Derived({self.name!r})"


def verify_statement(database: AsyncDatabase, query: Any, sql: str, params: Sequence[Any]) -> None:
    """Raise :class:`VerificationError` unless peewee compiles ``query`` to ``sql`` and ``params``."""
    expected_sql, expected_params = peewee_compile(database, query)
    if sql != expected_sql or not _same_params(params, expected_params):
        raise VerificationError(
            "A cached statement differs from peewee's compile of the same query.\n"
            f"cached: {sql!r} {list(params)!r}\npeewee: {expected_sql!r} {list(expected_params)!r}"
        )


def _same_params(ours: Sequence[Any], theirs: Sequence[Any]) -> bool:
    return len(ours) == len(theirs) and all(map(_same_param, ours, theirs))


def _same_param(ours: Any, theirs: Any) -> bool:
    """Equal values; the value wrappers of a driver (``Json``), equal only to themselves, by their content."""
    if ours == theirs:
        return True
    if type(ours) is not type(theirs) or isinstance(ours, peewee.Node):
        return False
    content = _content(ours)
    return content is not None and content == _content(theirs)


def _content(value: Any) -> Any:
    """What ``value`` holds (its attributes), or ``None`` for a value that holds nothing."""
    if hasattr(value, "__dict__"):
        return vars(value) or None
    if hasattr(value, "adapted"):  # psycopg2's adapters written in C (Binary), with neither
        return [value.adapted]
    names = [name for cls in type(value).__mro__ for name in getattr(cls, "__slots__", ())]
    return [getattr(value, name, None) for name in names] or None


class _Param:
    """A parameter compiled from a slot: which leaf it takes and how peewee would convert it."""

    __slots__ = ("index", "convert", "instance_ok")

    def __init__(self, index: int, convert: Any) -> None:
        self.index = index
        self.convert = convert
        # peewee binds a model instance through a foreign key's converter (its
        # key); anywhere else it writes the instance's primary key as SQL.
        self.instance_ok = convert is not None and isinstance(
            getattr(convert, "__self__", None), _ForeignKeyField
        )


class NumbersContext(peewee.Context):
    """peewee's compile context, writing a LIMIT, and an OFFSET of 0, as numbers rather than parameters.

    The SQL context of every async database class (its ``context_class``):
    sync peewee on the same database writes the same SQL. A driver that binds
    on the server (asyncpg, psycopg 3) prepares a statement it runs often, and
    PostgreSQL then plans it once for all later calls only when a plan for any
    value would cost about the same. It cannot tell that of ``LIMIT $2``
    (peewee's ``get()`` is ``LIMIT 1 OFFSET 0``), so such a statement was
    planned again at every call: a 20-row join took 285 µs where the same
    SQL with ``LIMIT 20`` took 160. Drivers that bind on the client send the
    same text either way. Any other OFFSET stays a parameter: an application
    pages through many, and each would be a statement of its own.

    The statement cache keys a LIMIT that is an ``int`` by its value, and an
    OFFSET of 0 apart from the others (:mod:`.query_keys`), so a cached
    statement holds the number it was compiled with.
    """

    __slots__ = ()

    def as_new(self) -> Any:
        # peewee 3.17 compiles the right side of IN apart, to see if it is empty.
        return type(self)(**self.state.settings)

    def value(self, value: Any, converter: Any = None, add_param: bool = True) -> Any:
        if type(value) is int and add_param:
            last = self._sql[-1] if self._sql else None  # type: ignore[attr-defined]
            if last == " LIMIT " or (last == " OFFSET " and value == 0):
                # As Context.value: an explicit converter, else (unless False) the one in scope.
                convert = converter or (self.state.converter if converter is None else None)
                number = convert(value) if convert else value
                if type(number) is int:
                    return self.literal(str(number))
        return super().value(value, converter, add_param)


class _RecordingContext(NumbersContext):
    """peewee's compile context, noting for each slot the converter peewee would apply to its value."""

    __slots__ = ()

    def value(self, value: Any, converter: Any = None, add_param: bool = True) -> Any:
        if type(value) is not Slot:
            return super().value(value, converter, add_param)
        # Context.value: an explicit converter, else (unless False) the one in scope.
        if converter:
            convert = converter
        elif converter is None:
            convert = self.state.converter or None
        else:
            convert = None
        if self.state.value_literals:
            raise Unkeyable("values written into the SQL text")
        self._values.append(_Param(value.index, convert))  # type: ignore[attr-defined]
        return self.literal(self.state.param or "?") if add_param else self


def _compile_shape(database: AsyncDatabase, query: Any, found: Any, derived: Derived | None) -> Shape | None:
    """Compile the shape of ``query`` (or of what ``derived`` makes of it) with slots for its values.

    ``None`` if it cannot be reused. The derived statement is made while the
    slots are in: it copies the query's attributes, slots included.
    """
    try:
        with slot_in(found):
            statement = query if derived is None else derived.build(query)
            options: dict[str, Any] = database.get_context_options()  # type: ignore[attr-defined]
            context: Any = _RecordingContext(**options)
            sql, values = context.sql(statement).query()
    except Exception as exc:
        logger.debug("Compiling every time a query shape that failed with slots: %r", exc)
        return None
    plan: list[tuple[int, Any, bool]] = []
    constants: list[Any] = []
    for value in values:
        if type(value) is _Param:
            plan.append((value.index, value.convert, value.instance_ok))
        else:
            # Written by peewee itself (e.g. the 0/1 of a NULLS LAST emulation):
            # the same for every query of this key.
            constants.append(value)
            plan.append((-len(constants), None, False))
    driver = database.driver
    if driver.translates_sql:
        sql = driver.driver_sql(sql)
    return Shape(sql, plan, constants, found.holds, _binds_leaves_as_they_are(plan, found.leaves))


#: Types of values peewee binds as they are when no converter applies (never nodes).
_BOUND_AS_THEY_ARE = frozenset((int, str, float, bool, bytes, decimal.Decimal, uuid.UUID))
_BOUND_AS_THEY_ARE |= {datetime.datetime, datetime.date, datetime.time}


def _binds_leaves_as_they_are(plan: list[tuple[int, Any, bool]], leaves: list[Any]) -> bool:
    """Whether the parameters of this shape are its leaves themselves, in order.

    The key holds the type of every leaf, so the types of ``leaves`` are those
    of every query of the shape. Where each leaf is bound once, in order, with
    no converter, or with one that returns a value of its type as it is (an
    ``IntegerField`` and an ``int``: :func:`.field_values.unchanged_type`), the
    parameters are the leaves, and nothing need be converted at each call.
    """
    if [entry[0] for entry in plan] != list(range(len(leaves))):
        return False
    for index, convert, _ in plan:
        kind = type(leaves[index])
        if convert is None:
            if kind not in _BOUND_AS_THEY_ARE:
                return False
        elif unchanged_type(convert) is not kind:
            return False
    return True


class Shape:
    """The SQL of one query shape and how its parameters are made from a query's leaves.

    ``plan`` has, for each parameter, the leaf it takes (or ``-1 - i`` for
    constant ``i``), the converter peewee applies to it, and whether a model
    instance may stand there. ``holds`` keeps alive the objects whose ids are
    in the key. ``rows`` is for :mod:`.execution`: what it learnt about this
    shape's rows.
    """

    __slots__ = ("sql", "plan", "constants", "holds", "rows", "leaves_as_they_are")

    def __init__(
        self,
        sql: str,
        plan: list[tuple[int, Any, bool]],
        constants: list[Any],
        holds: list[Any],
        leaves_as_they_are: bool = False,
    ) -> None:
        self.sql = sql
        self.plan = tuple(plan)
        self.constants = tuple(constants)
        self.holds = holds
        self.rows: Any = None
        #: The parameters are the leaves, in order, as they are (see _binds_leaves_as_they_are).
        self.leaves_as_they_are = leaves_as_they_are

    def params(self, leaves: list[Any]) -> list[Any]:
        """The parameters for ``leaves``; :class:`Fallback` where peewee would write SQL instead."""
        if self.leaves_as_they_are:
            return leaves
        params: list[Any] = []
        append = params.append
        for index, convert, instance_ok in self.plan:
            if index < 0:
                append(self.constants[-1 - index])
                continue
            value = leaves[index]
            if isinstance(value, _Model):
                if not instance_ok:
                    raise Fallback
                try:
                    value = convert(value)
                except (TypeError, ValueError):
                    raise Fallback from None  # peewee then binds the primary key
            elif convert is not None:
                value = convert(value)
            if isinstance(value, _SQL_VALUES):
                raise Fallback
            append(value)
        return params


class StatementCache(OrderedDict[Hashable, Any]):
    """Compiled statements of one database, by key: bounded, the least recently used pruned first.

    An ``OrderedDict``, so that the look-up every statement makes (``get``,
    then ``move_to_end`` to mark it used) runs in C; only keeping a new
    statement is ours.

    :param max_size: most statements kept; 0 keeps none.
    """

    def __init__(self, owner: str, max_size: int = DEFAULT_STATEMENT_CACHE_SIZE) -> None:
        super().__init__()
        if max_size < 0:
            raise ValueError(f"statement_cache_size must be 0 or more, got {max_size!r}")
        self.max_size = max_size
        self._owner = owner
        self._pruned = 0

    def put(self, key: Hashable, entry: Any) -> None:
        """Keep ``entry`` for ``key``, pruning the least recently used entry when full."""
        if self.max_size == 0:
            return
        self[key] = entry
        self.move_to_end(key)
        if len(self) > self.max_size:
            self.popitem(last=False)
            # One line for each cache-full of pruned statements, not one per statement.
            if self._pruned % self.max_size == 0:
                logger.info(
                    "Statement cache of %s is full (statement_cache_size=%d): pruning the least "
                    "recently used statements. Raise statement_cache_size if this repeats.",
                    self._owner,
                    self.max_size,
                )
            self._pruned += 1
