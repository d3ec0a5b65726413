"""Tornado with peewee-async: the API reference's sample, on Tornado 6.

It serves on SQLite by default (a file in the system's temp folder), or on
PostgreSQL or MySQL given a database URL, as an argument or in ``DATABASE_URL``::

    python examples/tornado_app.py
    python examples/tornado_app.py postgres+pool://postgres@127.0.0.1:5432/test --port 8888
    DATABASE_URL=mysql+pool://root@127.0.0.1:3306/test python examples/tornado_app.py

Then try::

    curl 'http://127.0.0.1:8888/?id=1'
    curl 'http://127.0.0.1:8888/create?id=100'
    curl -d name=hello http://127.0.0.1:8888/
    curl -d name=one -d name=two http://127.0.0.1:8888/batch

Tornado 6 runs on the asyncio event loop and runs each request handler in an
asyncio task of its own, so a handler can open a transaction itself.
"""

import argparse
import asyncio
import logging
import os
import signal
import tempfile
from pathlib import Path

import peewee
import tornado.web

import peewee_async

DEFAULT_URL = f"sqlite:///{Path(tempfile.gettempdir()) / 'peewee_async_tornado.db'}"


class TestNameModel(peewee.Model):
    name = peewee.CharField()

    def __str__(self) -> str:
        return str(self.name)


class Application(tornado.web.Application):
    objects: peewee_async.Manager


class RootHandler(tornado.web.RequestHandler):
    """Accepts GET and POST methods.

    POST: create new instance, `name` argument is required
    GET: get instance by id, `id` argument is required
    """

    application: Application

    async def post(self) -> None:
        name = self.get_argument("name")
        obj = await self.application.objects.create(TestNameModel, name=name)
        self.write({"id": obj.id, "name": obj.name})

    async def get(self) -> None:
        obj_id = self.get_argument("id", None)
        if not obj_id:
            self.write("Please provide the 'id' query argument, i.e. ?id=1")
            return
        try:
            obj = await self.application.objects.get(TestNameModel, id=obj_id)
        except TestNameModel.DoesNotExist:
            raise tornado.web.HTTPError(404, "Object not found!") from None
        self.write({"id": obj.id, "name": obj.name})


class CreateHandler(tornado.web.RequestHandler):
    """GET: get or create the instance of the `id` argument, in a task started for it."""

    application: Application

    async def get(self) -> None:
        task1 = asyncio.current_task()  # the task Tornado runs this request in
        task2 = asyncio.create_task(self.get_or_create())
        obj = await task2
        self.write(
            {
                "task1": id(task1),
                "task2": id(task2),
                "obj": str(obj),
                "text": "'task1' is the request's task, 'task2' the task it started, "
                "'obj' the object of that id, created if it was missing",
            }
        )

    async def get_or_create(self) -> TestNameModel:
        obj_id = self.get_argument("id")
        async with self.application.objects.atomic():
            obj, _created = await self.application.objects.get_or_create(
                TestNameModel, id=obj_id, defaults={"name": f"TestNameModel id={obj_id}"}
            )
        return obj


class BatchHandler(tornado.web.RequestHandler):
    """POST: create one instance per `name` argument, all of them or none."""

    application: Application

    async def post(self) -> None:
        objects = self.application.objects
        created = []
        async with objects.atomic():
            for name in self.get_arguments("name"):
                if not name:
                    # Leaving the block with an exception rolls back the names created before.
                    raise tornado.web.HTTPError(400, "Empty name in the batch")
                created.append(await objects.create(TestNameModel, name=name))
        self.write({"created": [{"id": obj.id, "name": obj.name} for obj in created]})


def make_app(database_url: str) -> Application:
    database = peewee_async.db_url.connect(database_url, unquote_password=True)
    database.bind([TestNameModel])

    # Create the table and add some instances: plain sync peewee, before serving.
    with database:
        TestNameModel.create_table(True)
        if not TestNameModel.select().exists():
            TestNameModel.insert_many([{"name": f"TestNameModel id={i}"} for i in (1, 2, 3)]).execute()
    # From here on, only async queries: a blocking one in a handler raises.
    database.allow_sync = False

    app = Application([(r"/", RootHandler), (r"/create", CreateHandler), (r"/batch", BatchHandler)])
    app.objects = peewee_async.Manager(database)
    return app


async def serve(app: Application, host: str, port: int) -> None:
    server = app.listen(port, address=host)
    await app.objects.connect()
    print(f"Serving on http://{host}:{port}/ (Ctrl+C to stop)", flush=True)

    stop = asyncio.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        asyncio.get_running_loop().add_signal_handler(signum, stop.set)
    await stop.wait()

    server.stop()
    await server.close_all_connections()
    await app.objects.close()
    print("Server stopped, database connections closed", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description="Tornado with peewee-async")
    parser.add_argument(
        "database_url",
        nargs="?",
        default=os.environ.get("DATABASE_URL", DEFAULT_URL),
        help=f"sqlite:///path, postgres+pool://... or mysql+pool://... (default: {DEFAULT_URL})",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8888)
    args = parser.parse_args()

    logging.basicConfig(level=logging.INFO)
    asyncio.run(serve(make_app(args.database_url), args.host, args.port))


if __name__ == "__main__":
    main()
