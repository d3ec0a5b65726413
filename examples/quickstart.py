"""The quickstart of the docs: sync peewee and async peewee on one database.

It runs on SQLite by default (a file in the system's temp folder), or on
PostgreSQL or MySQL given a database URL, as an argument or in ``DATABASE_URL``::

    python examples/quickstart.py
    python examples/quickstart.py postgres+pool://postgres@127.0.0.1:5432/test
    DATABASE_URL=mysql+pool://root@127.0.0.1:3306/test python examples/quickstart.py
"""

import asyncio
import os
import sys
import tempfile
from pathlib import Path

import peewee

import peewee_async

DEFAULT_URL = f"sqlite:///{Path(tempfile.gettempdir()) / 'peewee_async_quickstart.db'}"
url = sys.argv[1] if len(sys.argv) > 1 else os.environ.get("DATABASE_URL", DEFAULT_URL)
database = peewee_async.db_url.connect(url, unquote_password=True)


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
