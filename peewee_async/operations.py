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

from .execution import database_of, execute

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


async def get(database: AsyncDatabase | None, source: Any, *args: Any, **kwargs: Any) -> Any:
    """``Model.get``: the first matching row, or the model's ``DoesNotExist``."""
    query = select_for_get(source, *args, **kwargs)
    rows = await execute(database_of(query, database), query)
    if not rows:
        sql, params = query.sql()
        raise query.model.DoesNotExist(
            f"{query.model} instance matching query does not exist:\nSQL: {sql}\nParams: {params}"
        )
    return rows[0]


async def create(database: AsyncDatabase | None, model: type[M], **data: Any) -> M:
    """``Model.create``: a new instance, inserted, its primary key set."""
    instance = model(**data)
    await insert_instance(database, instance)
    return instance


async def insert_instance(database: AsyncDatabase | None, instance: Any) -> None:
    """``Model.save(force_insert=True)`` without calling an overridden ``save()``."""
    meta = instance._meta
    field_dict = instance.__data__.copy()
    pk_field = meta.primary_key if meta.primary_key is not False else None
    pk_value = instance._pk if pk_field is not None else None
    instance._populate_unsaved_relations(field_dict)
    if meta.auto_increment and pk_value is None:
        field_dict.pop(meta.primary_key.name, None)
    query = type(instance).insert(**field_dict)
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
    query = type(instance).update(**field_dict).where(instance._pk_expr())
    rows: int = await execute(database_of(query, database), query)
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
    db = database_of(type(instance).select(), database)
    if not recursive:
        query = type(instance).delete().where(instance._pk_expr())
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
    clone = query.order_by().alias("_wrapped")
    if clear_limit:
        clone._limit = clone._offset = None
    if getattr(clone, "_count_can_project_one", lambda: False)():
        clone = clone.select(peewee.SQL("1"))
    counting = peewee.Select([clone], [peewee.fn.COUNT(peewee.SQL("1"))])
    result = await scalar(database_of(query, database), counting)
    return int(result or 0)


async def scalar(database: AsyncDatabase | None, query: Any, as_tuple: bool = False) -> Any:
    """``SelectBase.scalar``: the first column of the first row (the whole row with ``as_tuple``)."""
    rows = await execute(database_of(query, database), query.tuples().limit(1))
    if not rows:
        return None
    return rows[0] if as_tuple else rows[0][0]
