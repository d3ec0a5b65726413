"""Starlette with peewee-async: one transaction per request that writes.

An ASGI middleware runs each POST, PUT, PATCH and DELETE request in one
transaction: it commits when the endpoint answers with a success, and rolls
back when the endpoint raises or answers with an error, so an endpoint never
leaves half its writes behind. The response goes out once the transaction has
ended. The lifespan opens the database's connections at start-up and closes
them at shutdown.

It serves on SQLite by default (a file in the system's temp folder), or on
PostgreSQL or MySQL given a database URL, as an argument or in ``DATABASE_URL``::

    python examples/starlette_app.py
    python examples/starlette_app.py postgres+pool://postgres@127.0.0.1:5432/test --port 8000
    DATABASE_URL=mysql+pool://root@127.0.0.1:3306/test python examples/starlette_app.py

Then try::

    curl -d '[{"name": "alice", "balance": 100}, {"name": "bob"}]' http://127.0.0.1:8000/accounts
    curl -d '{"source": "alice", "target": "bob", "amount": 30}' http://127.0.0.1:8000/transfers
    curl -d '{"source": "alice", "target": "nobody", "amount": 30}' http://127.0.0.1:8000/transfers
    curl http://127.0.0.1:8000/accounts
"""

import argparse
import contextlib
import os
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import peewee
import uvicorn
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

import peewee_async

DEFAULT_URL = f"sqlite:///{Path(tempfile.gettempdir()) / 'peewee_async_starlette.db'}"
SAFE_METHODS = {"GET", "HEAD", "OPTIONS"}


class Account(peewee.Model):
    name = peewee.CharField(unique=True)
    balance = peewee.IntegerField(default=0)


def as_json(account: Account) -> dict[str, Any]:
    return {"name": account.name, "balance": account.balance}


# -- the per-request transaction -----------------------------------------------


class TransactionPerRequest:
    """ASGI middleware: run each request that may write in one transaction, on one connection.

    It holds the response back until the transaction has ended, so a client never
    sees a success for writes that were not committed. A plain ASGI middleware,
    because Starlette's ``BaseHTTPMiddleware`` runs the endpoint in a task of its
    own, which would run outside a transaction opened by the middleware.
    """

    def __init__(self, app: ASGIApp, objects: peewee_async.Manager) -> None:
        self.app = app
        self.objects = objects

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in SAFE_METHODS:
            # Each query takes a connection from the pool and gives it back at once.
            await self.app(scope, receive, send)
            return
        response: list[Message] = []

        async def hold(message: Message) -> None:
            response.append(message)

        async with self.objects.atomic() as transaction:
            # An exception leaving this block rolls the request's writes back.
            await self.app(scope, receive, hold)
            status = next((m["status"] for m in response if m["type"] == "http.response.start"), 500)
            if status >= 400:
                await transaction.rollback()
        for message in response:
            await send(message)


# -- endpoints -----------------------------------------------------------------


async def read_json(request: Request) -> Any:
    try:
        return await request.json()
    except ValueError:
        raise HTTPException(400, "The request body must be JSON") from None


async def list_accounts(request: Request) -> JSONResponse:
    objects = request.app.state.objects
    accounts = await objects.execute(Account.select().order_by(Account.name))
    return JSONResponse([as_json(account) for account in accounts])


async def create_accounts(request: Request) -> JSONResponse:
    """A JSON account or list of accounts: creates all of them, or none when a name is taken."""
    objects = request.app.state.objects
    data = await read_json(request)
    created = []
    for item in data if isinstance(data, list) else [data]:
        created.append(await objects.create(Account, name=item["name"], balance=item.get("balance", 0)))
    return JSONResponse([as_json(account) for account in created], status_code=201)


async def transfer(request: Request) -> JSONResponse:
    """``{"source": name, "target": name, "amount": int}``: move money between two accounts."""
    objects = request.app.state.objects
    data = await read_json(request)
    source, target, amount = data["source"], data["target"], data["amount"]
    if not isinstance(amount, int) or amount <= 0:
        raise HTTPException(400, "The amount must be a positive integer")

    debit = Account.update(balance=Account.balance - amount).where(Account.name == source)
    if not await objects.execute(debit):
        raise HTTPException(404, f"No account {source!r}")
    credit = Account.update(balance=Account.balance + amount).where(Account.name == target)
    if not await objects.execute(credit):
        # The debit above is undone with the rest of the request.
        raise HTTPException(404, f"No account {target!r}")
    source_account = await objects.get(Account, name=source)
    if source_account.balance < 0:
        return JSONResponse({"error": f"{source!r} cannot pay {amount}"}, status_code=400)
    target_account = await objects.get(Account, name=target)
    return JSONResponse({"source": as_json(source_account), "target": as_json(target_account)})


async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
    return JSONResponse({"error": exc.detail}, status_code=exc.status_code)


async def conflict(request: Request, exc: Exception) -> JSONResponse:
    return JSONResponse({"error": f"Conflict: {exc}"}, status_code=409)


# -- the application -----------------------------------------------------------


def create_app(database_url: str) -> Starlette:
    database = peewee_async.db_url.connect(database_url, unquote_password=True)
    database.bind([Account])
    with database:  # plain sync peewee, before serving
        database.create_tables([Account])
    # From here on, only async queries: a blocking one in an endpoint raises.
    database.allow_sync = False
    objects = peewee_async.Manager(database)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await objects.connect()
        yield
        await objects.close()
        print("Database connections closed", flush=True)

    app = Starlette(
        routes=[
            Route("/accounts", list_accounts, methods=["GET"]),
            Route("/accounts", create_accounts, methods=["POST"]),
            Route("/transfers", transfer, methods=["POST"]),
        ],
        middleware=[Middleware(TransactionPerRequest, objects=objects)],
        exception_handlers={HTTPException: http_error, peewee.IntegrityError: conflict},
        lifespan=lifespan,
    )
    app.state.objects = objects
    return app


def main() -> None:
    parser = argparse.ArgumentParser(description="Starlette with peewee-async")
    parser.add_argument(
        "database_url",
        nargs="?",
        default=os.environ.get("DATABASE_URL", DEFAULT_URL),
        help=f"sqlite:///path, postgres+pool://... or mysql+pool://... (default: {DEFAULT_URL})",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    args = parser.parse_args()

    app = create_app(args.database_url)
    print(f"Serving on http://{args.host}:{args.port}/ (Ctrl+C to stop)", flush=True)
    uvicorn.run(app, host=args.host, port=args.port)


if __name__ == "__main__":
    main()
