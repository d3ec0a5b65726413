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
node and builds strings. Each node layout (its class and its attribute names
in order) is walked by code generated for it once, one statement per
attribute, and is one entry in the key. Objects compared by identity (fields, models,
tables, converters) go into the key as their ``id()``, and the walk keeps
them in ``holds``, for the cache entry to keep them alive: an id is never
reused while its entry exists. Comparing them by ``==`` would not do:
``Field.__eq__`` builds an expression, which is always true.

:func:`slot_in` puts numbered placeholders in the places of the leaves, so
that peewee compiles the query's shape once (see :mod:`.compiler`).
"""

from __future__ import annotations

import datetime
import decimal
import itertools
import operator
import types
from collections.abc import Callable, Iterator
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
#: Marks rows to insert whose columns each hold values of one type, followed by those types.
_UNIFORM = object()
#: Marks a number written into the SQL (a LIMIT, an OFFSET of 0), followed by it.
_NUMBER = object()
#: Marks a model class (a source) in the key, and an object by identity.
_SOURCE = object()
_ID = object()
#: Marks a function by what it runs (see Walk.structure), and a bound method by its parts.
_FUNCTION = object()
_METHOD = object()
#: Marks the columns an insert's row leaves to their defaults, followed by those fields.
_DEFAULTS = object()
#: Types of the values an insert_many() most often holds, never nodes: leaves at once.
_LEAF_TYPES = frozenset((int, str, float, bool, bytes, datetime.datetime, datetime.date, decimal.Decimal))


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
#   "i" ignored: no effect on the SQL (the bound database, a cursor, a hash, the constructor
#       of .objects(), which only the rows depend on: see row_plans.RowPlan.constructor)
#   "n" LIMIT: an int is written into the SQL (compiler.NumbersContext), so is structure;
#       anything else an operand
#   "z" OFFSET: 0 is written into the SQL, so is structure; anything else an operand
_WRAPPED = {"node": "o", "_coerce": "s", "_converter": "s"}
_QUERY = {
    "model": "s", "table": "s", "lhs": "o", "op": "s", "rhs": "o",
    "_cte_list": "o", "_returning": "o", "_is_default": "s", "_distinct": "o",
    "_simple_distinct": "s", "_from_list": "o", "_joins": "s", "_update": "u",
    "_from": "o", "_where": "o", "_group_by": "o", "_having": "o", "_windows": "o",
    "_order_by": "o", "_limit": "n", "_offset": "z", "_for_update": "s",
    "_for_update_of": "s", "_for_update_nowait": "s", "_lateral": "s", "_alias": "s",
    "_return_cursor": "s", "_row_type": "s", "_constructor": "i", "_load_tree": "s",
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
    # Model.raw(sql, *params): the text as it is, each parameter bound as it is.
    peewee.ModelRaw: {
        "model": "s", "_returning": "o", "_database": "i", "_cursor_wrapper": "i", "_row_type": "s",
        "_constructor": "i", "_sql": "s", "_params": "a",
    },
    peewee.RawQuery: {
        "_database": "i", "_cursor_wrapper": "i", "_row_type": "s", "_constructor": "i", "_sql": "s",
        "_params": "a",
    },
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
        peewee.ModelRaw,
        peewee.RawQuery,
    )
)


class Walk:
    """The key of one query, its leaves, and (when ``placing``) where each leaf was found.

    Only the walk of a new shape needs the places, for :func:`slot_in`: the
    walk of every other call leaves them out.

    The defaults an insert's rows leave out are leaves too, made by the walk
    (a callable default called, once per row, as peewee calls it); ``filled``
    holds them as (row index or ``None``, field, value). The walk of a new
    shape takes those of the walk that found it (``defaults``) rather than
    calling the defaults a second time.
    """

    __slots__ = ("key", "leaves", "places", "holds", "placing", "filled", "_add", "_models", "_reuse")

    def __init__(self, placing: bool = False, defaults: list[tuple[Any, Any, Any]] | None = None) -> None:
        self.key: Any = []
        self.leaves: list[Any] = []
        #: (node, attribute, path into the attribute's value) of each leaf, when placing
        self.places: list[tuple[Any, str, tuple[Any, ...]]] = []
        self.holds: list[Any] = []
        self.placing = placing
        self.filled: list[tuple[Any, Any, Any]] = []
        self._add = self.key.append
        self._models: set[int] = set()
        self._reuse = iter([value for _, _, value in defaults]) if defaults else None

    # -- nodes -----------------------------------------------------------

    def node(self, node: Any) -> None:
        cls = type(node)
        handler = _HANDLERS.get(cls)
        if handler is None:
            if not issubclass(cls, _Node) or issubclass(cls, _Model):
                # Only node classes are kept: operand() takes any value of a kept class for a node.
                raise Unkeyable(f"a {cls.__qualname__} where a node was expected")
            handler = _HANDLERS[cls] = _handler_for(cls)
        handler(self, node)

    def field(self, node: Any) -> None:
        # Its id alone: no other encoding starts with an int (see structure()).
        add = self._add
        add(id(node))
        self.holds.append(node)
        model = node.model
        if id(model) not in self._models:
            # The model's table once per walk: a field's model is fixed.
            self.source(model)

    def field_alias(self, alias: Any) -> None:
        add = self._add
        add(_FieldAlias)
        add(id(alias.field))
        self.holds.append(alias.field)
        self.node(alias.source)

    def model_alias(self, node: Any) -> None:
        # Its other attributes are the field aliases it made on demand.
        attributes = node.__dict__
        self._add(_ModelAlias)
        self.source(attributes["model"])
        self.structure(attributes["alias"])

    def table(self, node: Any) -> None:
        add = self._add
        add(peewee.Table)
        described = _table_description(node)
        if described is None:
            add(id(node))
            self.holds.append(node)
            return
        add(described)
        model = node.__dict__.get("_model")
        if model is not None:
            self.holds.append(model)

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
        if converter is None or converter is False:
            add(converter)
        else:
            self.structure(converter)  # a bound method or inline lambda made per call: as in structure()
        if attributes["multi"]:
            values = attributes["values"]
            add(_MANY)
            add(len(values))
            placing = self.placing
            for index, item in enumerate(values):
                self.operand(item, node, "values", (index,) if placing else ())
            return
        add(False)
        value = attributes["value"]
        if value is None:
            add(None)
        elif isinstance(value, _Node) or _is_model(value):
            # Converted before peewee sees it is SQL: rare, and not worth guessing.
            raise Unkeyable("a Value holding a node")
        else:
            self._leaf(value, node, "value", ())

    # -- attribute values ---------------------------------------------------

    def operand(self, value: Any, node: Any, name: str, path: tuple[Any, ...]) -> None:
        """What peewee's ``ctx.sql(value)`` compiles: a node, a model, a list of items, or one parameter."""
        handler = _HANDLERS.get(type(value))
        if handler is not None:  # a node of a class seen before: the common case first
            handler(self, value)
        elif isinstance(value, _Node):
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
            if self.placing:
                for index, item in enumerate(value):
                    self.operand(item, node, name, (*path, index))
                return
            handlers = _HANDLERS
            for item in value:
                handler = handlers.get(type(item))
                if handler is not None:  # the fields of a select list, most often
                    handler(self, item)
                else:
                    self.operand(item, node, name, path)
        elif _is_model(value):
            self.source(value)
        else:
            self._leaf(value, node, name, path)

    def _leaf(self, value: Any, node: Any, name: str, path: tuple[Any, ...]) -> None:
        self._add(type(value))
        self.leaves.append(value)
        if self.placing:
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
        a callable default each time. Rows of dicts all naming the same
        columns, and rows of tuples of the columns named apart, take the
        defaults they leave out as leaves (:meth:`_defaults`).
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
            missing = self._row_keys(rows, node)
            self._row_values(rows, rows, node, None)
            if missing:
                self._defaults(missing, node, None)
            return
        if type(rows) not in (list, tuple) or not rows:
            raise Unkeyable("rows to insert that are not a list or tuple")  # a generator is read once
        add(_MANY)
        add(len(rows))
        first = rows[0]
        if columns:
            width = len(columns)
            missing = self._left_out(node, columns=columns)
            add(width)
            for index, row in enumerate(rows):
                if type(row) not in (list, tuple) or len(row) != width:
                    raise Unkeyable("rows of another length than the columns named")
                if not self._plain_row(row):
                    self._row_values(row, range(width), node, index)
                if missing:
                    self._defaults(missing, node, index, width)
            return
        if type(first) is not dict:
            raise Unkeyable("rows that are not dicts without columns named")
        keys = list(first)
        missing = self._row_keys(first, node)
        # Keys named by text (the usual case) compare as lists; a field's == builds an expression.
        by_name = all(type(key) is str for key in keys)
        pick = operator.itemgetter(*keys) if len(keys) > 1 else None
        if by_name and pick is not None and not missing and self._uniform_rows(rows, keys, pick):
            return
        for index, row in enumerate(rows):
            if type(row) is not dict or len(row) != len(keys):
                raise Unkeyable("rows naming other columns")
            if by_name:
                if list(row) != keys:
                    raise Unkeyable("rows naming other columns")
            else:
                for key, other in zip(keys, row, strict=True):
                    if key is not other and not (type(key) is str and key == other):
                        raise Unkeyable("rows naming other columns")
            if pick is None or not self._plain_row(pick(row)):
                self._row_values(row, keys, node, index)
            if missing:
                self._defaults(missing, node, index)

    def _uniform_rows(self, rows: Any, keys: list[Any], pick: Callable[[Any], Any]) -> bool:
        """Dict rows naming ``keys`` in order, each column's values of one common leaf type, walked at once.

        The key takes that one tuple of types for every row, the leaves all
        the values, row by row: what :meth:`_plain_row` of each row would
        give the leaves, in a few loops that run in C. ``False`` (nothing
        walked) for any other rows, and when placing.
        """
        if self.placing or set(map(type, rows)) != {dict} or not all(map(keys.__eq__, map(list, rows))):
            return False
        values = list(map(pick, rows))
        kinds = []
        for column in zip(*values, strict=True):
            types = set(map(type, column))
            if len(types) != 1:
                return False
            kinds.append(types.pop())
        if not _LEAF_TYPES.issuperset(kinds):
            return False
        self._add(_UNIFORM)
        self._add(tuple(kinds))
        self.leaves.extend(itertools.chain.from_iterable(values))
        return True

    def _plain_row(self, values: Any) -> bool:
        """A row's values all of the common leaf types, walked at once: the key takes their types
        as one tuple, the leaves the values. ``False`` (nothing walked) otherwise, and when placing.
        """
        if self.placing:
            return False
        kinds = tuple(map(type, values))
        if not _LEAF_TYPES.issuperset(kinds):
            return False
        self._add(kinds)
        self.leaves.extend(values)
        return True

    def _row_keys(self, row: dict[Any, Any], node: Any) -> list[Any]:
        """The columns a dict row names, into the key; returns the fields with defaults it leaves out."""
        add = self._add
        add(len(row))
        for key in row:
            self.structure(key)
        return self._left_out(node, row=row)

    def _left_out(self, node: Any, row: dict[Any, Any] | None = None, columns: Any = None) -> list[Any]:
        """The fields with defaults that a dict ``row``, or the ``columns`` named apart, leave out.

        Into the key, in the order peewee calls their defaults (the order of the
        columns it writes). A row names a field as peewee looks it up: by the
        field, its name or its column name; of the columns, a name is the
        table's field of that name.
        """
        model = node.__dict__.get("model")
        defaults = model._meta.defaults if model is not None else None
        if not defaults:
            return []
        if row is not None:
            missing = [
                field
                for field in defaults
                if field not in row and field.name not in row and field.column_name not in row
            ]
        else:
            table = node.__dict__["table"]
            seen = set()
            for column in columns:
                if isinstance(column, str):
                    column = getattr(table, column, None)
                    if column is None:
                        raise Unkeyable("a column name the table does not have")
                seen.add(column)
            missing = [field for field in defaults if field not in seen]
        if missing:
            missing.sort(key=lambda field: field._sort_key)
            self._add(_DEFAULTS)
            for field in missing:
                self.node(field)
        return missing

    def _defaults(self, missing: list[Any], node: Any, index: int | None, width: int | None = None) -> None:
        """The defaults of the ``missing`` fields for one row (row ``index`` of many, or the one dict).

        ``width``: the row is a tuple of that many columns, and peewee reads the
        defaults as the values after them.
        """
        defaults = node.__dict__["model"]._meta.defaults
        reuse = self._reuse
        for position, field in enumerate(missing):
            if reuse is not None:
                value = next(reuse)
            else:
                value = defaults[field]
                if callable(value):
                    value = value()
                self.filled.append((index, field, value))
            if isinstance(value, _Node) or _is_model(value):
                raise Unkeyable("a default that is SQL")
            if index is None:
                path: tuple[Any, ...] = (field,)
            else:
                path = (index, field if width is None else width + position)
            self._leaf(value, node, "_insert", path)

    def _row_values(self, row: Any, keys: Any, node: Any, index: int | None) -> None:
        """The values of one row to insert (row ``index`` of many, or the one dict)."""
        add = self._add
        leaf = self.leaves.append
        placing = self.placing
        for key in keys:
            value = row[key]
            cls = type(value)
            if cls in _LEAF_TYPES and not placing:
                # The common values, at the cost of a set look-up: an insert_many() has hundreds.
                add(cls)
                leaf(value)
            elif value is None:
                add(None)
            elif isinstance(value, _Node) and not isinstance(value, _Model):
                self.node(value)
            elif _is_model(value):
                raise Unkeyable("a model class among the values to insert")
            else:
                # A model instance too: peewee binds it through a foreign key's converter,
                # else writes SQL; the shape's plan tells which.
                self._leaf(value, node, "_insert", (key,) if index is None else (index, key))

    def structure(self, value: Any) -> None:
        """A value that shapes the SQL: in the key as it is, by identity, or walked."""
        cls = type(value)
        if cls in _PLAIN:
            if cls is not str and value is not None:
                # True == 1 == 1.0, where peewee may tell them apart (is False, "1.0").
                self._add(cls)
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
        elif cls is types.FunctionType and value.__closure__ is None and value.__kwdefaults__ is None:
            # A lambda written inline in a query (``.python_value(lambda s: s.split(","))``)
            # is a new function at each call, doing what the last one did: the same code,
            # the same module, defaults that are the same objects, no variables of an
            # enclosing call. Keyed by identity, each call would make a new shape and
            # crowd every other statement out of the cache. The entry holds the first
            # function, so its code and defaults: their ids stay theirs.
            add = self._add
            add(_FUNCTION)
            add(id(value.__code__))
            add(id(value.__globals__))
            defaults = value.__defaults__
            add(None if defaults is None else tuple(map(id, defaults)))
            self.holds.append(value)
        elif cls is types.MethodType:
            # A bound method is made at each attribute look-up: its function and object are what it is.
            add = self._add
            add(_METHOD)
            add(id(value.__func__))
            add(id(value.__self__))
            self.holds.append(value)
        else:
            # A class, a function of an enclosing call's variables, a converter: compared by identity.
            self._add(_ID)
            self._add(id(value))
            self.holds.append(value)


def _table_description(table: Any) -> tuple[Any, ...] | None:
    """What the SQL of a ``peewee.Table`` depends on, or ``None`` if it holds values of other kinds.

    A table made at each call (``Table(f"events_{day}")``, a helper that
    builds its tables) is a new object each time: keyed by identity, each
    call would compile anew and crowd every other statement out of the cache.
    Its SQL is its path and alias (``__sql__``), and for an insert its columns
    and primary key. Two tables peewee's hash calls equal are one source to
    peewee's alias manager, as one table used twice is: the hash is in the
    description, so the two are one source in the key too. The model is kept
    by identity, as peewee's hash does.
    """
    attributes = table.__dict__
    columns = attributes.get("_columns")
    if columns is not None:
        if type(columns) not in (list, tuple) or any(type(name) is not str for name in columns):
            return None
        columns = tuple(columns)
    primary_key = attributes.get("_primary_key")
    path = attributes.get("_path")
    alias = attributes.get("_alias")
    if (
        type(table) is not peewee.Table
        or (primary_key is not None and type(primary_key) is not str)
        or type(path) is not tuple
        or any(type(part) is not str for part in path)
        or (alias is not None and type(alias) is not str)
    ):
        return None
    model = attributes.get("_model")
    return (attributes.get("_hash"), path, alias, columns, primary_key, None if model is None else id(model))


def walk(query: Any, placing: bool = False, defaults: list[tuple[Any, Any, Any]] | None = None) -> Walk:
    """The :class:`Walk` of ``query``; :class:`Unkeyable` if any part of it is not known.

    ``placing``: note where each leaf is, for :func:`slot_in`. ``defaults``:
    the ``filled`` defaults of an earlier walk of the same query, taken again.
    """
    if type(query) not in STATEMENTS:
        raise Unkeyable(f"a statement of class {type(query).__name__}")
    result = Walk(placing, defaults)
    try:
        result.node(query)
    except RecursionError:
        raise Unkeyable("a query nested too deep") from None
    result.key = tuple(result.key)
    return result


# -- how a node of each class is walked -----------------------------------------

#: The walk of each node class (its exact type), found once per class by _handler_for.
_HANDLERS: dict[type, Callable[[Walk, Any], None]] = {}
#: The walk of each node layout: class and attribute names in order, made by _layout_walker.
_LAYOUTS: dict[tuple[type, tuple[str, ...]], Callable[[Walk, Any, dict[str, Any]], None]] = {}


def _handler_for(cls: type) -> Callable[[Walk, Any], None]:
    """How to walk a node of class ``cls``: by its layout, as a field, ..., or not at all."""
    if cls in _SPECS:
        return _by_layout
    if issubclass(cls, _Field):
        sql = cls.__sql__
        if sql is _Field.__sql__:
            return Walk.field
        if sql is _FieldAlias.__sql__:
            return Walk.field_alias
    special: dict[type, Callable[[Walk, Any], None]] = {
        _ModelAlias: Walk.model_alias,
        peewee.Value: Walk.value,
        peewee.Table: Walk.table,
    }
    if cls in special:
        return special[cls]
    message = f"a node of class {cls.__module__}.{cls.__qualname__}"

    def unknown(walk: Walk, node: Any) -> None:
        raise Unkeyable(message)

    return unknown


def _by_layout(walk: Walk, node: Any) -> None:
    attributes = node.__dict__
    layout = (type(node), tuple(attributes))
    walker = _LAYOUTS.get(layout)
    if walker is None:
        walker = _LAYOUTS[layout] = _layout_walker(*layout)
    walker(walk, node, attributes)


class _Layout:
    """In a key, a node's class and the names of its attributes in order: what follows is theirs."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return f"<{self.name}>"


#: How _layout_walker walks an attribute of each kind (see _SPECS), its value in ``v``.
_ATTRIBUTE_CODE = {
    "s": "if v is None or type(v) is str:\n    add(v)\nelse:\n    walk.structure(v)",
    "o": "if v is None:\n    add(None)\nelse:\n    walk.operand(v, node, {name!r}, ())",
    "a": "if v is None:\n    add(None)\nelse:\n    walk.atoms(v, node, {name!r})",
    "u": "if v is None:\n    add(None)\nelse:\n    walk.update(v, node, {name!r}, True)",
    # ON CONFLICT ... DO UPDATE: peewee writes an instance there as SQL.
    "c": "if v is None:\n    add(None)\nelse:\n    walk.update(v, node, {name!r}, False)",
    "r": "if v is None:\n    add(None)\nelse:\n    walk.inserted(v, node)",
    "n": "if type(v) is int:\n    add(NUMBER)\n    add(v)\nelif v is None:\n    add(None)\n"
    "else:\n    walk.operand(v, node, {name!r}, ())",
    "z": "if type(v) is int and v == 0:\n    add(NUMBER)\n    add(0)\nelif v is None:\n    add(None)\n"
    "else:\n    walk.operand(v, node, {name!r}, ())",
}


def _layout_walker(cls: type, names: tuple[str, ...]) -> Callable[[Walk, Any, dict[str, Any]], None]:
    """The walk of a node of class ``cls`` whose attributes are ``names``, in this order.

    Generated code, one statement per attribute: a node's class and its
    attribute names are one object in the key (a :class:`_Layout`), not one
    entry each, and no attribute's kind is looked up at each walk. Two nodes
    built the same way list their attributes in the same order; built
    otherwise, they have another layout, so another key for the same SQL,
    never one key for two.
    """
    spec = _SPECS[cls]
    unknown = [name for name in names if name not in spec]
    if unknown:
        message = f"{cls.__name__} with an attribute {unknown[0]!r}"

        def refuse(walk: Walk, node: Any, attributes: dict[str, Any]) -> None:
            raise Unkeyable(message)

        return refuse
    lines = ["def walker(walk, node, attributes):", "    add = walk._add", "    add(LAYOUT)"]
    for name in names:
        how = spec[name]
        if how == "i":
            continue
        lines.append(f"    v = attributes[{name!r}]")
        lines.extend("    " + line for line in _ATTRIBUTE_CODE[how].format(name=name).splitlines())
    namespace: dict[str, Any] = {"LAYOUT": _Layout(f"{cls.__name__}({', '.join(names)})"), "NUMBER": _NUMBER}
    # Code of ours: only attribute names found in _SPECS reach it (others are refused above).
    exec("\n".join(lines), namespace)
    walker: Callable[[Walk, Any, dict[str, Any]], None] = namespace["walker"]
    return walker


def _replaced(container: Any, path: tuple[Any, ...], slot: Slot) -> Any:
    """A copy of ``container`` with the item at ``path`` (indices, dict keys) made ``slot``."""
    head, rest = path[0], path[1:]
    if isinstance(container, dict):
        copy = dict(container)
        copy[head] = _replaced(container[head], rest, slot) if rest else slot
        return copy
    items = list(container)  # a set or range too, in the order the walk saw
    if head == len(items) and not rest:
        items.append(slot)  # a default after a tuple row's values (Walk._defaults), in order
    else:
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
