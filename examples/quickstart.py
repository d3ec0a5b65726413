"""The quickstart of the docs: sync peewee and async peewee on one database.

It runs on SQLite by default (a file in the system's temp folder), or on
PostgreSQL or MySQL given a URL::

    python examples/quickstart.py
    python examples/quickstart.py postgresql://postgres@127.0.0.1:5432/test
    python examples/quickstart.py mysql://root@127.0.0.1:3306/test
"""

import asyncio
import sys
import tempfile
from pathlib import Path
from urllib.parse import urlsplit

import peewee

import peewee_async


def database_from_url(url: str) -> peewee_async.AsyncDatabase:
    if url == "sqlite":
        return peewee_async.SqliteDatabase(str(Path(tempfile.gettempdir()) / "peewee_async_quickstart.db"))
    parts = urlsplit(url)
    settings = {
        "host": parts.hostname or "127.0.0.1",
        "user": parts.username,
        "password": parts.password or "",
    }
    if parts.port:
        settings["port"] = parts.port
    name = parts.path.lstrip("/")
    if parts.scheme.startswith("postgres"):
        return peewee_async.PooledPostgresqlDatabase(name, **settings)
    if parts.scheme == "mysql":
        return peewee_async.PooledMySQLDatabase(name, **settings)
    raise SystemExit(f"Unsupported database URL {url!r}: use sqlite, postgresql://... or mysql://...")


database = database_from_url(sys.argv[1] if len(sys.argv) > 1 else "sqlite")


class QuickstartModel(peewee.Model):
    text = peewee.CharField()

    class Meta:
        database = database


# Look, sync code is working!
QuickstartModel.create_table(True)
QuickstartModel.create(text="Yo, I can do it sync!")
database.close()

# Create the async models manager, and forbid sync queries from now on.
objects = peewee_async.Manager(database)
database.allow_sync = False


async def handler() -> None:
    await objects.create(QuickstartModel, text="Not bad. Watch this, I'm async!")
    for obj in await objects.execute(QuickstartModel.select().order_by(QuickstartModel.id)):
        print(obj.text)
    await objects.close()


asyncio.run(handler())

# Clean up, can do it sync again:
with objects.allow_sync():
    QuickstartModel.drop_table(True)
