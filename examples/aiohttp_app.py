"""aiohttp with peewee-async: one transaction per request that writes.

A middleware runs each POST, PUT, PATCH and DELETE request in one transaction:
it commits when the handler returns a success, and rolls back when the handler
raises or returns an error response, so a handler never leaves half its writes
behind. The database's connections open when the app starts and close when it
stops.

It serves on SQLite by default (a file in the system's temp folder), or on
PostgreSQL or MySQL given a database URL, as an argument or in ``DATABASE_URL``::

    python examples/aiohttp_app.py
    python examples/aiohttp_app.py postgres+pool://postgres@127.0.0.1:5432/test --port 8080
    DATABASE_URL=mysql+pool://root@127.0.0.1:3306/test python examples/aiohttp_app.py

Then try::

    curl -d '[{"name": "alice", "balance": 100}, {"name": "bob"}]' http://127.0.0.1:8080/accounts
    curl -d '{"source": "alice", "target": "bob", "amount": 30}' http://127.0.0.1:8080/transfers
    curl -d '{"source": "alice", "target": "nobody", "amount": 30}' http://127.0.0.1:8080/transfers
    curl http://127.0.0.1:8080/accounts
"""

import argparse
import os
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import peewee
from aiohttp import web

import peewee_async

DEFAULT_URL = f"sqlite:///{Path(tempfile.gettempdir()) / 'peewee_async_aiohttp.db'}"
SAFE_METHODS = {"GET", "HEAD", "OPTIONS"}

objects_key = web.AppKey("objects", peewee_async.Manager)


class Account(peewee.Model):
    name = peewee.CharField(unique=True)
    balance = peewee.IntegerField(default=0)


def as_json(account: Account) -> dict[str, Any]:
    return {"name": account.name, "balance": account.balance}


# -- middlewares ---------------------------------------------------------------


@web.middleware
async def errors_as_json(request: web.Request, handler: Any) -> web.StreamResponse:
    """Error responses as ``{"error": "..."}``; a unique name taken twice is a 409 Conflict."""
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return web.json_response({"error": exc.text}, status=exc.status)
    except peewee.IntegrityError as exc:
        return web.json_response({"error": f"Conflict: {exc}"}, status=409)


@web.middleware
async def transaction_per_request(request: web.Request, handler: Any) -> web.StreamResponse:
    """Run each request that may write in one transaction, on one connection."""
    if request.method in SAFE_METHODS:
        # Each query takes a connection from the pool and gives it back at once.
        return await handler(request)
    async with request.app[objects_key].atomic() as transaction:
        # An exception leaving this block rolls the request's writes back.
        response = await handler(request)
        if response.status >= 400:
            await transaction.rollback()
        return response


# -- handlers ------------------------------------------------------------------


async def read_json(request: web.Request) -> Any:
    try:
        return await request.json()
    except ValueError:
        raise web.HTTPBadRequest(text="The request body must be JSON") from None


async def list_accounts(request: web.Request) -> web.Response:
    objects = request.app[objects_key]
    accounts = await objects.execute(Account.select().order_by(Account.name))
    return web.json_response([as_json(account) for account in accounts])


async def create_accounts(request: web.Request) -> web.Response:
    """A JSON account or list of accounts: creates all of them, or none when a name is taken."""
    objects = request.app[objects_key]
    data = await read_json(request)
    created = []
    for item in data if isinstance(data, list) else [data]:
        created.append(await objects.create(Account, name=item["name"], balance=item.get("balance", 0)))
    return web.json_response([as_json(account) for account in created], status=201)


async def transfer(request: web.Request) -> web.Response:
    """``{"source": name, "target": name, "amount": int}``: move money between two accounts."""
    objects = request.app[objects_key]
    data = await read_json(request)
    source, target, amount = data["source"], data["target"], data["amount"]
    if not isinstance(amount, int) or amount <= 0:
        raise web.HTTPBadRequest(text="The amount must be a positive integer")

    debit = Account.update(balance=Account.balance - amount).where(Account.name == source)
    if not await objects.execute(debit):
        raise web.HTTPNotFound(text=f"No account {source!r}")
    credit = Account.update(balance=Account.balance + amount).where(Account.name == target)
    if not await objects.execute(credit):
        # The debit above is undone with the rest of the request.
        raise web.HTTPNotFound(text=f"No account {target!r}")
    source_account = await objects.get(Account, name=source)
    if source_account.balance < 0:
        return web.json_response({"error": f"{source!r} cannot pay {amount}"}, status=400)
    target_account = await objects.get(Account, name=target)
    return web.json_response({"source": as_json(source_account), "target": as_json(target_account)})


# -- the application -----------------------------------------------------------


async def database_connections(app: web.Application) -> AsyncIterator[None]:
    """Open the database's connections at start-up, close them at shutdown."""
    objects = app[objects_key]
    await objects.connect()
    yield
    await objects.close()
    print("Database connections closed", flush=True)


def create_app(database_url: str) -> web.Application:
    database = peewee_async.db_url.connect(database_url, unquote_password=True)
    database.bind([Account])
    with database:  # plain sync peewee, before serving
        database.create_tables([Account])
    # From here on, only async queries: a blocking one in a handler raises.
    database.allow_sync = False

    app = web.Application(middlewares=[errors_as_json, transaction_per_request])
    app[objects_key] = peewee_async.Manager(database)
    app.cleanup_ctx.append(database_connections)
    app.add_routes(
        [
            web.get("/accounts", list_accounts),
            web.post("/accounts", create_accounts),
            web.post("/transfers", transfer),
        ]
    )
    return app


def main() -> None:
    parser = argparse.ArgumentParser(description="aiohttp with peewee-async")
    parser.add_argument(
        "database_url",
        nargs="?",
        default=os.environ.get("DATABASE_URL", DEFAULT_URL),
        help=f"sqlite:///path, postgres+pool://... or mysql+pool://... (default: {DEFAULT_URL})",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    args = parser.parse_args()

    web.run_app(create_app(args.database_url), host=args.host, port=args.port)


if __name__ == "__main__":
    main()
