"""The tests' tables on each server: made once in a run, emptied after each test.

Dropping and making the tables for every test cost most of a short test's time
(on PostgreSQL, 10 ms for three small tables, against well under 1 ms to empty
them and restart their ids), so a set of models a test binds keeps its tables
for the tests after it. A *place* (a server's test database) holds
``ALL_MODELS``, made first, and the sets tests bind beside it; a set naming a
table of one made before (a model class made anew for each test, or another
module's model of the same name) drops that one and those made after it, which
might point at it, and is made anew.

A set emptied after a test is known empty, and the next test that asks for it
starts at once. What makes that safe is :func:`forget_emptiness`, which the
conftest calls before each test that does not use the ``db`` fixture, whose
writes this module does not see.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import dataclass, field

import peewee

from peewee_async import AsyncDatabase, Manager

Models = tuple[type[peewee.Model], ...]


@dataclass
class _Place:
    made: list[Models] = field(default_factory=list)  # the first is the place's base set, ALL_MODELS
    empty: set[Models] = field(default_factory=set)


_places: dict[str, _Place] = {}


def prepare(database: AsyncDatabase, place: str, models: Sequence[type[peewee.Model]]) -> None:
    """The tables of ``models`` (in the order they depend on each other)
    at ``place``: made, or emptied if a test may have written to them since."""
    key = tuple(models)
    state = _places.setdefault(place, _Place())
    if key in state.made:
        if key not in state.empty:
            empty(database, place, models)
        state.empty.discard(key)
        return
    # Sets made after the first one naming a table of these might point at it: those go too.
    names = {_qualified(model) for model in models}
    clashing = [i for i, made in enumerate(state.made) if names & {_qualified(model) for model in made}]
    if clashing and clashing[0] == 0:
        raise AssertionError(f"{models} name a table of the place's base set, {state.made[0]}")
    gone = state.made[clashing[0] :] if clashing else []
    with _sync(database):
        for others in reversed(gone):
            with database.bind_ctx(others):
                database.drop_tables(others)
        with database.bind_ctx(models):
            database.drop_tables(models)
            database.create_tables(models)
    del state.made[len(state.made) - len(gone) :]
    state.made.append(key)
    state.empty.discard(key)


def empty(database: AsyncDatabase, place: str, *sets: Sequence[type[peewee.Model]]) -> None:
    """Delete every row of the tables of ``sets`` on ``database`` (a set may point at a later
    one, not at an earlier one).

    The ids of every set but the base one start at 1 again, as in the tables
    made anew for each test before; those of ``ALL_MODELS`` run on through a
    run, as they always did (restarting them costs MariaDB 3 ms a table).
    PostgreSQL takes all the statements in one trip.
    """
    state = _places.setdefault(place, _Place())
    with _sync(database):
        for models in sets:
            base = state.made[:1] == [tuple(models)]
            statements = [database.get_sql_context().sql(m.delete()).query()[0] for m in reversed(models)]
            if not base:
                statements += _restarting_ids(database, models)
            try:
                if isinstance(database, peewee.PostgresqlDatabase):
                    database.execute_sql("; ".join(statements))
                else:
                    for statement in statements:
                        database.execute_sql(statement)
            except peewee.DatabaseError:
                if base:
                    raise
                # The test dropped a table it was given (as the reference examples' clean-up
                # does): the set's tables go, to be made anew for the next test that binds it.
                database.close()
                with database.bind_ctx(models):
                    database.drop_tables(models)
                state.made.remove(tuple(models))
    state.empty.update(tuple(models) for models in sets)


def forget_emptiness() -> None:
    """Before a test whose writes this module does not see: every set is emptied before its next use."""
    for state in _places.values():
        state.empty.clear()


def _sync(database: AsyncDatabase) -> contextlib.AbstractContextManager[None]:
    """Sync queries allowed on ``database`` for a while, and its sync connection closed after."""
    return Manager(database).allow_sync()


def _restarting_ids(database: AsyncDatabase, models: Sequence[type[peewee.Model]]) -> list[str]:
    """Statements after which the next row of each table gets id 1 again, as in a table just made.

    SQLite needs none: peewee's AutoField is a plain INTEGER PRIMARY KEY,
    which takes the largest id plus one, and 1 in an empty table.
    """
    auto = [model for model in models if isinstance(model._meta.primary_key, peewee.AutoField)]
    if isinstance(database, peewee.PostgresqlDatabase):
        return [
            "SELECT setval(pg_get_serial_sequence('{}', '{}'), 1, false)".format(
                _qualified(model).replace("'", "''"), model._meta.primary_key.column_name.replace("'", "''")
            )
            for model in auto
        ]
    if isinstance(database, peewee.MySQLDatabase):
        quoted = (model._meta.table_name.replace("`", "``") for model in auto)
        return [f"ALTER TABLE `{name}` AUTO_INCREMENT = 1" for name in quoted]
    return []


def _qualified(model: type[peewee.Model]) -> str:
    name = '"{}"'.format(model._meta.table_name.replace('"', '""'))
    schema = model._meta.schema
    return f'"{schema}".{name}' if schema else name
