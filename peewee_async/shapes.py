"""Compiled SQL of fixed-shape queries, and model rows built without peewee's generic wrappers.

Compiling a one-row select costs peewee more than the database round trip,
and so does turning rows into model instances through its cursor wrappers.
The Manager's shortcuts (get by primary key or by field values, create,
update, delete, count of a model) always produce the same SQL for one model
and one set of field names, with only the values changing. So we compile each
such *shape* once, through peewee itself, with placeholder values, and later
bind only the values, converted with each field's ``db_value`` exactly as
peewee converts them.

A compiled shape is kept in the database's statement cache
(:class:`~peewee_async.compiler.StatementCache`; its ``init()`` empties it)
and stamped with the model's state that the SQL depends on (its database,
table name, schema, fields, primary key): a change to any of them compiles
the shape anew. Nothing is compiled before the database knows its server
version (read when its pool opens), since peewee's SQL may depend on it.
Anything these paths do not cover, or that peewee would compile differently
(``None`` compared with ``IS NULL``, a value that is SQL, overridden model or
field methods, ...), goes the generic way.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine, Sequence
from typing import TYPE_CHECKING, Any

import peewee

from .compiler import compile_query
from .field_values import unchanged_type

if TYPE_CHECKING:
    from .cursor import FetchedCursor
    from .databases.base import AsyncDatabase
    from .intent import Intent

_Node = peewee.Node
_Field = peewee.Field
_ForeignKeyField = peewee.ForeignKeyField
_MULTI = peewee.multi_types
# peewee's stubs leave these out or type them too narrowly for the identity tests below.
_is_model: Any = peewee.is_model  # type: ignore[attr-defined]
_ModelSelect: Any = peewee.ModelSelect
_column_eq: Any = peewee.ColumnBase.__eq__
_PLAIN_ACCESSORS = (peewee.FieldAccessor, peewee.ForeignKeyAccessor)
# Values peewee may turn into SQL rather than a parameter: nodes (model
# instances too) and model classes. Any class is treated so, to keep the test cheap.
_SQL_VALUES = (_Node, type)


class Fallback(Exception):
    """A value that peewee would compile into SQL other than a parameter: take the generic path."""


class _Slot:
    """Placeholder for the value number ``index`` while a shape is compiled."""

    __slots__ = ("index",)

    def __init__(self, index: int) -> None:
        self.index = index


def _slots(count: int) -> list[peewee.Value]:
    # converter=False: peewee appends the placeholder itself to the parameters,
    # where a plain value would have gone through the field's db_value.
    return [peewee.Value(_Slot(i), converter=False, unpack=False) for i in range(count)]


class Statement:
    """The SQL of one shape and how its parameters are made from the values.

    ``plan`` lists, for each parameter, the index of the value it takes, or
    ``-1 - i`` for the constant number ``i`` (e.g. a ``LIMIT``).
    """

    __slots__ = ("sql", "converters", "plan", "constants", "result", "_tail", "_unchanged")

    def __init__(
        self,
        sql: str,
        converters: Sequence[Callable[[Any], Any] | None],
        plan: Sequence[int],
        constants: Sequence[Any],
        result: Any = None,
    ) -> None:
        self.sql = sql
        self.converters = tuple(converters)
        # For each value, the type its converter returns as it is (an int for an
        # IntegerField's db_value): a value of that very type is its parameter.
        self._unchanged = tuple(unchanged_type(convert) for convert in self.converters)
        self.plan = tuple(plan)
        self.constants = tuple(constants)
        self.result = result  # what the caller needs to read the result (a field, a builder)
        # The usual plan: every value once, in order, then the constants in
        # order (e.g. ``WHERE id = %s LIMIT %s OFFSET %s``): the parameters are
        # then the converted values followed by this tuple, with no reordering.
        count = len(self.converters)
        in_order = self.plan == (*range(count), *range(-1, -1 - len(self.constants), -1))
        self._tail: tuple[Any, ...] | None = self.constants if in_order else None

    def run(
        self, database: AsyncDatabase, intent: Intent, values: Sequence[Any]
    ) -> Coroutine[Any, Any, FetchedCursor] | None:
        """The run of this statement with ``values``, to await; ``None`` when a value needs the generic path.

        Not a coroutine itself: one await less between the caller and the driver.
        """
        try:
            params = self.params(values)
        except Fallback:
            return None
        return database._execute(intent, self.sql, params)

    def params(self, values: Sequence[Any]) -> list[Any]:
        """The parameters for ``values``; :class:`Fallback` if peewee would not bind one as is."""
        converted = []
        # zip() without strict=: the keyword alone costs more than the loop.
        for convert, unchanged, value in zip(self.converters, self._unchanged, values):  # noqa: B905
            if type(value) is unchanged:  # never a node: what the converter would return
                converted.append(value)
                continue
            # peewee writes a node (or a model class) as SQL, before or after conversion.
            if isinstance(value, _SQL_VALUES):
                raise Fallback
            if convert is not None:
                value = convert(value)
                if isinstance(value, _SQL_VALUES):
                    raise Fallback
            converted.append(value)
        tail = self._tail
        if tail is not None:
            converted += tail
            return converted
        constants = self.constants
        return [converted[i] if i >= 0 else constants[-1 - i] for i in self.plan]


def compile_statement(
    database: AsyncDatabase,
    query: Any,
    converters: Sequence[Callable[[Any], Any] | None],
    result: Any = None,
) -> Statement | None:
    """Compile ``query``, built with :func:`_slots` placeholders, into a :class:`Statement`.

    ``None`` when the placeholders did not all come out as parameters, once each.
    """
    sql, params = compile_query(database, query)
    plan: list[int] = []
    constants: list[Any] = []
    for param in params:
        if isinstance(param, _Slot):
            plan.append(param.index)
        else:
            constants.append(param)
            plan.append(-len(constants))
    if sorted(i for i in plan if i >= 0) != list(range(len(converters))):
        return None
    return Statement(sql, converters, plan, constants, result)


# -- the cache ---------------------------------------------------------------


def stamp(meta: Any) -> tuple[Any, ...]:
    """What a model's compiled SQL depends on; any change makes a new stamp."""
    return (meta.database, meta.table_name, meta._schema, meta.sorted_fields, meta.primary_key)


def stamped(meta: Any, taken: tuple[Any, ...]) -> bool:
    """Whether the model of ``meta`` is as it was when its :func:`stamp` ``taken`` was taken.

    Compared by identity: fields compare with == into SQL expressions.
    """
    return (
        taken[0] is meta.database
        and taken[1] is meta.table_name
        and taken[2] is meta._schema
        and taken[3] is meta.sorted_fields
        and taken[4] is meta.primary_key
    )


def cached(database: AsyncDatabase, model: Any, key: Any, build: Callable[[], Any]) -> Any:
    """The value ``build()`` made for ``(model, key)`` on ``database``, while the model is unchanged.

    ``build`` may return ``None`` (the shape cannot be cached); that answer is
    cached too, so an unsupported shape costs one look-up, not a compile.
    ``None`` too while the server version is unknown: the caller then takes
    the generic path, which opens the pool first.
    """
    cache = database.statement_cache
    entry = cache.get((model, key))
    meta = model._meta
    if entry is not None:
        cache.move_to_end((model, key))  # used now: the last to be pruned
        if stamped(meta, entry[0]):
            return entry[1]
    if database.server_version is None:
        return None
    value = build()
    cache.put((model, key), (stamp(meta), value))
    return value


# -- which models and fields are plain ----------------------------------------


def _overrides(cls: type, base: type, name: str) -> bool:
    return getattr(cls, name) is not getattr(base, name)


def class_attribute(model: Any, name: str) -> Any:
    """What the first class in ``model``'s MRO to define ``name`` holds (a descriptor itself), or ``None``."""
    return next((klass.__dict__[name] for klass in model.__mro__ if name in klass.__dict__), None)


def plain_model(model: Any) -> bool:
    """Whether instances of ``model`` are made and filled only by peewee's own code.

    Then a row can be stored straight into ``__data__``: that is what
    ``Model.__init__`` and the fields' accessors would do.
    """
    if not (_is_model(model) and issubclass(model, peewee.Model)):
        return False
    if type(model).__call__ is not type.__call__ or model.__new__ is not object.__new__:
        return False
    if any(_overrides(model, peewee.Model, name) for name in ("__init__", "__setattr__")):
        return False
    for name in model._meta.fields:
        if type(class_attribute(model, name)) not in _PLAIN_ACCESSORS:
            return False
    return True


def _model_methods_plain(model: Any, *names: str) -> bool:
    """Whether ``model`` keeps peewee's own classmethods/methods ``names``."""
    for name in names:
        mine = getattr(model, name)
        theirs = getattr(peewee.Model, name)
        if getattr(mine, "__func__", mine) is not getattr(theirs, "__func__", theirs):
            return False
    return True


def _plain_field(model: Any, field: Any) -> bool:
    """A field of ``model`` that compares, converts and writes its values as ``peewee.Field`` does."""
    cls = type(field)
    return (
        isinstance(field, _Field)
        and not isinstance(field, peewee.FieldAlias)
        and model._meta.fields.get(field.name) is field
        and field._coerce
        and cls.__eq__ is _column_eq
        and cls.to_value is _Field.to_value
    )


# -- model rows ----------------------------------------------------------------


def row_builder(model: Any, fields: Sequence[Any]) -> Callable[[Sequence[Sequence[Any]]], list[Any]] | None:
    """A function making instances of ``model`` from rows of ``fields``, or ``None``.

    Gives exactly what peewee's ``ModelObjectCursorWrapper`` gives: each value
    through its field's ``python_value``, ``__data__`` in column order, no
    dirty fields, no related objects cached.
    """
    if not all(isinstance(field, _Field) for field in fields):
        return None  # an expression, a function, a window: peewee's wrapper names those
    names = [field.name for field in fields]
    if not names or len(set(names)) != len(names) or not plain_model(model):
        return None
    # peewee's cursor wrappers read some other names (with quotes, dots) into
    # other attributes: what they do with those is theirs to do.
    if not all(name.isidentifier() for name in names):
        return None
    for field in fields:
        if not (isinstance(field, _Field) and not isinstance(field, peewee.FieldAlias)):
            return None
        if model._meta.fields.get(field.name) is not field or not field._coerce:
            return None
    return _compile_builder(model, fields)


def conversion(value: str, index: int, converter: Any, namespace: dict[str, Any]) -> str:
    """The line of generated code converting local ``value`` with ``converter`` (a ``python_value``).

    peewee's ``Field.python_value`` is "None stays None, else adapt()": for a
    field that keeps it, adapt() is called directly, and not at all for a value
    of the one type that field class's adapt() returns unchanged. Any other
    converter is called with every value, None too. Names ``c<index>`` and
    ``t<index>`` in ``namespace``.
    """
    field = getattr(converter, "__self__", None)
    while (
        isinstance(field, _ForeignKeyField)
        and getattr(converter, "__func__", None) is _ForeignKeyField.python_value
    ):
        # peewee's foreign key passes a value of its related model through, and
        # converts any other by the field it points to: a driver's value is never
        # a model instance, so that field's conversion is the key's.
        converter = field.rel_field.python_value
        field = field.rel_field
    if isinstance(field, _Field) and getattr(converter, "__func__", None) is _Field.python_value:
        namespace[f"c{index}"] = field.adapt
        unchanged = unchanged_type(converter)
        if unchanged is None:
            return f"if {value} is not None: {value} = c{index}({value})"
        namespace[f"t{index}"] = unchanged
        return f"if type({value}) is not t{index} and {value} is not None: {value} = c{index}({value})"
    namespace[f"c{index}"] = converter
    return f"{value} = c{index}({value})"


def new_instance(target: str, model: str, data: str) -> list[str]:
    """Lines of generated code making ``target`` an instance of ``model`` as peewee's wrappers leave one.

    ``data`` is the items of its ``__data__`` (a dict display's); no field is
    dirty, no related object cached. ``new`` is ``object.__new__`` in the
    code's namespace.
    """
    return [
        f"{target} = new({model})",
        f"{target}.__data__ = {{{data}}}",
        f"{target}._dirty = set()",
        f"{target}.__rel__ = {{}}",
    ]


def _compile_builder(model: Any, fields: Sequence[Any]) -> Callable[[Sequence[Sequence[Any]]], list[Any]]:
    """The body of :func:`row_builder`, written out for this model and these fields.

    A loop specialised to the shape, unpacking each row into locals, and a
    dict display for ``__data__``, is what lets 1,000 rows become instances in
    less time than ``dict(zip(columns, row))`` takes to make 1,000 dicts.
    """
    # The generated code names values v<i>, converters c<i> and types t<i>; field
    # names appear only as repr()'d dict keys, so keywords ("from") are safe too.
    namespace: dict[str, Any] = {"new": object.__new__, "model": model}
    convert = [
        conversion(f"v{index}", index, field.python_value, namespace) for index, field in enumerate(fields)
    ]
    targets = "".join(f"v{index}, " for index in range(len(fields)))
    data = ", ".join(f"{field.name!r}: v{index}" for index, field in enumerate(fields))
    lines = [*convert, *new_instance("instance", "model", data), "append(instance)"]
    body = "\n".join(f"        {line}" for line in lines)
    source = f"""\
def build(rows):
    instances = []
    append = instances.append
    for {targets}in rows:
{body}
    return instances
"""
    exec(compile(source, f"<peewee_async row builder of {model.__name__}>", "exec"), namespace)
    build: Callable[[Sequence[Sequence[Any]]], list[Any]] = namespace["build"]
    return build


def _single_model_fields(query: Any) -> Any:
    """The selected columns of a plain model select (one model, no joins, model rows), else ``None``."""
    if type(query) is not _ModelSelect or query._row_type not in (None, peewee.ROW.MODEL):
        return None
    model = query.model
    if query._joins or len(query._from_list) != 1 or query._from_list[0] is not model:
        return None
    return query._returning


def select_row_builder_for(query: Any) -> Callable[[Sequence[Sequence[Any]]], list[Any]] | None:
    """The :func:`row_builder` of a plain model select, not cached."""
    fields = _single_model_fields(query)
    return None if fields is None else row_builder(query.model, fields)


def select_row_builder(
    database: AsyncDatabase, query: Any
) -> Callable[[Sequence[Sequence[Any]]], list[Any]] | None:
    """The :func:`row_builder` for a plain model select (one model, no joins, model rows)."""
    fields = _single_model_fields(query)
    if fields is None:
        return None
    model = query.model
    # Keyed by identity: a cached builder holds its fields, so their ids stay theirs.
    key = ("rows", *map(id, fields))
    return cached(database, model, key, lambda: row_builder(model, fields))  # type: ignore[no-any-return]


# -- the Manager's shapes --------------------------------------------------------


def where_value(value: Any) -> bool:
    """Whether peewee binds ``field == value`` as one parameter (not IS NULL, a list, SQL)."""
    return not (value is None or isinstance(value, _MULTI) or isinstance(value, _SQL_VALUES))


def get_statement(
    database: AsyncDatabase, model: Any, args: Sequence[Any], kwargs: dict[str, Any]
) -> tuple[Statement, list[Any]] | None:
    """The select of ``get(model, *args, **kwargs)`` and its values, or ``None`` for the generic path.

    Covers a primary key value (``get(Model, 5)``), ``field == value``
    expressions on the model's own fields and ``field_name=value`` lookups.
    """
    meta = model._meta
    by_pk = bool(args) and len(args) == 1 and isinstance(args[0], int) and bool(meta.auto_increment)
    arg_fields: list[Any] = []
    values: list[Any] = []
    if by_pk:
        values.append(args[0])
    else:
        for arg in args:
            if type(arg) is not peewee.Expression or arg.op != peewee.OP.EQ or arg.flat:
                return None
            arg_fields.append(arg.lhs)
            values.append(arg.rhs)
    for name, value in kwargs.items():
        if "__" in name:
            return None
        values.append(value)
    for value in values:
        if not where_value(value):
            return None

    def build() -> Statement | None:
        if not plain_model(model) or not _model_methods_plain(model, "select"):
            return None
        named = [meta.fields.get(name) for name in kwargs]
        if any(field is None or getattr(model, field.name, None) is not field for field in named):
            return None
        fields = ([meta.primary_key] if by_pk else arg_fields) + named
        if not all(_plain_field(model, field) for field in fields):
            return None
        slots = _slots(len(fields))
        query = model.select()
        if by_pk:
            query = query.where(meta.primary_key == slots[0])
        elif arg_fields:
            query = query.where(*[field == slot for field, slot in zip(arg_fields, slots, strict=False)])
        if kwargs:
            query = query.filter(**dict(zip(kwargs, slots[len(fields) - len(named) :], strict=True)))
        query = query.paginate(1, 1)
        builder = row_builder(model, query._returning)
        if builder is None:
            return None
        return compile_statement(database, query, [field.db_value for field in fields], builder)

    # Keyed by the fields' ids: the statement holds the fields (their db_value), so the ids stay theirs.
    key = ("get", by_pk, *map(id, arg_fields), *kwargs)
    statement = cached(database, model, key, build)
    return None if statement is None else (statement, values)


def _write_fields(model: Any, names: Sequence[str]) -> list[Any] | None:
    fields = [model._meta.combined.get(name) for name in names]
    if not all(field is not None and _plain_field(model, field) for field in fields):
        return None
    return fields


def insert_statement(database: AsyncDatabase, model: Any, names: Sequence[str]) -> Statement | None:
    """The INSERT of ``Model.insert(**{name: value, ...})`` for these names; ``result`` is the
    primary key field when the statement returns it."""

    def build() -> Statement | None:
        meta = model._meta
        if not names or meta.composite_key or not _model_methods_plain(model, "insert"):
            return None
        fields = _write_fields(model, names)
        # peewee fills in the defaults of fields left out (calling callables each
        # time): only the shapes that name every field with a default are fixed.
        if fields is None or set(meta.defaults) - set(fields):
            return None
        query = model.insert(**dict(zip(names, _slots(len(names)), strict=True)))
        from .execution import prepare_insert

        prepare_insert(database, query)
        returning = query._returning
        if returning and (len(returning) != 1 or returning[0] is not meta.primary_key):
            return None
        pk = meta.primary_key if returning else None
        return compile_statement(database, query, [field.db_value for field in fields], pk)

    return cached(database, model, ("insert", *names), build)  # type: ignore[no-any-return]


def update_statement(database: AsyncDatabase, model: Any, names: Sequence[str]) -> Statement | None:
    """``Model.update(**{name: value, ...}).where(pk == value)``: the values, then the primary key."""

    def build() -> Statement | None:
        meta = model._meta
        if meta.composite_key or not _model_methods_plain(model, "update", "_pk_expr"):
            return None
        fields = _write_fields(model, names)
        if not fields or not _plain_field(model, meta.primary_key):
            return None
        slots = _slots(len(fields) + 1)
        query = model.update(**dict(zip(names, slots, strict=False))).where(meta.primary_key == slots[-1])
        converters = [field.db_value for field in fields] + [meta.primary_key.db_value]
        return compile_statement(database, query, converters)

    return cached(database, model, ("update", *names), build)  # type: ignore[no-any-return]


def delete_statement(database: AsyncDatabase, model: Any) -> Statement | None:
    """``Model.delete().where(pk == value)``."""

    def build() -> Statement | None:
        meta = model._meta
        if meta.composite_key or not _model_methods_plain(model, "delete", "_pk_expr"):
            return None
        if not _plain_field(model, meta.primary_key):
            return None
        slot = _slots(1)[0]
        query = model.delete().where(meta.primary_key == slot)
        return compile_statement(database, query, [meta.primary_key.db_value])

    return cached(database, model, ("delete",), build)  # type: ignore[no-any-return]


# What a select of a whole table sets to None; any of them set changes its count.
_CLAUSES = (
    "_where", "_order_by", "_limit", "_offset", "_cte_list", "_alias", "_group_by",
    "_having", "_windows", "_for_update", "_lateral", "_distinct", "_simple_distinct",
)  # fmt: skip


def count_statement(
    database: AsyncDatabase, query: Any, build_count: Callable[[Any], Any]
) -> Statement | None:
    """The COUNT of ``Model.select()`` (any columns, nothing else): ``build_count(query)``, compiled once.

    ``result`` holds the attribute names a plain select has: a query with any
    other (set by a method this module does not know) is not plain.
    """
    if type(query) is not _ModelSelect:
        return None
    model = query.model
    state = query.__dict__
    if query._joins or len(query._from_list) != 1 or query._from_list[0] is not model:
        return None
    for name in _CLAUSES:
        if state.get(name, 0) is not None:
            return None

    def build() -> Statement | None:
        statement = compile_statement(database, build_count(query), [])
        if statement is not None:
            statement.result = frozenset(state)
        return statement

    statement: Statement | None = cached(database, model, ("count",), build)
    if statement is None or not state.keys() <= statement.result:
        return None
    return statement
