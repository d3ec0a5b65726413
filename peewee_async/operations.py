"""Model operations built on :func:`~peewee_async.execution.execute`.

Each follows the peewee method it is named after (``Model.get``,
``Model.create``, ``Model.save``, ``Model.delete_instance``,
``Model.get_or_create``, ``prefetch``, ``SelectBase.count``/``scalar``) with
every query awaited. The :class:`~peewee_async.Manager` and the module-level
functions of the low-level API are both thin doors onto these.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, TypeVar

import peewee

from . import compiler, shapes
from .execution import built_rows, database_of, database_of_model, execute, read_intent
from .intent import Intent

if TYPE_CHECKING:
    from .databases.base import AsyncDatabase

M = TypeVar("M", bound=peewee.Model)


def select_for_get(source: Any, *args: Any, **kwargs: Any) -> Any:
    """The one-row query of ``get(source, *args, **kwargs)``, as ``Model.get`` builds it."""
    query: Any
    if isinstance(source, type) and issubclass(source, peewee.Model):
        query = source.select()
        model = source
    elif isinstance(source, peewee.SelectBase) and hasattr(source, "model"):
        query = source
        model = source.model
    else:
        raise TypeError(
            f"get() takes a model class or a model select query, got {source!r}: e.g. "
            "`await objects.get(User, id=1)` or `await objects.get(User.select().where(...))`."
        )
    if args and len(args) == 1 and isinstance(args[0], int) and model._meta.auto_increment:
        query = query.where(model._meta.primary_key == args[0])
    elif args:
        query = query.where(*args)
    if kwargs:
        query = query.filter(**kwargs)
    return query.paginate(1, 1)


#: The statements made of a query: its first row (``get``), its count, its first value.
FIRST_ROW = compiler.Derived("first row", lambda query: query.paginate(1, 1))
COUNTS = {
    clear_limit: compiler.Derived(
        f"count (clear_limit={clear_limit})", lambda query, clear=clear_limit: _count_of(query, clear)
    )
    for clear_limit in (False, True)
}
SCALAR = compiler.Derived("scalar", lambda query: query.tuples().limit(1))
EXISTS = compiler.Derived("exists", lambda query: _exists_of(query).tuples().limit(1))


_EXISTS_SELECTS = int(getattr(peewee, "__version__", "4").split(".")[0]) >= 4


def _exists_of(query: Any) -> Any:
    """The statement of peewee's ``query.exists()``, which differs between its versions.

    peewee 4: ``SELECT EXISTS (query)``, a model's whole row selected as ``1``.
    peewee 3.17: the query itself selecting ``1``, one row; a compound select
    inside ``SELECT 1 FROM (... LIMIT 1)``.
    """
    if _EXISTS_SELECTS:
        if getattr(query, "_is_default", False):
            query = query.select(peewee.SQL("1"))
        return peewee.Select(columns=[peewee.fn.EXISTS(query)])
    if isinstance(query, peewee.CompoundSelectQuery):
        return peewee.Select((query.limit(1),), (peewee.SQL("1"),))
    clone = query.columns(peewee.SQL("1"))
    clone._limit = 1
    clone._offset = None
    return clone


def _count_of(query: Any, clear_limit: bool) -> Any:
    # One row whatever happens: no LIMIT, which would keep SQLite from its fast count.
    flat = _flat_count(query, clear_limit)
    return (_counting(query, clear_limit) if flat is None else flat).tuples()


def _tuples(query: Any) -> Any:
    return query.tuples()


async def _run_derived(db: AsyncDatabase, query: Any, derived: compiler.Derived) -> Any:
    """The cursor and shape of the statement ``derived`` makes of ``query``; ``None`` if it is not cached."""
    found = compiler.lookup(db, query, derived)
    if found is None:
        return None
    sql, params, shape = found
    intent = Intent.READ if db._replicas is None else read_intent(query)
    return await db._execute(intent, sql, params), shape


async def get(database: AsyncDatabase | None, source: Any, *args: Any, **kwargs: Any) -> Any:
    """``Model.get``: the first matching row, or the model's ``DoesNotExist``."""
    if (
        not args
        and not kwargs
        and type(source) is peewee.ModelSelect
        and not getattr(source, "_load_tree", None)
    ):
        db = database_of(source, database)
        ran = await _run_derived(db, source, FIRST_ROW)
        if ran is not None:
            cursor, shape = ran
            built = built_rows(source, cursor, shape)
            if not built:
                raise _does_not_exist(select_for_get(source))
            return built[0]
    if isinstance(source, type) and issubclass(source, peewee.Model):
        db = database_of_model(source, database)
        found = shapes.get_statement(db, source, args, kwargs)
        if found is not None:
            statement, values = found
            running = statement.run(db, Intent.READ, values)
            if running is not None:
                cursor = await running
                rows = cursor.rows
                if not rows:
                    raise _does_not_exist(select_for_get(source, *args, **kwargs))
                return statement.result(rows[:1])[0]
    query = select_for_get(source, *args, **kwargs)
    rows = await execute(database_of(query, database), query)
    if not rows:
        raise _does_not_exist(query)
    return rows[0]


def _does_not_exist(query: Any) -> peewee.DoesNotExist:
    sql, params = query.sql()
    return query.model.DoesNotExist(  # type: ignore[no-any-return]
        f"{query.model} instance matching query does not exist:\nSQL: {sql}\nParams: {params}"
    )


async def create(database: AsyncDatabase | None, model: type[M], **data: Any) -> M:
    """``Model.create``: a new instance, inserted, its primary key set."""
    instance = model(**data)
    await insert_instance(database, instance)
    return instance


_NOT_RUN = object()


async def insert_instance(database: AsyncDatabase | None, instance: Any) -> None:
    """``Model.save(force_insert=True)`` without calling an overridden ``save()``."""
    model = type(instance)
    meta = instance._meta
    field_dict = instance.__data__.copy()
    pk_field = meta.primary_key if meta.primary_key is not False else None
    pk_value = instance._pk if pk_field is not None else None
    instance._populate_unsaved_relations(field_dict)
    if meta.auto_increment and pk_value is None:
        field_dict.pop(meta.primary_key.name, None)
    db = database_of_model(model, database)
    pk: Any = _NOT_RUN
    statement = shapes.insert_statement(db, model, tuple(field_dict))
    if statement is not None:
        running = statement.run(db, Intent.WRITE, list(field_dict.values()))
        if running is not None:
            cursor = await running
            if statement.result is None:
                pk = db.last_insert_id(cursor, peewee.Insert.SIMPLE)
            else:  # RETURNING the primary key, read as peewee's tuple wrapper reads it
                rows = cursor.rows
                pk = statement.result.python_value(rows[0][0]) if rows else None
    if pk is _NOT_RUN:
        query = model.insert(**field_dict)
        pk = await execute(database_of(query, database), query)
    if pk_field is not None and pk is not None and (meta.auto_increment or pk_value is None):
        instance._pk = pk
        instance._dirty.discard(pk_field.name)
    instance._dirty -= set(field_dict)


async def update(database: AsyncDatabase | None, instance: Any, only: Any = None) -> int:
    """``Model.save()`` of a saved instance: an UPDATE of its fields (or ``only`` those).

    Like 0.x, it does not call an overridden ``save()``. With
    ``only_save_dirty`` in the model's Meta only changed fields are written,
    and nothing at all when none changed (the result is then 0).
    """
    meta = instance._meta
    field_dict = instance.__data__.copy()
    if only is not None:
        field_dict = instance._prune_fields(field_dict, only)
    elif meta.only_save_dirty:
        field_dict = instance._prune_fields(field_dict, instance.dirty_fields)
        if not field_dict:
            instance._dirty.clear()
            return 0
    instance._populate_unsaved_relations(field_dict)
    if meta.primary_key is False or instance._pk is None:
        raise ValueError(
            f"Cannot update {instance!r}: it has no primary key value. Insert it with "
            "`await objects.create(Model, ...)` first."
        )
    if meta.composite_key:
        for name in meta.primary_key.field_names:
            field_dict.pop(name, None)
    else:
        field_dict.pop(meta.primary_key.name, None)
    if not field_dict:
        raise ValueError("no data to save!")
    model = type(instance)
    db = database_of_model(model, database)
    rows: int | None = None
    pk = instance._pk
    statement = shapes.update_statement(db, model, tuple(field_dict)) if shapes.where_value(pk) else None
    if statement is not None:
        running = statement.run(db, Intent.WRITE, [*field_dict.values(), pk])
        if running is not None:
            cursor = await running
            rows = db.rows_affected(cursor)
    if rows is None:
        query = model.update(**field_dict).where(instance._pk_expr())
        rows = await execute(database_of(query, database), query)
    instance._dirty -= set(field_dict)
    return rows


async def delete(
    database: AsyncDatabase | None, instance: Any, recursive: bool = False, delete_nullable: bool = False
) -> int:
    """``Model.delete_instance``: delete the row, and with ``recursive`` its dependents first.

    Dependents on a nullable foreign key are set to NULL unless
    ``delete_nullable``. With ``recursive`` all statements run in one
    transaction, so a failure deletes nothing.
    """
    model = type(instance)
    db = database_of_model(model, database)
    if not recursive:
        pk = instance._pk
        statement = shapes.delete_statement(db, model) if shapes.where_value(pk) else None
        if statement is not None:
            running = statement.run(db, Intent.WRITE, [pk])
            if running is not None:
                cursor = await running
                return int(db.rows_affected(cursor))
        query = model.delete().where(instance._pk_expr())
        return int(await execute(db, query))
    from .transactions import Transaction

    async with Transaction(db, "atomic"):
        for condition, fk in instance.dependencies(exclude_null_children=not delete_nullable):
            model = fk.model
            if fk.null and not delete_nullable:
                await execute(db, model.update(**{fk.name: None}).where(condition))
            else:
                await execute(db, model.delete().where(condition))
        return int(await execute(db, type(instance).delete().where(instance._pk_expr())))


async def get_or_create(
    database: AsyncDatabase | None, model: type[M], defaults: dict[str, Any] | None = None, **kwargs: Any
) -> tuple[M, bool]:
    """``Model.get_or_create``: ``(instance, created)``; safe against a concurrent insert.

    If another task inserts the same unique values between our lookup and our
    insert, the insert fails with an ``IntegrityError`` inside its own
    savepoint/transaction and the row the other task made is returned.
    """
    from .transactions import Transaction

    query = model.select()
    for field, value in kwargs.items():
        query = query.where(getattr(model, field) == value)
    db = database_of(query, database)
    try:
        return await get(db, query), False
    except peewee.DoesNotExist:
        data = dict(kwargs, **(defaults or {}))
        try:
            async with Transaction(db, "atomic"):
                return await create(db, model, **data), True
        except peewee.IntegrityError as exc:
            try:
                # The row another task just committed: a replica may not have it yet.
                async with db.reads_on_primary():
                    return await get(db, query), False
            except peewee.DoesNotExist:
                raise exc from None


async def create_or_get(database: AsyncDatabase | None, model: type[M], **kwargs: Any) -> tuple[M, bool]:
    """Insert a row, or if a unique or primary key value of it exists, get that row.

    Returns ``(instance, created)``.
    """
    from .transactions import Transaction

    db = database_of(model.select(), database)
    try:
        async with Transaction(db, "atomic"):
            return await create(db, model, **kwargs), True
    except peewee.IntegrityError:
        lookup = []
        for name, value in kwargs.items():
            field = getattr(model, name)
            if field.unique or field.primary_key:
                lookup.append(field == value)
        if not lookup:
            raise
        async with db.reads_on_primary():  # a replica may not have the row yet
            return await get(db, model, *lookup), False


async def prefetch(database: AsyncDatabase | None, query: Any, *subqueries: Any, **kwargs: Any) -> list[Any]:
    """peewee's ``prefetch``: rows of ``query`` with related rows of each subquery attached."""
    db = database_of(query, database)
    if not subqueries:
        return list(await execute(db, query))
    prefetch_type = kwargs.pop("prefetch_type", peewee.PREFETCH_TYPE.WHERE)
    if kwargs:
        raise ValueError(f"Unrecognized arguments: {kwargs}")
    fixed_queries = peewee.prefetch_add_subquery(query, subqueries, prefetch_type)  # type: ignore[attr-defined]
    deps: dict[Any, dict[Any, Any]] = {}
    rel_map: dict[Any, list[Any]] = {}
    for pq in reversed(fixed_queries):
        query_model = pq.model
        if pq.fields:
            for rel_model in pq.rel_models:
                rel_map.setdefault(rel_model, []).append(pq)
        id_map = deps.setdefault(query_model, {})
        has_relations = bool(rel_map.get(query_model))
        for instance in await execute(db, pq.query):
            if pq.fields:
                pq.store_instance(instance, id_map)
            if has_relations:
                for rel in rel_map[query_model]:
                    rel.populate_instance(instance, deps[rel.model])
    return list(pq.query)


async def count(database: AsyncDatabase | None, query: Any, clear_limit: bool = False) -> int:
    """``SelectBase.count``: the number of rows ``query`` would return."""
    db = database_of(query, database)
    statement = shapes.count_statement(db, query, lambda plain: _count_of(plain, False))
    if statement is not None:
        running = statement.run(db, Intent.READ, ())
        if running is not None:
            return counted((await running).rows)
    ran = await _run_derived(db, query, COUNTS[bool(clear_limit)])
    if ran is not None:
        return counted(ran[0].rows)
    flat = _flat_count(query, clear_limit)
    result = await scalar(db, _counting(query, clear_limit) if flat is None else flat)
    return int(result or 0)


def counted(rows: Any) -> int:
    """The number a COUNT statement's ``rows`` hold (not converted: the driver's int), 0 for none."""
    return int((rows[0][0] if rows else None) or 0)


def existing(rows: Any) -> bool:
    """What an EXISTS statement's ``rows`` answer."""
    return bool(rows and rows[0][0])


_FLAT_COUNTABLE = (peewee.ModelSelect, peewee.Select)


def _flat_count(query: Any, clear_limit: bool) -> Any:
    """``SELECT COUNT(*) FROM ... WHERE ...``: the rows of ``query`` counted without a derived table.

    It counts the same rows as peewee's ``SELECT COUNT(1) FROM (SELECT 1 FROM
    ... WHERE ...) AS _wrapped`` wherever peewee itself selects ``1`` in the
    derived table (no GROUP BY, HAVING, window or DISTINCT) and nothing limits
    the rows (no LIMIT or OFFSET, or ``clear_limit``): the same FROM, joins
    and WHERE give the same rows. A select locking rows is left to peewee
    (an aggregate cannot lock them). ``None`` where that does not hold.
    """
    if type(query) not in _FLAT_COUNTABLE or not query._from_list or query._for_update:
        return None
    if not clear_limit and (query._limit is not None or query._offset is not None):
        return None
    if not _count_can_project_one(query):
        return None
    # COUNT(*), which counts what COUNT(1) counts: SQLite answers it from the
    # table's b-tree where it scans the table for COUNT(1).
    flat = query.order_by().select(peewee.fn.COUNT(peewee.SQL("*")))
    if clear_limit:
        flat._limit = flat._offset = None
    return flat


def _counting(query: Any, clear_limit: bool) -> Any:
    """The ``SELECT COUNT(1) FROM (query)`` that ``SelectBase.count`` runs."""
    clone = query.order_by().alias("_wrapped")
    if clear_limit:
        clone._limit = clone._offset = None
    if _count_can_project_one(clone):
        clone = clone.select(peewee.SQL("1"))
    return peewee.Select([clone], [peewee.fn.COUNT(peewee.SQL("1"))])


def _count_can_project_one(query: Any) -> bool:
    """Whether counting may select ``1`` instead of the query's columns, as peewee decides.

    Selecting ``1`` also keeps a join that selects two ``id`` columns valid as
    a derived table on MySQL. peewee 4 has the method; 3.17 checks inline.
    """
    method = getattr(query, "_count_can_project_one", None)
    if method is not None:
        return bool(method())
    try:
        return (
            query._having is None
            and query._group_by is None
            and query._windows is None
            and query._distinct is None
            and query._simple_distinct is not True
        )
    except AttributeError:  # compound queries take their columns from their operands
        return False


async def exists(database: AsyncDatabase | None, query: Any) -> bool:
    """``SelectBase.exists``: whether ``query`` returns any row."""
    if not isinstance(query, peewee.SelectBase):
        raise TypeError(
            f"exists() takes a select query, got {query!r}: e.g. `await objects.exists(User.select())`."
        )
    db = database_of(query, database)
    ran = await _run_derived(db, query, EXISTS)
    if ran is not None:
        rows = ran[0].rows
    else:
        rows = await execute(db, _exists_of(query).tuples().limit(1))
    return existing(rows)


async def scalar(database: AsyncDatabase | None, query: Any, as_tuple: bool = False) -> Any:
    """``SelectBase.scalar``: the first column of the first row (the whole row with ``as_tuple``)."""
    db = database_of(query, database)
    ran = await _run_derived(db, query, SCALAR)
    rows: Any
    if ran is not None:
        cursor, shape = ran
        rows = built_rows(query, cursor, shape, rows_of=_tuples)
    else:
        rows = await execute(db, query.tuples().limit(1))
    if not rows:
        return None
    return rows[0] if as_tuple else rows[0][0]
