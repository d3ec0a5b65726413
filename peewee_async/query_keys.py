"""The structural key of a peewee query: everything its SQL depends on, and the values it binds.

Two queries built the same way with other values (``User.id == 5`` and
``User.id == 7``) compile to the same SQL with other parameters. A walk over
the query's nodes tells them apart from any query whose SQL would differ: it
writes down each node's class and every attribute that can change the SQL
(operators, flags, names, the identity of fields, models and their tables,
how many items a list has), and collects the plain values (the leaves) with
the place each was found. The result is :class:`Walk`: ``key``, a tuple
that is equal for two queries only when peewee writes the same SQL for both,
and ``leaves``, the values in walk order.

The walk knows peewee's node classes by their exact type, and for each the
attributes it may carry; a node of another class (a subclass, a node of an
extension), or one carrying an attribute not listed, makes the query
:class:`Unkeyable`, and it is compiled by peewee every time. Values whose
kind decides the SQL are part of the key, not leaves: ``None`` (``IS NULL``,
no ``LIMIT``), a list (one placeholder per item), a node or a model class (SQL
of their own), a model instance (its type).

Writing a key costs a small part of a compile: one pass over the nodes,
appending to a list, where peewee's compile enters and leaves a context per
node and builds strings. Objects compared by identity (fields, models,
tables, converters) go into the key as their ``id()``, and the walk keeps
them in ``holds``, for the cache entry to keep them alive: an id is never
reused while its entry exists. Comparing them by ``==`` would not do:
``Field.__eq__`` builds an expression, which is always true.

:func:`slot_in` puts numbered placeholders in the places of the leaves, so
that peewee compiles the query's shape once (see :mod:`.compiler`).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import peewee

_Node = peewee.Node
_Model = peewee.Model
_Field = peewee.Field
_FieldAlias = peewee.FieldAlias
_ModelAlias = peewee.ModelAlias
_MULTI = peewee.multi_types
_ModelBase = peewee.ModelBase


def _is_model(value: Any) -> bool:
    """A model class (peewee's ``is_model``, in one isinstance)."""
    return isinstance(value, _ModelBase)


_PLAIN = frozenset((str, int, float, bool, bytes, type(None)))

#: Marks a list of items in the key, followed by its length.
_MANY = object()
#: Marks a model class (a source) in the key, and a field.
_SOURCE = object()
_FIELD = object()


class Unkeyable(Exception):
    """The query holds a node or a value the walk does not know: peewee compiles it every time."""


class Slot:
    """The placeholder standing for leaf number ``index`` while a shape is compiled."""

    __slots__ = ("index",)

    def __init__(self, index: int) -> None:
        self.index = index

    def __repr__(self) -> str:
        return f"Slot({self.index})"

    # peewee must only bind a slot. Any other use (text, a truth test, a
    # comparison) would make the SQL depend on the value: the shape is then
    # not reused.
    def _refuse(self, *args: Any) -> Any:
        raise Unkeyable(f"the SQL depends on the value of leaf {self.index}")

    __str__ = __format__ = __bool__ = __eq__ = __ne__ = __lt__ = __le__ = __gt__ = __ge__ = _refuse
    __hash__ = _refuse


# How each attribute of a node is walked:
#   "o" an operand: a node is walked, a plain value is a leaf, a list is items
#   "a" an atom: a value bound as one parameter even when it is a list
#   "s" structure: part of the key as it is (a node is walked, an object by id)
#   "u" an UPDATE's {column: value}: columns are structure, values atoms or nodes
#   "i" ignored: no effect on the SQL (the bound database, a cursor, a hash)
_WRAPPED = {"node": "o", "_coerce": "s", "_converter": "s"}
_QUERY = {
    "model": "s", "table": "s", "lhs": "o", "op": "s", "rhs": "o",
    "_cte_list": "o", "_returning": "o", "_is_default": "s", "_distinct": "o",
    "_simple_distinct": "s", "_from_list": "o", "_joins": "s", "_update": "u",
    "_from": "o", "_where": "o", "_group_by": "o", "_having": "o", "_windows": "o",
    "_order_by": "o", "_limit": "o", "_offset": "o", "_for_update": "s",
    "_for_update_of": "s", "_for_update_nowait": "s", "_lateral": "s", "_alias": "s",
    "_return_cursor": "s", "_row_type": "s", "_constructor": "s", "_load_tree": "s",
    "_insert": "r", "_columns": "s", "_on_conflict": "s", "_as_rowcount": "s", "_query_type": "s",
    "_database": "i", "_cursor_wrapper": "i", "_hash": "i", "_join_ctx": "i",
}  # fmt: skip
_SPECS: dict[type, dict[str, str]] = {
    peewee.Expression: {"lhs": "o", "op": "s", "rhs": "o", "flat": "s", "_coerce": "s", "_converter": "s"},
    peewee.SQL: {"sql": "s", "params": "a", "_coerce": "s", "_converter": "s"},
    peewee.Entity: {"_path": "s", "_coerce": "s", "_converter": "s"},
    peewee.Column: {"source": "s", "name": "s", "_coerce": "s", "_converter": "s"},
    peewee.Function: {
        "name": "s", "arguments": "o", "_filter": "o", "_order_by": "o",
        "_python_value": "s", "_coerce": "s", "_converter": "s",
    },
    peewee.NodeList: {"nodes": "o", "glue": "s", "parens": "s", "_coerce": "s", "_converter": "s"},
    peewee.Ordering: {**_WRAPPED, "direction": "s", "collation": "s", "nulls": "s"},
    peewee.Alias: {**_WRAPPED, "_alias": "s"},
    peewee.Negated: _WRAPPED,
    peewee.BitwiseNegated: _WRAPPED,
    peewee.Cast: {**_WRAPPED, "_cast": "s"},
    peewee.BindTo: {**_WRAPPED, "dest": "s"},
    peewee.QualifiedNames: {**_WRAPPED, "_scope": "s"},
    peewee._InFunction: {"node": "o", "in_function": "s"},  # type: ignore[attr-defined]
    peewee.Case: {
        "predicate": "o", "expression_tuples": "o", "default": "o", "_coerce": "s", "_converter": "s",
    },
    peewee.Join: {"lhs": "o", "rhs": "o", "join_type": "s", "_on": "o", "_alias": "s"},
    peewee.Window: {
        "partition_by": "o", "order_by": "o", "start": "s", "end": "s", "frame_type": "s",
        "_alias": "s", "_inline": "s", "_extends": "s", "_exclude": "s",
    },
    peewee.WindowAlias: {"window": "s"},
    peewee.CTE: {
        "_alias": "s", "_query": "s", "_recursive": "s", "_materialized": "s", "_columns": "s", "_hash": "i",
    },
    peewee.ModelSelect: _QUERY,
    peewee.Select: _QUERY,
    peewee.ModelCompoundSelectQuery: _QUERY,
    peewee.CompoundSelectQuery: _QUERY,
    peewee.ModelUpdate: _QUERY,
    peewee.Update: _QUERY,
    peewee.ModelDelete: _QUERY,
    peewee.Delete: _QUERY,
    peewee.ModelInsert: _QUERY,
    peewee.Insert: _QUERY,
    peewee.OnConflict: {
        "_action": "s", "_update": "c", "_preserve": "s", "_where": "o",
        "_conflict_target": "s", "_conflict_where": "o", "_conflict_constraint": "s",
    },
}  # fmt: skip
if hasattr(peewee, "ForUpdate"):  # peewee 4; 3.17 keeps FOR UPDATE in the select's attributes
    _SPECS[peewee.ForUpdate] = {"_expr": "s", "_of": "s", "_nowait": "s", "_skip_locked": "s"}
StringExpression: Any = getattr(peewee, "StringExpression", None)
if StringExpression is not None:
    _SPECS[StringExpression] = _SPECS[peewee.Expression]

#: The query classes a whole statement may be.
STATEMENTS = frozenset(
    (
        peewee.ModelSelect,
        peewee.Select,
        peewee.ModelCompoundSelectQuery,
        peewee.CompoundSelectQuery,
        peewee.ModelUpdate,
        peewee.Update,
        peewee.ModelDelete,
        peewee.Delete,
        peewee.ModelInsert,
        peewee.Insert,
    )
)


class Walk:
    """The key of one query, its leaves, and where each leaf was found."""

    __slots__ = ("key", "leaves", "places", "holds", "_add", "_models")

    def __init__(self) -> None:
        self.key: Any = []
        self.leaves: list[Any] = []
        #: (node, attribute, path into the attribute's value) of each leaf
        self.places: list[tuple[Any, str, tuple[Any, ...]]] = []
        self.holds: list[Any] = []
        self._add = self.key.append
        self._models: set[int] = set()

    # -- nodes -----------------------------------------------------------

    def node(self, node: Any) -> None:
        cls = type(node)
        spec = _SPECS.get(cls)
        if spec is None:
            self._other(node, cls)
            return
        add = self._add
        add(cls)
        # The attributes the node has, each named in the key: two nodes built the
        # same way list them in the same order; built otherwise, they make another
        # key for the same SQL, never one key for two.
        for name, value in node.__dict__.items():
            how = spec.get(name)
            if how is None:
                raise Unkeyable(f"{cls.__name__} with an attribute {name!r}")
            if how == "i":
                continue
            add(name)
            if value is None:
                add(None)
            elif how == "o":
                self.operand(value, node, name, ())
            elif how == "s":
                self.structure(value)
            elif how == "a":
                self.atoms(value, node, name)
            elif how == "u":
                self.update(value, node, "_update", instances=True)
            elif how == "c":
                # ON CONFLICT ... DO UPDATE: peewee writes an instance there as SQL.
                self.update(value, node, name, instances=False)
            elif how == "r":
                self.inserted(value, node)

    def _other(self, node: Any, cls: Any) -> None:
        add = self._add
        if isinstance(node, _Field):
            sql = cls.__sql__
            if sql is _Field.__sql__:
                add(_FIELD)
                add(id(node))
                self.holds.append(node)
                model = node.model
                if id(model) not in self._models:
                    # The model's table once per walk: a field's model is fixed.
                    self.source(model)
                return
            if sql is _FieldAlias.__sql__:
                alias: Any = node
                add(_FieldAlias)
                add(id(alias.field))
                self.holds.append(alias.field)
                self.node(alias.source)
                return
        elif cls is _ModelAlias:
            # Its other attributes are the field aliases it made on demand.
            attributes = node.__dict__
            add(_ModelAlias)
            self.source(attributes["model"])
            self.structure(attributes["alias"])
            return
        elif cls is peewee.Value:
            self.value(node)
            return
        elif cls is peewee.Table:
            add(peewee.Table)
            add(id(node))
            self.holds.append(node)
            return
        raise Unkeyable(f"a node of class {cls.__module__}.{cls.__qualname__}")

    def source(self, model: Any) -> None:
        """A model class: its identity, and that of its table the first time in the walk.

        A new table name or database gives the model a new table.
        """
        add = self._add
        add(_SOURCE)
        add(id(model))
        if id(model) not in self._models:
            self._models.add(id(model))
            meta = model._meta
            table = meta._table or meta.table
            add(id(table))
            self.holds.append(model)
            self.holds.append(table)

    def value(self, node: Any) -> None:
        attributes = node.__dict__
        add = self._add
        add(peewee.Value)
        converter = attributes["converter"]
        add(converter if converter is None or converter is False else id(converter))
        if converter is not None and converter is not False:
            self.holds.append(converter)
        if attributes["multi"]:
            values = attributes["values"]
            add(_MANY)
            add(len(values))
            for index, item in enumerate(values):
                self.operand(item, node, "values", (index,))
            return
        add(False)
        value = attributes["value"]
        if value is None:
            add(None)
        elif isinstance(value, _Node) or _is_model(value):
            # Converted before peewee sees it is SQL: rare, and not worth guessing.
            raise Unkeyable("a Value holding a node")
        else:
            add(type(value))
            self.leaves.append(value)
            self.places.append((node, "value", ()))

    # -- attribute values ---------------------------------------------------

    def operand(self, value: Any, node: Any, name: str, path: tuple[Any, ...]) -> None:
        """What peewee's ``ctx.sql(value)`` compiles: a node, a model, a list of items, or one parameter."""
        if isinstance(value, _Node):
            if isinstance(value, _Model):
                self._leaf(value, node, name, path)
            else:
                self.node(value)
        elif value is None:
            self._add(None)
        elif isinstance(value, _MULTI):
            add = self._add
            add(_MANY)
            add(len(value))
            for index, item in enumerate(value):
                self.operand(item, node, name, (*path, index))
        elif _is_model(value):
            self.source(value)
        else:
            self._leaf(value, node, name, path)

    def _leaf(self, value: Any, node: Any, name: str, path: tuple[Any, ...]) -> None:
        self._add(type(value))
        self.leaves.append(value)
        self.places.append((node, name, path))

    def atoms(self, values: Any, node: Any, name: str) -> None:
        """``SQL(sql, params)``: each parameter bound as it is, a list too."""
        if not isinstance(values, (list, tuple)):
            raise Unkeyable("SQL() parameters that are not a list or tuple")
        add = self._add
        add(_MANY)
        add(len(values))
        for index, value in enumerate(values):
            if value is None:
                add(None)
            elif isinstance(value, _Node) or _is_model(value):
                raise Unkeyable("a node among SQL() parameters")
            else:
                self._leaf(value, node, name, (index,))

    def update(self, assignments: Any, node: Any, name: str, instances: bool) -> None:
        """``Update._update``: peewee binds ``field.to_value(value)`` for each plain value."""
        if type(assignments) is not dict:
            raise Unkeyable("assignments that are not a dict")
        add = self._add
        add(_MANY)
        add(len(assignments))
        for column, value in assignments.items():
            self.structure(column)
            if isinstance(column, _Field) and type(column).to_value is not _Field.to_value:
                raise Unkeyable("an update of a field with a to_value() of its own")
            if value is None:
                add(None)
            elif isinstance(value, _Model):
                if not instances or not isinstance(column, peewee.ForeignKeyField):
                    raise Unkeyable("a model instance assigned to a field that is not a foreign key")
                self._leaf(value, node, name, (column,))
            elif isinstance(value, _Node):
                self.node(value)
            elif _is_model(value):
                raise Unkeyable("a model class assigned to a column")
            else:
                self._leaf(value, node, name, (column,))

    def inserted(self, rows: Any, node: Any) -> None:
        """``Insert._insert``: one dict of values, a list of dicts or tuples, or a query.

        peewee fills a column a row leaves out with the model's default, calling
        a callable default each time: a shape is fixed only when every row
        names every column with a default, and all rows name the same columns.
        """
        add = self._add
        if isinstance(rows, _Node):
            self.node(rows)
            return
        columns = node.__dict__.get("_columns")
        if type(rows) is dict:
            if columns:
                raise Unkeyable("an insert of one dict with columns named apart")
            add(dict)
            self._row_keys(rows, node)
            self._row_values(rows, rows, node, ())
            return
        if type(rows) not in (list, tuple) or not rows:
            raise Unkeyable("rows to insert that are not a list or tuple")  # a generator is read once
        add(_MANY)
        add(len(rows))
        first = rows[0]
        if columns:
            width = len(columns)
            self._check_defaults(columns, node)
            add(width)
            for index, row in enumerate(rows):
                if type(row) not in (list, tuple) or len(row) != width:
                    raise Unkeyable("rows of another length than the columns named")
                self._row_values(row, range(width), node, (index,))
            return
        if type(first) is not dict:
            raise Unkeyable("rows that are not dicts without columns named")
        keys = self._row_keys(first, node)
        for index, row in enumerate(rows):
            if type(row) is not dict or len(row) != len(keys):
                raise Unkeyable("rows naming other columns")
            for key, other in zip(keys, row, strict=True):
                if key is not other and not (type(key) is str and key == other):
                    raise Unkeyable("rows naming other columns")
            self._row_values(row, keys, node, (index,))

    def _row_keys(self, row: dict[Any, Any], node: Any) -> list[Any]:
        keys = list(row)
        self._check_defaults(keys, node)
        add = self._add
        add(len(keys))
        for key in keys:
            self.structure(key)
        return keys

    def _check_defaults(self, keys: Any, node: Any) -> None:
        model = node.__dict__.get("model")
        defaults = model._meta.defaults if model is not None else {}
        if not defaults:
            return
        table = node.__dict__["table"]
        named = {id(getattr(table, key, None) if type(key) is str else key) for key in keys}
        if any(id(field) not in named for field in defaults):
            raise Unkeyable("an insert leaving a column with a default out")

    def _row_values(self, row: Any, keys: Any, node: Any, path: tuple[Any, ...]) -> None:
        add = self._add
        for key in keys:
            value = row[key]
            if value is None:
                add(None)
            elif isinstance(value, _Model):
                # peewee binds it through a foreign key's converter, else writes SQL.
                self._leaf(value, node, "_insert", (*path, key))
            elif isinstance(value, _Node):
                self.node(value)
            elif _is_model(value):
                raise Unkeyable("a model class among the values to insert")
            else:
                self._leaf(value, node, "_insert", (*path, key))

    def structure(self, value: Any) -> None:
        """A value that shapes the SQL: in the key as it is, by identity, or walked."""
        cls = type(value)
        if cls in _PLAIN:
            if cls is bool:
                # True == 1 and False == 0, where peewee may tell them apart (is False).
                self._add(bool)
            self._add(value)
        elif isinstance(value, _Node):
            if isinstance(value, _Model):
                raise Unkeyable("a model instance where the SQL takes structure")
            self.node(value)
        elif _is_model(value):
            self.source(value)
        elif cls is list or cls is tuple:
            add = self._add
            add(_MANY)
            add(len(value))
            for item in value:
                self.structure(item)
        elif cls is dict:
            add = self._add
            add(dict)
            add(len(value))
            for item, other in value.items():
                self.structure(item)
                self.structure(other)
        else:
            # A function, a class, a converter: compared by identity.
            self._add(id(value))
            self.holds.append(value)


def walk(query: Any) -> Walk:
    """The :class:`Walk` of ``query``; :class:`Unkeyable` if any part of it is not known."""
    if type(query) not in STATEMENTS:
        raise Unkeyable(f"a statement of class {type(query).__name__}")
    result = Walk()
    try:
        result.node(query)
    except RecursionError:
        raise Unkeyable("a query nested too deep") from None
    result.key = tuple(result.key)
    return result


def _replaced(container: Any, path: tuple[Any, ...], slot: Slot) -> Any:
    """A copy of ``container`` with the item at ``path`` (indices, dict keys) made ``slot``."""
    head, rest = path[0], path[1:]
    if isinstance(container, dict):
        copy = dict(container)
        copy[head] = _replaced(container[head], rest, slot) if rest else slot
        return copy
    items = list(container)  # a set or range too, in the order the walk saw
    items[head] = _replaced(items[head], rest, slot) if rest else slot
    return items if isinstance(container, list) else tuple(items)


@contextmanager
def slot_in(result: Walk) -> Iterator[None]:
    """While inside, the query holds :class:`Slot` ``i`` in the place of leaf ``i``.

    The nodes are changed in place and put back on the way out: compiling
    with slots is synchronous, so no other code sees the query meanwhile.
    Attribute values are replaced, never changed: a list or dict of the
    query's stays as it was.
    """
    originals: list[tuple[dict[str, Any], str, Any]] = []
    seen: set[tuple[int, str]] = set()
    try:
        for index, (node, name, path) in enumerate(result.places):
            attributes = node.__dict__
            if (id(node), name) not in seen:
                seen.add((id(node), name))
                originals.append((attributes, name, attributes[name]))
            slot = Slot(index)
            attributes[name] = _replaced(attributes[name], path, slot) if path else slot
        yield
    finally:
        for attributes, name, original in reversed(originals):
            attributes[name] = original
