"""Database URLs: one string from the environment names the async database to use.

It reads URLs the way ``playhouse.db_url`` does, with the same schemes, and
returns the async classes of this package::

    database = peewee_async.db_url.connect(os.environ["DATABASE_URL"])

==========================================  =======================================
scheme                                      class
==========================================  =======================================
``sqlite:///path.db``                       :class:`~peewee_async.SqliteDatabase`
``postgres://``, ``postgresql://``          :class:`~peewee_async.PostgresqlDatabase`
``postgres+pool://``, ``postgresql+pool://``  :class:`~peewee_async.PooledPostgresqlDatabase`
``postgresext://``, ``postgresqlext://``    :class:`peewee_asyncext.PostgresqlExtDatabase`
``postgresext+pool://`` (``postgresqlext``)  :class:`peewee_asyncext.PooledPostgresqlExtDatabase`
``mysql://``                                :class:`~peewee_async.MySQLDatabase`
``mysql+pool://``                           :class:`~peewee_async.PooledMySQLDatabase`
``mysql+asyncmy://``                        :class:`~peewee_async.AsyncmyDatabase`
``mysql+asyncmy+pool://``                   :class:`~peewee_async.PooledAsyncmyDatabase`
==========================================  =======================================

Query string arguments become constructor arguments, converted as peewee
converts them (``?max_connections=10&register_hstore=false``), TLS settings
included (``?sslmode=verify-full&sslrootcert=/etc/ssl/db-ca.pem``;
``?ssl_ca=/etc/ssl/db-ca.pem`` for MySQL). A URL that an error message names
has its password replaced by ``***``.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlparse

from playhouse.db_url import parseresult_to_dict

from .databases import AsyncDatabase, registry
from .redact import redact_url

__all__ = ["connect", "parse", "schemes"]

#: URL scheme -> database class of ``peewee_async`` (read from the table of
#: :mod:`peewee_async.databases.registry`); :func:`connect` also knows those of ``peewee_asyncext``.
schemes: dict[str, type[AsyncDatabase]] = registry.schemes()


def _all_schemes() -> dict[str, type[AsyncDatabase]]:
    # Imported here: peewee_asyncext imports this package, and adds its rows to the table.
    import peewee_asyncext  # noqa: F401

    return {**registry.schemes(), **schemes}


def parse(url: str, unquote_password: bool = False) -> dict[str, Any]:
    """The constructor arguments a URL stands for (``database``, ``host``, ``user``, ...)."""
    return dict(parseresult_to_dict(urlparse(url), unquote_password))


def connect(url: str, unquote_password: bool = False, **connect_params: Any) -> AsyncDatabase:
    """A new async database for ``url``; keyword arguments override the URL's.

    Example::

        database = connect("postgresql+pool://postgres@127.0.0.1:5432/app?max_connections=10")
    """
    parsed = urlparse(url)
    known_schemes = _all_schemes()
    database_class = known_schemes.get(parsed.scheme)
    if database_class is None:
        known = ", ".join(sorted(known_schemes))
        raise ValueError(
            f"Unsupported database URL scheme {parsed.scheme!r} in {redact_url(url)!r}; use one of: {known}."
        )
    params = parse(url, unquote_password)
    params.update(connect_params)
    if not params.get("database"):
        raise ValueError(
            f"{redact_url(url)!r} names no database. Put it in the path, "
            f"e.g. '{parsed.scheme}://user@host:port/name'."
        )
    return database_class(**params)
