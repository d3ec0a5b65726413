"""Rows of a cached query shape, built as peewee's cursor wrappers build them, without their per-call cost.

peewee's cursor wrappers work out, for every result, which column goes to
which model, attribute and converter (``initialize()``), then build each row
through generic code. For a query shape of the statement cache
(:mod:`.compiler`) that work is the same every time: a :class:`RowPlan` keeps
one initialized wrapper per shape and builds each result's rows with it.

Model rows get code of their own, written for the shape:

* a select of one plain model: :func:`~peewee_async.shapes.row_builder`;
* a select of one model with other values beside its fields
  (``select(User, fn.COUNT(Tweet.id).alias("n"))``), ``.objects()``, a raw
  query or a compound select of a model: the fields' values in ``__data__``,
  the others plain attributes of the instance (``user.n``);
* a select of joined models (``select(Tweet, User).join(User)``): one
  instance per model (or alias) as peewee makes them, each field's column
  stored into its ``__data__`` and any other column a plain attribute, the
  joined instances assigned through the model's own attribute
  (``tweet.user = user``, as peewee does). A row where a joined model has no
  value at all (a LEFT OUTER join that found nothing) is built by peewee's
  wrapper itself: that is where peewee's versions differ.

So do ``.dicts()``, ``.tuples()`` and ``.namedtuples()`` of a model select:
one dict or tuple display per row, in the order and with the converters of
the initialized wrapper. Anything else (``objects(constructor)``, a value
named as a property or accessor of the model, selects without a model) goes
through the initialized wrapper's ``process_row``: peewee's own code, minus
``initialize()``.
"""

from __future__ import annotations

import gc
import keyword
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import peewee

from . import shapes
from .compiler import VerificationError
from .cursor import FetchedCursor

_Field = peewee.Field
_ModelSelect: Any = peewee.ModelSelect
_ModelCursorWrapper: Any = peewee.ModelCursorWrapper
_ModelObjectCursorWrapper: Any = peewee.ModelObjectCursorWrapper
_ModelDictCursorWrapper: Any = peewee.ModelDictCursorWrapper
_ModelTupleCursorWrapper: Any = peewee.ModelTupleCursorWrapper
_ModelNamedTupleCursorWrapper: Any = peewee.ModelNamedTupleCursorWrapper

Rows = Sequence[Sequence[Any]]
Built = TypeVar("Built")

#: Rows from which a result is built with the cycle collector paused (see :func:`build_paused`).
PAUSE_COLLECTOR_ROWS = 128


def build_paused(build: Callable[[Rows], Built], rows: Rows) -> Built:
    """``build(rows)``, with the cycle collector paused while a result of many rows is built.

    Each model instance is two objects the collector tracks (the instance and
    its ``_dirty`` set). Building 1,000 of them runs the youngest
    generation's collection three times, which finds nothing to free (every
    instance is held by the result being built), and counts towards the
    older generations' collections, the oldest of which goes over every
    object of the process: their number grows with the rows read, not with
    the garbage made. Paused for the build, the collector runs once after
    it, at the next allocation. For fewer rows it would run no less often.

    Only when the collector is on: an application that switched it off keeps
    it off. It is on again when ``build`` returns or raises. The switch is the
    process's, so a thread that turns the collector off while a build runs
    in another finds it on again afterwards.
    """
    if len(rows) < PAUSE_COLLECTOR_ROWS or not gc.isenabled():
        return build(rows)
    gc.disable()
    try:
        return build(rows)
    finally:
        gc.enable()


def column_names(description: Any) -> tuple[Any, ...]:
    return tuple([item[0] for item in description]) if description else ()


class RowPlan:
    """How one query shape's rows are built: ``build(rows)`` gives what peewee's wrapper gives.

    ``constructor`` is the query's ``.objects()`` constructor the plan was made
    for: not part of the shape's key, since the SQL does not depend on it (a
    new lambda at each call would otherwise make a new shape each call and
    crowd the cache), so a query with another one needs another plan.
    """

    __slots__ = ("names", "build", "wrapper", "constructor")

    def __init__(
        self, names: tuple[Any, ...], build: Callable[[Rows], list[Any]], wrapper: Any, constructor: Any
    ) -> None:
        self.names = names
        self.build = build
        self.wrapper = wrapper
        self.constructor = constructor


def plan_rows(query: Any, cursor: FetchedCursor) -> RowPlan:
    """The :class:`RowPlan` of ``query``'s shape, for results described as ``cursor`` is."""
    names = column_names(cursor.description)
    wrapper = query._get_cursor_wrapper(FetchedCursor((), cursor.description, 0))
    wrapper.initialize()
    wrapper.cursor = None  # the plan outlives this result: keep none of it
    build = _model_builder(query, wrapper)
    if build is None:
        process = wrapper.process_row

        def build(rows: Rows) -> list[Any]:
            return [process(row) for row in rows]

    return RowPlan(names, build, wrapper, getattr(query, "_constructor", None))


def _model_builder(query: Any, wrapper: Any) -> Callable[[Rows], list[Any]] | None:
    kind = type(wrapper)
    if kind is _ModelDictCursorWrapper:
        return _dict_builder(wrapper)
    if kind is _ModelTupleCursorWrapper or kind is _ModelNamedTupleCursorWrapper:
        return _tuple_builder(wrapper, named=kind is _ModelNamedTupleCursorWrapper)
    if kind is _ModelObjectCursorWrapper:
        # A select of one model (the plain one by its leaner code), .objects(),
        # a raw query or a compound select of a model: the wrapper's state is all
        # its process_row reads.
        single = shapes.select_row_builder_for(query)
        return single if single is not None else _object_builder(wrapper)
    if kind is _ModelCursorWrapper and type(query) is _ModelSelect:
        return _join_builder(wrapper)
    return None


def _compile(lines: list[str], namespace: dict[str, Any], name: str) -> Callable[[Rows], list[Any]]:
    """``build(rows)``: ``lines`` run for each ``row``, appending one result each."""
    body = "\n".join(f"        {line}" for line in lines)
    head = "def build(rows):\n    result = []\n    append = result.append\n    for row in rows:\n"
    source = f"{head}{body}\n    return result\n"
    exec(compile(source, f"<peewee_async {name} row builder>", "exec"), namespace)
    build: Callable[[Rows], list[Any]] = namespace["build"]
    return build


def _unpacked(converters: Sequence[Any], namespace: dict[str, Any]) -> list[str]:
    """Lines putting each column of ``row`` in local ``v<index>``, converted as peewee converts it.

    Through :func:`.shapes.conversion`: a value of the type its field returns
    as it is (an ``int`` of an ``IntegerField``) is not passed through the
    field at all, where peewee's wrappers call it for every column of every row.
    """
    if not converters:
        return []
    lines = [f"{''.join(f'v{index}, ' for index in range(len(converters)))}= row"]
    for index, converter in enumerate(converters):
        if converter is not None:
            lines.append(shapes.conversion(f"v{index}", index, converter, namespace))
    return lines


def _dict_keys(wrapper: Any) -> tuple[Sequence[str], list[int]]:
    """The keys of the dict peewee's ``ModelDictCursorWrapper`` makes of a row, and its columns in order.

    peewee 4 names duplicated columns apart and sets the columns without a
    converter first; peewee 3.17 keeps the first of duplicated columns, in
    column order.
    """
    if hasattr(wrapper, "unique_columns"):  # peewee 4
        return wrapper.unique_columns, [*wrapper.no_convert, *wrapper.convert]
    columns = wrapper.columns
    seen: set[str] = set()
    order = []
    for index, column in enumerate(columns):
        if column not in seen:
            seen.add(column)
            order.append(index)
    return columns, order


def _dict_builder(wrapper: Any) -> Callable[[Rows], list[Any]]:
    """``.dicts()`` of a model select: a dict display with peewee's keys in peewee's order gives its dict."""
    namespace: dict[str, Any] = {}
    columns, order = _dict_keys(wrapper)
    items = ", ".join(f"{columns[index]!r}: v{index}" for index in order)
    return _compile([*_unpacked(wrapper.converters, namespace), f"append({{{items}}})"], namespace, "dict")


def _object_builder(wrapper: Any) -> Callable[[Rows], list[Any]] | None:
    """Instances of a one-model select with other values beside its fields (``fn.COUNT(...).alias("n")``).

    peewee's ``ModelObjectCursorWrapper`` makes the row's dict (the one
    ``.dicts()`` gives) and passes it to the model as keyword arguments: a
    field's value goes to ``__data__`` through the field's accessor, any other
    value becomes a plain attribute of the instance. ``None`` where a name
    would reach anything else (a property, another field's accessor).
    """
    model = wrapper.constructor
    if not wrapper.is_model or not shapes.plain_model(model):
        return None
    columns, order = _dict_keys(wrapper)
    data: list[str] = []
    attributes: list[str] = []
    for index in order:
        name = columns[index]
        if name in model._meta.fields:
            data.append(f"{name!r}: v{index}")
        elif free_attribute(model, name):
            attributes.append(f"instance.{name} = v{index}")
        else:
            return None
    namespace: dict[str, Any] = {"new": object.__new__, "model": model}
    lines = [
        *_unpacked(wrapper.converters, namespace),
        *shapes.new_instance("instance", "model", ", ".join(data)),
        *attributes,
        "append(instance)",
    ]
    return _compile(lines, namespace, f"object of {model.__name__}")


def free_attribute(model: Any, name: str) -> bool:
    """Whether ``setattr(instance, name, value)`` on a ``model`` instance only stores a plain attribute.

    That is a name the model's classes define as nothing that takes the
    assignment itself (a field's accessor, a property): a new name, a method
    or a backref's accessor, which the instance's own attribute then hides,
    as it does with peewee's wrapper. Not the names peewee keeps an
    instance's state in (they start with ``_``); written in ASCII, as peewee 4
    reads them.
    """
    if not (name.isascii() and name.isidentifier()) or keyword.iskeyword(name) or name.startswith("_"):
        return False
    defined = shapes.class_attribute(model, name)
    return not (hasattr(type(defined), "__set__") or hasattr(type(defined), "__delete__"))


def _tuple_builder(wrapper: Any, named: bool) -> Callable[[Rows], list[Any]]:
    """``.tuples()`` or ``.namedtuples()`` of a model select, as peewee's wrappers make them."""
    namespace: dict[str, Any] = {"make": wrapper.constructor}
    values = "".join(f"v{index}, " for index in range(wrapper.ncols))
    made = f"append(make(({values})))" if named else f"append(({values}))"
    return _compile([*_unpacked(wrapper.converters, namespace), made], namespace, "tuple")


def _constructor(value: Any) -> Any:
    # peewee 4 keeps (constructor, is a model); 3.17 the constructor alone.
    return value[0] if isinstance(value, tuple) else value


def _join_builder(wrapper: Any) -> Callable[[Rows], list[Any]] | None:
    """Code building the instances of a join, or ``None`` where peewee's wrapper must."""
    keys = list(wrapper.key_to_constructor)
    models = {key: _constructor(value) for key, value in wrapper.key_to_constructor.items()}
    if not all(shapes.plain_model(model) for model in models.values()):
        return None
    column_keys = wrapper.column_keys
    fields = wrapper.fields
    columns = wrapper.columns
    attributes: set[int] = set()  # columns that are not fields: plain attributes, set as peewee sets them
    for index, (key, field, column) in enumerate(zip(column_keys, fields, columns, strict=True)):
        if key not in models:
            return None
        if field is None and free_attribute(models[key], column):
            attributes.add(index)
            continue
        if not isinstance(field, _Field):
            return None
        # The column stored under the field's own name (not an alias of the query's).
        own = field.field if isinstance(field, peewee.FieldAlias) else field
        if models[key]._meta.fields.get(column) is not own or not column.isidentifier():
            return None
    selected = set(column_keys)
    joins = []
    for src, attr, dest, *_ in wrapper.src_to_dest:
        if dest not in selected and not wrapper.joins.get(dest):
            # Joined only to filter or count by (``join(Tweet).group_by(User)``):
            # no column of it and no join from it, so peewee assigns nothing.
            continue
        # A joined model none of whose columns is selected, with joins of its
        # own: peewee's versions treat it differently; its wrapper decides.
        if src not in models or dest not in selected or not isinstance(attr, str):
            return None
        joins.append((src, attr, dest))
    if wrapper.model not in models:
        return None
    # The instances a row is made of: the joins' unselected ends are not.
    joined = {key for src, _, dest in joins for key in (src, dest)}
    keys = [key for key in keys if key in selected or key in joined or key is wrapper.model]
    return _compile_join_builder(wrapper, keys, {key: models[key] for key in keys}, joins, attributes)


def _compile_join_builder(
    wrapper: Any,
    keys: list[Any],
    models: dict[Any, Any],
    joins: list[tuple[Any, str, Any]],
    attributes: set[int],
) -> Callable[[Rows], list[Any]]:
    """The code of :func:`_join_builder`, written out for this shape.

    Instance ``i<k>`` is of key number ``k``; value ``v<c>`` of column ``c``,
    converted by ``c<c>``; the columns numbered in ``attributes`` are set as
    plain attributes, the others stored in ``__data__``. A row takes peewee's
    own path (``slow(row)``) when a joined instance would have no value at all.
    """
    number = {key: index for index, key in enumerate(keys)}
    namespace: dict[str, Any] = {"new": object.__new__, "slow": wrapper.process_row}
    for key, index in number.items():
        namespace[f"m{index}"] = models[key]
    lines: list[str] = []
    columns_of: dict[int, list[int]] = {index: [] for index in number.values()}
    for column_index, (key, converter) in enumerate(
        zip(wrapper.column_keys, wrapper.converters, strict=True)
    ):
        columns_of[number[key]].append(column_index)
        if converter is not None:
            namespace[f"c{column_index}"] = converter
    # Joined instances that must hold a value for the fast path.
    needed = sorted({number[dest] for _, _, dest in joins})
    checks = []
    for index in needed:
        values = " or ".join(f"v{c} is not None" for c in columns_of[index])
        checks.append(f"({values})")
    targets = "".join(f"v{c}, " for c in range(len(wrapper.column_keys)))
    lines.append("for row in rows:")
    lines.append(f"    {targets}= row")
    if checks:
        lines.append(f"    if not ({' and '.join(checks)}):")
        lines.append("        append(slow(row))")
        lines.append("        continue")
    for column_index, converter in enumerate(wrapper.converters):
        if converter is not None:
            lines.append(f"    {shapes.conversion(f'v{column_index}', column_index, converter, namespace)}")
    for index in number.values():
        data = ", ".join(f"{wrapper.columns[c]!r}: v{c}" for c in columns_of[index] if c not in attributes)
        lines.extend(f"    {line}" for line in shapes.new_instance(f"i{index}", f"m{index}", data))
        for c in columns_of[index]:
            if c in attributes:
                lines.append(f"    i{index}.{wrapper.columns[c]} = v{c}")
    dirtied: set[int] = set()
    for src, attr, dest in joins:
        target = _plain_foreign_key(models[src], attr, models[dest])
        if target is None:
            lines.append(f"    setattr(i{number[src]}, {attr!r}, i{number[dest]})")
            dirtied.add(number[src])
        else:
            # ForeignKeyAccessor.__set__ of an instance: the key from the related
            # instance, the instance cached (the dirty mark it adds is cleared after).
            lines.append(f"    i{number[src]}.__data__[{attr!r}] = i{number[dest]}.__data__.get({target!r})")
            lines.append(f"    i{number[src]}.__rel__[{attr!r}] = i{number[dest]}")
    for src in sorted(dirtied):
        lines.append(f"    i{src}._dirty.clear()")
    lines.append(f"    append(i{number[wrapper.model]})")
    body = "\n".join(f"    {line}" for line in lines)
    source = (
        f"def build(rows):\n    instances = []\n    append = instances.append\n{body}\n    return instances\n"
    )
    exec(compile(source, "<peewee_async join row builder>", "exec"), namespace)
    build: Callable[[Rows], list[Any]] = namespace["build"]
    return build


def _plain_foreign_key(model: Any, attr: str, related: Any) -> str | None:
    """The related field's name when ``model.attr = related_instance`` is peewee's own foreign key assignment.

    That is: ``attr`` is a foreign key of ``model`` with peewee's accessor,
    instances of ``related`` are of the model it points to, and the field it
    points to is read by peewee's plain accessor. ``None`` otherwise.
    """
    accessor = shapes.class_attribute(model, attr)
    if type(accessor) is not peewee.ForeignKeyAccessor or not issubclass(related, accessor.rel_model):
        return None
    name: str = accessor.field.rel_field.name
    reader = shapes.class_attribute(related, name)
    return name if type(reader) is peewee.FieldAccessor else None


# -- verification ---------------------------------------------------------------


def verify_rows(query: Any, cursor: FetchedCursor, rows: Sequence[Any]) -> None:
    """Raise :class:`VerificationError` unless peewee's own wrapper builds the same ``rows``."""
    wrapper = query._get_cursor_wrapper(FetchedCursor(cursor.rows, cursor.description, cursor.rowcount))
    wrapper.fill_cache()
    expected = list(wrapper.row_cache)
    if len(expected) != len(rows):
        raise VerificationError(f"{len(rows)} rows built where peewee builds {len(expected)}")
    for index, (ours, theirs) in enumerate(zip(rows, expected, strict=True)):
        difference = _difference(ours, theirs, 0)
        if difference:
            raise VerificationError(
                f"Row {index} differs from peewee's: {difference}\nours: {ours!r}\npeewee: {theirs!r}"
            )


def _difference(ours: Any, theirs: Any, depth: int) -> str | None:
    if isinstance(theirs, tuple) and hasattr(theirs, "_fields"):
        # peewee makes a named tuple class per result: equal when named and filled alike.
        if type(ours).__name__ != type(theirs).__name__ or getattr(ours, "_fields", None) != theirs._fields:
            return f"named tuple {type(ours).__name__}{getattr(ours, '_fields', '')!r} against {theirs!r}"
        return None if tuple(ours) == tuple(theirs) else f"{ours!r} against {theirs!r}"
    if type(ours) is not type(theirs):
        return f"type {type(ours).__name__} against {type(theirs).__name__}"
    if isinstance(theirs, peewee.Model):
        mine: Any = ours
        if depth > 8:
            return None
        if ours.__data__ != theirs.__data__:
            return f"__data__ {ours.__data__!r} against {theirs.__data__!r}"
        if mine._dirty != theirs._dirty:  # type: ignore[attr-defined]
            return f"dirty fields {mine._dirty!r} against {theirs._dirty!r}"  # type: ignore[attr-defined]
        if ours.__rel__.keys() != theirs.__rel__.keys():
            return f"related {sorted(ours.__rel__)!r} against {sorted(theirs.__rel__)!r}"
        for name in theirs.__rel__:
            difference = _difference(ours.__rel__[name], theirs.__rel__[name], depth + 1)
            if difference:
                return f"{name}: {difference}"
        skip = ("__data__", "_dirty", "__rel__")
        extra = {k: v for k, v in vars(ours).items() if k not in skip}
        other = {k: v for k, v in vars(theirs).items() if k not in skip}
        if extra.keys() != other.keys():
            return f"attributes {sorted(extra)!r} against {sorted(other)!r}"
        for name in other:
            difference = _difference(extra[name], other[name], depth + 1)
            if difference:
                return f"{name}: {difference}"
        return None
    if ours != theirs:
        return f"{ours!r} against {theirs!r}"
    return None
