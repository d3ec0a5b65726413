"""TLS on every PostgreSQL and MySQL class, against the TLS servers of ``scripts/servers.py``.

Those servers hold a certificate for ``localhost`` only, signed by a CA made
at their start, and a user (``peewee_tls``) that may connect only over TLS
and only with its password. Each class, async side and sync side: full
verification connects and the server reports the session encrypted; another
CA, a host name the certificate does not hold, plaintext and a wrong password
fail; asking for TLS from the machine's own servers (which have none) fails
rather than going on in plaintext.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator, Iterator
from typing import Any

import peewee
import pytest

import peewee_async
import peewee_asyncext  # noqa: F401 - adds its classes to the table
from peewee_async import db_url
from peewee_async.databases import registry

from . import servers

CLASSES = {
    family: [e.database_class for e in registry.TABLE if e.family == family]
    for family in ("postgresql", "mysql")
}
SCHEMES = {e.database_class: e.schemes[0] for e in registry.TABLE}
PG_CLASSES = CLASSES["postgresql"]
MYSQL_CLASSES = CLASSES["mysql"]
PG_ENCRYPTED = "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()"
MYSQL_CIPHER = "SHOW STATUS LIKE 'Ssl_cipher'"


def test_every_class_is_covered() -> None:
    assert len(PG_CLASSES) == 12
    assert len(MYSQL_CLASSES) == 4


@pytest.fixture(scope="module")
def started() -> dict[str, Any]:
    return servers.script_servers()


@pytest.fixture
def certs(started: dict[str, Any]) -> dict[str, str]:
    return dict(started["certificates"])


def pg_settings(started: dict[str, Any], **overrides: Any) -> dict[str, Any]:
    server = started["postgresql-tls"]
    settings = {key: server[key] for key in ("host", "port", "user", "password")}
    return {**settings, "connect_timeout": 10, **overrides}


def mysql_settings(started: dict[str, Any], **overrides: Any) -> dict[str, Any]:
    server = started["mariadb-tls"]
    settings = {key: server[key] for key in ("host", "port", "user", "password")}
    return {**settings, "connect_timeout": 10, **overrides}


@pytest.fixture
def opened() -> Iterator[list[peewee_async.AsyncDatabase]]:
    """Databases made by a test, closed after it (both sides)."""
    made: list[peewee_async.AsyncDatabase] = []
    yield made
    for database in made:
        if not database.is_closed():
            database.close()


@pytest.fixture
async def closing(
    opened: list[peewee_async.AsyncDatabase],
) -> AsyncIterator[list[peewee_async.AsyncDatabase]]:
    yield opened
    for database in opened:
        await database.close_async()
    # A connection that failed to open closes its socket at the loop's next pass:
    # let it run before the test's loop is closed.
    await asyncio.sleep(0.01)


async def scalar(database: peewee_async.AsyncDatabase, sql: str) -> Any:
    cursor = await database.execute_sql_async(sql)
    return cursor.fetchall()[0][-1]


def sync_scalar(database: peewee_async.AsyncDatabase, sql: str) -> Any:
    database.connect(reuse_if_open=True)
    try:
        return database.execute_sql(sql).fetchall()[0][-1]
    finally:
        database.close()


async def connect_fails(database: peewee_async.AsyncDatabase, sql: str) -> str:
    with pytest.raises(peewee.OperationalError) as failure:
        await database.execute_sql_async(sql)
    return str(failure.value)


def sync_connect_fails(database: peewee_async.AsyncDatabase) -> str:
    with pytest.raises(peewee.OperationalError) as failure:
        database.connect()
    return str(failure.value)


# -- PostgreSQL --------------------------------------------------------------------


@pytest.mark.parametrize("cls", PG_CLASSES, ids=lambda c: c.__name__)
async def test_pg_verify_full_connects_encrypted_on_both_sides(
    cls: Any, started: dict[str, Any], certs: dict[str, str], closing: list[Any]
) -> None:
    database = servers.new_database(
        cls, **pg_settings(started, sslmode="verify-full", sslrootcert=certs["ca"])
    )
    closing.append(database)
    assert await scalar(database, PG_ENCRYPTED) is True
    assert sync_scalar(database, PG_ENCRYPTED) is True


@pytest.mark.parametrize("cls", PG_CLASSES, ids=lambda c: c.__name__)
async def test_pg_another_ca_fails_naming_sslrootcert(
    cls: Any, started: dict[str, Any], certs: dict[str, str], closing: list[Any]
) -> None:
    database = servers.new_database(
        cls, **pg_settings(started, sslmode="verify-full", sslrootcert=certs["other_ca"])
    )
    closing.append(database)
    message = await connect_fails(database, "SELECT 1")
    assert "certificate verify failed" in message
    assert "not signed by a CA that sslrootcert names" in message
    assert "sslmode='verify-full'" in message
    assert "certificate verify failed" in sync_connect_fails(database)


@pytest.mark.parametrize("cls", PG_CLASSES, ids=lambda c: c.__name__)
async def test_pg_host_the_certificate_does_not_name_fails_under_verify_full(
    cls: Any, started: dict[str, Any], certs: dict[str, str], closing: list[Any]
) -> None:
    settings = pg_settings(started, host="127.0.0.1", sslrootcert=certs["ca"])
    strict = servers.new_database(cls, **settings, sslmode="verify-full")
    chain_only = servers.new_database(cls, **settings, sslmode="verify-ca")
    closing.extend([strict, chain_only])
    message = await connect_fails(strict, "SELECT 1")
    assert "does not name the host connected to" in message
    assert "sslmode='verify-ca'" in message
    assert "127.0.0.1" in sync_connect_fails(strict)
    # verify-ca checks the chain alone.
    assert await scalar(chain_only, PG_ENCRYPTED) is True
    assert sync_scalar(chain_only, PG_ENCRYPTED) is True


@pytest.mark.parametrize("cls", PG_CLASSES, ids=lambda c: c.__name__)
async def test_pg_plaintext_and_a_wrong_password_are_refused(
    cls: Any, started: dict[str, Any], certs: dict[str, str], closing: list[Any]
) -> None:
    plaintext = servers.new_database(cls, **pg_settings(started, sslmode="disable"))
    wrong = servers.new_database(
        cls, **pg_settings(started, password="wrong", sslmode="verify-full", sslrootcert=certs["ca"])
    )
    closing.extend([plaintext, wrong])
    assert "no encryption" in await connect_fails(plaintext, "SELECT 1")
    assert "password authentication failed" in await connect_fails(wrong, "SELECT 1")
    assert "no encryption" in sync_connect_fails(plaintext)


@pytest.mark.parametrize("cls", PG_CLASSES, ids=lambda c: c.__name__)
async def test_pg_require_against_a_server_without_tls_fails(cls: Any, closing: list[Any]) -> None:
    plain_server = servers.server_settings("postgres")
    database = servers.new_database(
        cls,
        host=plain_server["host"],
        port=plain_server["port"],
        user=plain_server["user"],
        password=plain_server["password"],
        sslmode="require",
    )
    closing.append(database)
    message = await connect_fails(database, "SELECT 1")
    assert "the server does not offer TLS" in message
    assert "SSL" in sync_connect_fails(database)


@pytest.mark.parametrize("cls", PG_CLASSES, ids=lambda c: c.__name__)
async def test_pg_client_certificate(
    cls: Any, started: dict[str, Any], certs: dict[str, str], closing: list[Any]
) -> None:
    settings = pg_settings(started, user=started["postgresql-tls"]["cert_user"], password="")
    database = servers.new_database(
        cls,
        **settings,
        sslmode="verify-full",
        sslrootcert=certs["ca"],
        sslcert=certs["client_cert"],
        sslkey=certs["client_key"],
    )
    closing.append(database)
    assert await scalar(database, "SELECT current_user") == "peewee_cert"
    assert sync_scalar(database, "SELECT current_user") == "peewee_cert"


@pytest.mark.parametrize("cls", PG_CLASSES, ids=lambda c: c.__name__)
async def test_pg_url_with_sslmode(
    cls: Any, started: dict[str, Any], certs: dict[str, str], closing: list[Any]
) -> None:
    server = started["postgresql-tls"]
    url = (
        f"{SCHEMES[cls]}://{server['user']}:{server['password']}@localhost:{server['port']}/test"
        f"?sslmode=verify-full&sslrootcert={certs['ca']}"
    )
    if "ext" in SCHEMES[cls]:
        url += "&register_hstore=false"  # the TLS server's database has no hstore
    database = db_url.connect(url)
    closing.append(database)
    assert type(database) is cls
    assert await scalar(database, PG_ENCRYPTED) is True
    assert server["password"] not in repr(database)


@pytest.mark.parametrize(
    "cls", [c for c in PG_CLASSES if c.driver.takes_ssl_context], ids=lambda c: c.__name__
)
async def test_pg_ssl_context_on_asyncpg(
    cls: Any, started: dict[str, Any], certs: dict[str, str], closing: list[Any]
) -> None:
    verifying = ssl.create_default_context(cafile=certs["ca"])
    database = servers.new_database(cls, **pg_settings(started, ssl=verifying))
    closing.append(database)
    assert await scalar(database, PG_ENCRYPTED) is True
    # The sync side (libpq) cannot take it, and says what to give instead.
    with pytest.raises(peewee.ImproperlyConfigured, match="sslmode='verify-full'"):
        database.connect()
    # A verifying context against another CA fails; nothing falls back.
    other = servers.new_database(
        cls, **pg_settings(started, ssl=ssl.create_default_context(cafile=certs["other_ca"]))
    )
    closing.append(other)
    assert "not signed by a CA" in await connect_fails(other, "SELECT 1")
    plain_server = servers.server_settings("postgres")
    no_tls = servers.new_database(
        cls,
        host=plain_server["host"],
        port=plain_server["port"],
        user=plain_server["user"],
        password=plain_server["password"],
        ssl=verifying,
    )
    closing.append(no_tls)
    assert "does not offer TLS" in await connect_fails(no_tls, "SELECT 1")


@pytest.mark.parametrize(
    "cls", [c for c in PG_CLASSES if not c.driver.takes_ssl_context], ids=lambda c: c.__name__
)
def test_pg_ssl_context_on_libpq_drivers_is_refused_naming_the_settings(cls: Any) -> None:
    with pytest.raises(ValueError, match="sslmode='verify-full', sslrootcert="):
        servers.new_database(cls, ssl=ssl.create_default_context())


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"sslmode": "verify_full"}, "not one of libpq's modes"),
        ({"ssl": "require", "sslmode": "require"}, "both set the TLS mode"),
    ],
)
def test_pg_bad_tls_settings(settings: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        peewee_async.AsyncpgDatabase("test", **settings)


def test_pg_ssl_context_and_libpq_settings_together_are_refused() -> None:
    with pytest.raises(ValueError, match="both configure TLS"):
        peewee_async.AsyncpgDatabase("test", ssl=ssl.create_default_context(), sslrootcert="/ca.pem")
    with pytest.raises(TypeError, match=r"ssl takes an ssl\.SSLContext"):
        peewee_async.AsyncpgDatabase("test", ssl=42)


def test_pg_asyncpg_mode_spelling_becomes_sslmode() -> None:
    database = peewee_async.AsyncpgDatabase("test", ssl="verify-full")
    assert database.connect_params["sslmode"] == "verify-full"
    assert "ssl" not in database.connect_params


# -- MySQL / MariaDB -----------------------------------------------------------------


@pytest.mark.parametrize("cls", MYSQL_CLASSES, ids=lambda c: c.__name__)
async def test_mysql_ssl_ca_verifies_identity_and_connects_encrypted_on_both_sides(
    cls: Any, started: dict[str, Any], certs: dict[str, str], closing: list[Any]
) -> None:
    database = servers.new_database(cls, **mysql_settings(started, ssl_ca=certs["ca"]))
    closing.append(database)
    assert database.tls.mode == "VERIFY_IDENTITY"
    assert await scalar(database, MYSQL_CIPHER)
    assert sync_scalar(database, MYSQL_CIPHER)


@pytest.mark.parametrize("cls", MYSQL_CLASSES, ids=lambda c: c.__name__)
async def test_mysql_another_ca_fails_naming_ssl_ca(
    cls: Any, started: dict[str, Any], certs: dict[str, str], closing: list[Any]
) -> None:
    database = servers.new_database(cls, **mysql_settings(started, ssl_ca=certs["other_ca"]))
    closing.append(database)
    message = await connect_fails(database, "SELECT 1")
    assert "certificate verify failed" in message
    assert "not signed by a CA that ssl_ca names" in message
    assert "certificate verify failed" in sync_connect_fails(database)


@pytest.mark.parametrize("cls", MYSQL_CLASSES, ids=lambda c: c.__name__)
async def test_mysql_host_the_certificate_does_not_name_fails_under_verify_identity(
    cls: Any, started: dict[str, Any], certs: dict[str, str], closing: list[Any]
) -> None:
    strict = servers.new_database(cls, **mysql_settings(started, host="127.0.0.1", ssl_ca=certs["ca"]))
    chain_only = servers.new_database(
        cls, **mysql_settings(started, host="127.0.0.1", ssl_ca=certs["ca"], ssl_mode="VERIFY_CA")
    )
    closing.extend([strict, chain_only])
    message = await connect_fails(strict, "SELECT 1")
    assert "does not name the host connected to" in message
    assert "ssl_mode='VERIFY_CA'" in message
    assert "127.0.0.1" in sync_connect_fails(strict)
    assert await scalar(chain_only, MYSQL_CIPHER)
    assert sync_scalar(chain_only, MYSQL_CIPHER)


@pytest.mark.parametrize("cls", MYSQL_CLASSES, ids=lambda c: c.__name__)
async def test_mysql_plaintext_and_a_wrong_password_are_refused(
    cls: Any, started: dict[str, Any], certs: dict[str, str], closing: list[Any]
) -> None:
    plaintext = servers.new_database(cls, **mysql_settings(started, ssl_disabled=True))
    # No TLS setting at all is plaintext too, on both sides: neither tries TLS on its own.
    unset = servers.new_database(cls, **mysql_settings(started))
    wrong = servers.new_database(cls, **mysql_settings(started, password="wrong", ssl_ca=certs["ca"]))
    closing.extend([plaintext, unset, wrong])
    assert "Access denied" in await connect_fails(plaintext, "SELECT 1")
    assert "Access denied" in await connect_fails(unset, "SELECT 1")
    assert "Access denied" in await connect_fails(wrong, "SELECT 1")
    assert "Access denied" in sync_connect_fails(plaintext)
    assert "Access denied" in sync_connect_fails(unset)


@pytest.mark.parametrize("cls", MYSQL_CLASSES, ids=lambda c: c.__name__)
@pytest.mark.parametrize("tls", ["ssl_mode", "ssl_context"])
async def test_mysql_required_tls_against_a_server_without_it_fails(
    cls: Any, tls: str, certs: dict[str, str], closing: list[Any]
) -> None:
    plain_server = servers.server_settings("mysql")
    settings = {key: plain_server[key] for key in ("host", "port", "user", "password")}
    asked = (
        {"ssl_mode": "REQUIRED"}
        if tls == "ssl_mode"
        else {"ssl": ssl.create_default_context(cafile=certs["ca"])}
    )
    database = servers.new_database(cls, **settings, **asked)
    closing.append(database)
    assert "the server does not offer TLS" in await connect_fails(database, "SELECT 1")
    sync_message = sync_connect_fails(database)
    assert "doesn't support it" in sync_message or "does not offer TLS" in sync_message


@pytest.mark.parametrize("cls", MYSQL_CLASSES, ids=lambda c: c.__name__)
async def test_mysql_preferred_goes_on_without_tls(cls: Any, closing: list[Any]) -> None:
    plain_server = servers.server_settings("mysql")
    settings = {key: plain_server[key] for key in ("host", "port", "user", "password")}
    database = servers.new_database(cls, **settings, ssl_mode="PREFERRED", sql_mode="STRICT_TRANS_TABLES")
    closing.append(database)
    assert await scalar(database, MYSQL_CIPHER) == ""


@pytest.mark.parametrize("cls", MYSQL_CLASSES, ids=lambda c: c.__name__)
async def test_mysql_ssl_context_and_url(
    cls: Any, started: dict[str, Any], certs: dict[str, str], closing: list[Any]
) -> None:
    by_context = servers.new_database(
        cls, **mysql_settings(started, ssl=ssl.create_default_context(cafile=certs["ca"]))
    )
    server = started["mariadb-tls"]
    url = f"{SCHEMES[cls]}://{server['user']}:{server['password']}@localhost:{server['port']}/test?ssl_ca={certs['ca']}"
    by_url = db_url.connect(url)
    closing.extend([by_context, by_url])
    assert type(by_url) is cls
    assert await scalar(by_context, MYSQL_CIPHER)
    assert sync_scalar(by_context, MYSQL_CIPHER)
    assert await scalar(by_url, MYSQL_CIPHER)


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"ssl_mode": "VERIFY"}, "is not one of DISABLED, PREFERRED"),
        ({"ssl_mode": "VERIFY_IDENTITY", "ssl_verify_identity": False}, "contradicts"),
        ({"ssl_disabled": True, "ssl_ca": "/ca.pem"}, "TLS is disabled, yet ssl_ca asks for it"),
        ({"ssl_ca": "/no/such/ca.pem"}, r"could not be read \(ssl_ca='/no/such/ca.pem'\)"),
        ({"ssl": {"capath": "/etc"}}, "takes the keys"),
    ],
)
def test_mysql_bad_tls_settings(settings: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        peewee_async.MySQLDatabase("test", **settings)


@pytest.mark.parametrize(
    ("settings", "mode"),
    [
        ({"ssl_ca": "CA"}, "VERIFY_IDENTITY"),
        ({"ssl_ca": "CA", "ssl_verify_identity": False}, "VERIFY_CA"),
        ({"ssl_ca": "CA", "ssl_verify_cert": False}, "REQUIRED"),
        ({"ssl": {"ca": "CA", "check_hostname": False}}, "VERIFY_CA"),
        ({"ssl_mode": "required"}, "REQUIRED"),
        ({"ssl_mode": "preferred"}, "PREFERRED"),
        ({"ssl_disabled": True}, "DISABLED"),
        ({"ssl": True}, "VERIFY_IDENTITY"),
    ],
)
def test_mysql_modes(settings: dict[str, Any], mode: str, certs: dict[str, str]) -> None:
    settings = {
        key: (
            certs["ca"] if value == "CA" else {k: certs["ca"] if v == "CA" else v for k, v in value.items()}
        )
        if isinstance(value, dict) or value == "CA"
        else value
        for key, value in settings.items()
    }
    database = peewee_async.MySQLDatabase("test", **settings)
    assert database.tls is not None
    assert database.tls.mode == mode
    context = database.tls.context
    if mode == "DISABLED":
        assert context is None
        return
    assert context is not None
    assert context.check_hostname == (mode == "VERIFY_IDENTITY")
    assert (context.verify_mode == ssl.CERT_REQUIRED) == mode.startswith("VERIFY")
