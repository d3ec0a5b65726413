"""Database URLs name the async classes and pass their arguments on."""

import pytest

import peewee_async
import peewee_asyncext
from peewee_async import db_url


@pytest.mark.parametrize(
    ("url", "cls"),
    [
        ("sqlite:///app.db", peewee_async.SqliteDatabase),
        ("postgres://u@h/db", peewee_async.PostgresqlDatabase),
        ("postgresql+pool://u@h/db", peewee_async.PooledPostgresqlDatabase),
        ("postgresext://u@h/db", peewee_asyncext.PostgresqlExtDatabase),
        ("postgresqlext+pool://u@h/db", peewee_asyncext.PooledPostgresqlExtDatabase),
        ("mysql://u@h/db", peewee_async.MySQLDatabase),
        ("mysql+pool://u@h/db", peewee_async.PooledMySQLDatabase),
        ("mysql+asyncmy://u@h/db", peewee_async.AsyncmyDatabase),
        ("mysql+asyncmy+pool://u@h/db", peewee_async.PooledAsyncmyDatabase),
    ],
)
def test_scheme_picks_the_async_class(url, cls):
    database = db_url.connect(url)
    assert type(database) is cls


def test_url_parts_and_query_become_arguments():
    database = db_url.connect("postgres+pool://bob:secret@db.example:6543/app?max_connections=7")
    assert database.database == "app"
    expected = {"user": "bob", "password": "secret", "host": "db.example", "port": 6543}
    assert database.connect_params == expected
    assert database.max_connections == 7
    assert db_url.connect("sqlite:///app.db", max_connections=3).max_connections == 3


def test_unknown_scheme_names_the_known_ones():
    with pytest.raises(ValueError, match=r"Unsupported database URL scheme 'oracle'.*mysql\+pool"):
        db_url.connect("oracle://u@h/db")


def test_missing_database_name_says_where_it_goes():
    with pytest.raises(ValueError, match=r"names no database.*postgres://user@host:port/name"):
        db_url.connect("postgres://u@h")
