"""Running one peewee query asynchronously.

peewee writes the SQL and builds the results; we only run the statement. Each
function below follows the sync method of peewee named in its docstring, with
the driver call awaited: the database runs the query where its intent puts it
and compiles it there (:meth:`AsyncDatabase._execute
<peewee_async.databases.base.AsyncDatabase._execute>`), the rows come back as
a :class:`~peewee_async.cursor.FetchedCursor`, and peewee's cursor wrapper and
``handle_result`` turn them into what the sync ``query.execute()`` returns.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

import peewee

from . import compiler, row_plans, shapes
from .cursor import FetchedCursor
from .databases.base import AsyncDatabase
from .errors import WrongDatabaseError
from .intent import Intent


def database_of(query: Any, expected: AsyncDatabase | None = None) -> AsyncDatabase:
    """The async database that runs ``query``, with an error naming the fix if there is none.

    A query runs on the database its model is bound to. ``expected`` (a
    Manager's database) runs it instead when the model is bound to none, or
    to another database of the same family (PostgreSQL, MySQL, SQLite); a
    model bound to a database of another family is an error.
    """
    if not isinstance(query, peewee.BaseQuery):
        raise TypeError(_not_a_query(query))
    return _check_database(getattr(query, "_database", None), expected)


def database_of_model(model: Any, expected: AsyncDatabase | None = None) -> AsyncDatabase:
    """:func:`database_of` a query of ``model`` (same errors), without building the query."""
    return _check_database(model._meta.database, expected)


def _check_database(bound: Any, expected: AsyncDatabase | None) -> AsyncDatabase:
    # peewee.DatabaseProxy is a Proxy too; 0.x applications bind models to either.
    if isinstance(bound, peewee.Proxy):
        bound = bound.obj
    if bound is None:
        bound = expected
    elif expected is not None and bound is not expected:
        if isinstance(bound, AsyncDatabase) and bound.family == expected.family:
            # As in 0.x: a Manager runs the queries of models bound to another
            # database of its kind (a Manager per database, shard or replica
            # for one set of model definitions).
            return expected
        raise WrongDatabaseError(
            f"The query's model is bound to {_describe(bound)}, not to this manager's "
            f"{expected.describe()}. Bind the model to the manager's database "
            "(class Meta: database = ...) or run the query through a Manager of its own database."
        )
    if bound is None:
        raise WrongDatabaseError(
            "The query is bound to no database. Give its model a database "
            "(class Meta: database = ...) or run it through a Manager."
        )
    if not isinstance(bound, AsyncDatabase):
        raise WrongDatabaseError(
            f"{_describe(bound)} is a sync peewee database. Use the database classes of "
            "peewee_async (e.g. peewee_async.PostgresqlDatabase) to run queries asynchronously."
        )
    return bound


def _not_a_query(value: Any) -> str:
    if isinstance(value, peewee.Model):
        got = f"a {type(value).__name__} instance"
    elif isinstance(value, type) and issubclass(value, peewee.Model):
        got = f"the model class {value.__name__}"
    else:
        got = repr(value)
    return (
        f"execute() takes a query, got {got}. Pass a query such as Model.select(), "
        "Model.insert(...), Model.update(...) or Model.delete(); to save an instance use "
        "`await objects.update(obj)` (or `objects.create(Model, ...)` for a new row), to "
        "delete one `await objects.delete(obj)`."
    )


def _describe(database: Any) -> str:
    if hasattr(database, "describe"):
        return str(database.describe())
    return f"{type(database).__name__}({getattr(database, 'database', None)!r})"


def execute(database: AsyncDatabase, query: Any) -> Coroutine[Any, Any, Any]:
    """Run any peewee query; the result is what sync ``query.execute()`` gives, fully read.

    select, compound select and raw query: a list of rows of the query's row
    type (model instances, dicts, tuples, named tuples); insert: the new
    primary key (or a list of returned rows); update and delete: the row count
    (or a list of returned rows).

    Not a coroutine itself but the run of the query, to await: one coroutine
    layer less between the caller and the driver.
    """
    if isinstance(query, peewee.Insert):
        prepare_insert(database, query)
        return _execute_write(database, query)
    if isinstance(query, peewee._WriteQuery):
        return _execute_write(database, query)
    return _execute_select(database, query)


async def _execute_select(database: AsyncDatabase, query: Any) -> list[Any]:
    """``BaseQuery._execute``: rows through the query's own cursor wrapper."""
    if getattr(query, "_load_tree", None):
        raise NotImplementedError(
            "with_related() loads its relations with more sync queries; run the query with "
            "`await objects.prefetch(query, RelatedModel)` instead."
        )
    intent = Intent.READ if database._replicas is None else read_intent(query)
    compiled = _compiled(database, query)
    if compiled is None:
        cursor = await database._execute(intent, query)  # compiled once the pool is open
    else:
        sql, params, shape = compiled
        cursor = await database._execute(intent, sql, params)
        if shape is not None:
            return _keep(query, cursor, built_rows(query, cursor, shape))
    build = shapes.select_row_builder(database, query)
    if build is None:
        return _fill(query, cursor)
    # A plain model select: the same instances as peewee's wrapper makes, made directly.
    return _keep(query, cursor, row_plans.build_paused(build, cursor.rows))


def _compiled(database: AsyncDatabase, query: Any) -> tuple[str, list[Any], compiler.Shape | None] | None:
    """SQL, parameters and :class:`~peewee_async.compiler.Shape` of ``query``, walked once.

    From the statement cache; else compiled by peewee, with no shape (not
    through ``compile_query``, which would walk the query again); ``None``
    while the server version is unknown: the database compiles the query
    once its pool is open.
    """
    found = compiler.lookup(database, query)
    if found is not None:
        return found
    if database.server_version is None:
        return None
    sql, params = compiler.peewee_compile(database, query)
    return sql, params, None


def built_rows(
    query: Any, cursor: FetchedCursor, shape: compiler.Shape, rows_of: Callable[[Any], Any] | None = None
) -> list[Any]:
    """The rows of ``cursor``, a result of ``shape``, as peewee's wrapper of ``query`` makes them.

    ``rows_of(query)``, if given, is the query whose row type the result has
    (``query.tuples()`` for a scalar), made only when the shape's rows are
    planned or verified.
    """
    if not cursor.rows:
        return []  # nothing to build (and asyncpg describes no columns of an empty result)
    plan = shape.rows
    if (
        plan is None
        or plan.names != row_plans.column_names(cursor.description)
        or plan.constructor is not getattr(query, "_constructor", None)
    ):
        plan = shape.rows = row_plans.plan_rows(query if rows_of is None else rows_of(query), cursor)
    rows: list[Any] = row_plans.build_paused(plan.build, cursor.rows)
    if compiler.VERIFY:
        row_plans.verify_rows(query if rows_of is None else rows_of(query), cursor, rows)
    return rows


def _keep(query: Any, cursor: FetchedCursor, rows: list[Any]) -> list[Any]:
    """``rows`` of ``query``, kept in its cursor wrapper, filled, for iterating the query later."""
    return _kept(query, query._get_cursor_wrapper(cursor), rows)


def _kept(query: Any, wrapper: Any, rows: list[Any]) -> list[Any]:
    """``rows`` of ``query``, kept in its cursor ``wrapper``, filled, for iterating the query later."""
    wrapper.row_cache = rows
    wrapper.count = len(rows)
    wrapper.populated = True
    query._cursor_wrapper = wrapper
    return list(rows)


def read_intent(query: Any, intent: Intent = Intent.READ) -> Intent:
    """``intent`` for a query that only reads; WRITE for one a replica cannot run.

    That is a select that locks rows (``for_update()``), or raw SQL that is
    not a plain SELECT (``Model.raw('UPDATE ... RETURNING ...')``). A select
    calling a function that writes cannot be told apart: run it inside
    ``reads_on_primary()``.
    """
    if getattr(query, "_for_update", None):
        return Intent.WRITE
    if isinstance(query, peewee.RawQuery):
        sql: str = getattr(query, "_sql", "")
        words = sql.lstrip(" \t\r\n(").split(None, 1)
        if not words or words[0].upper() not in ("SELECT", "VALUES", "TABLE", "SHOW"):
            return Intent.WRITE
    return intent


def _fill(query: Any, cursor: FetchedCursor) -> list[Any]:
    wrapper = query._get_cursor_wrapper(cursor)
    row_plans.build_paused(lambda rows: wrapper.fill_cache(), cursor.rows)  # peewee's wrapper reads them
    # Iterating the query later reads this cache instead of running it again.
    query._cursor_wrapper = wrapper
    return list(wrapper.row_cache)


def prepare_insert(database: AsyncDatabase, query: Any) -> None:
    """Set the RETURNING clause of an insert as ``Insert._execute`` would on ``database``."""
    if query._as_rowcount:
        # A RETURNING clause would change the row count on some databases.
        if not query._return_cursor:
            query._returning = None
    elif query._returning is None and database.returning_clause:
        # peewee sets this when the query is built, if the model had a
        # database then; a model bound to none gets it here.
        if isinstance(query, peewee.ModelInsert):
            returning = query.model._meta.get_primary_keys() or None
        else:
            returning = (query.table.primary_key,) if query.table._primary_key else None
        if returning:
            query._returning = returning
            query._row_type = peewee.ROW.TUPLE


async def _execute_write(database: AsyncDatabase, query: Any) -> Any:
    """``_WriteQuery._execute`` and ``handle_result``: a row count, a key, or returned rows."""
    shape = None
    try:
        # Returned rows (the keys of an insert_many, RETURNING's columns) are
        # built by the shape's row plan, as a select's are.
        compiled = _compiled(database, query) if query._returning else None
        if compiled is None:
            cursor = await database._execute(Intent.WRITE, query)
        else:
            sql, params, shape = compiled
            cursor = await database._execute(Intent.WRITE, sql, params)
    except peewee.Insert.DefaultValuesException:
        return None  # peewee's answer for an insert with nothing to insert
    if not query._returning:
        return query.handle_result(database, cursor)
    wrapper = query._get_cursor_wrapper(cursor)
    query._cursor_wrapper = wrapper
    result = query.handle_result(database, wrapper)
    if result is not wrapper:
        return result
    if shape is None:
        wrapper.fill_cache()
        return list(wrapper.row_cache)
    return _kept(query, wrapper, built_rows(query, cursor, shape))
