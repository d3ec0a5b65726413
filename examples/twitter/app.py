"""tweepee: a small twitter-like site on Starlette, every query awaited through peewee-async.

Run it with one command (SQLite in the temp folder by default)::

    python -m examples.twitter
    python -m examples.twitter postgresql://postgres@127.0.0.1:5432/tweepee --port 8001
    DATABASE_URL=mysql://root@127.0.0.1:3306/tweepee python examples/twitter/app.py

The tables are created with sync peewee at start; then ``allow_sync`` is turned
off, so a query that would block the event loop (say, a lazy foreign-key load
in a template) fails loudly instead of silently stalling every request.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import math
import os
import re
import secrets
import sys
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

if not __package__:  # run as a file: python examples/twitter/app.py
    sys.path[0] = str(Path(__file__).resolve().parents[2])
    __package__ = "examples.twitter"

import peewee
import uvicorn
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.sessions import SessionMiddleware
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates

import peewee_async

from . import auth, models
from .models import Message, Relationship, User, utcnow

HERE = Path(__file__).resolve().parent
PER_PAGE = 20
USERNAME = re.compile(r"[A-Za-z0-9_.-]{1,40}")
MIN_PASSWORD = 8
MAX_MESSAGE = 280

templates = Jinja2Templates(directory=HERE / "templates")

View = Callable[[Request], Awaitable[Response]]
UserView = Callable[[Request, User], Awaitable[Response]]


# -- helpers ---------------------------------------------------------------


def manager(request: Request) -> peewee_async.Manager:
    objects: peewee_async.Manager = request.app.state.objects
    return objects


def flash(request: Request, message: str) -> None:
    """Show ``message`` once, on the next page rendered for this browser."""
    request.session["flashes"] = [*request.session.get("flashes", []), message]


def redirect(request: Request, name: str, **path_params: str) -> RedirectResponse:
    return RedirectResponse(request.url_for(name, **path_params), status_code=303)


async def current_user(request: Request) -> User | None:
    """The logged-in user, read once per request."""
    if not hasattr(request.state, "user"):
        user = None
        user_id = request.session.get("user_id")
        if user_id is not None:
            try:
                user = await manager(request).get(User, id=user_id)
            except User.DoesNotExist:  # deleted since: forget the session
                request.session.clear()
        request.state.user = user
    return request.state.user  # type: ignore[no-any-return]


def log_in(request: Request, user: User) -> None:
    request.session.clear()
    request.session["user_id"] = user.id
    flash(request, f"You are logged in as {user.username}.")


def login_required(view: UserView) -> View:
    """Run ``view(request, user)`` for a logged-in user; send anyone else to the login page."""

    @functools.wraps(view)
    async def inner(request: Request) -> Response:
        user = await current_user(request)
        if user is None:
            flash(request, "Please log in first.")
            return redirect(request, "login")
        return await view(request, user)

    return inner


async def get_object_or_404(request: Request, model: type[peewee.Model], **lookups: Any) -> Any:
    try:
        return await manager(request).get(model, **lookups)
    except model.DoesNotExist:
        raise HTTPException(404) from None


async def render(request: Request, template: str, status_code: int = 200, **context: Any) -> Response:
    context["current_user"] = await current_user(request)
    context["flashes"] = request.session.pop("flashes", [])
    return templates.TemplateResponse(request, template, context, status_code=status_code)


def page_links(page: int, pages: int) -> list[int | None]:
    """Page numbers to link: the first, the last and a few around ``page``; ``None`` for a gap."""
    shown = [n for n in range(1, pages + 1) if n in (1, pages) or abs(n - page) <= 2]
    links: list[int | None] = []
    for n in shown:
        if links and n - (links[-1] or 0) > 1:
            links.append(None)
        links.append(n)
    return links


async def object_list(request: Request, template: str, query: peewee.ModelSelect, **context: Any) -> Response:
    """Render one page of ``query``'s rows (``?page=N``, PER_PAGE a page) as ``object_list``."""
    try:
        page = int(request.query_params.get("page", "1"))
    except ValueError:
        page = 1
    if page < 1:
        raise HTTPException(404)
    objects = manager(request)
    # Two independent queries, awaited together: on a pooled database they run
    # at the same time on two connections.
    count, rows = await asyncio.gather(objects.count(query), objects.execute(query.paginate(page, PER_PAGE)))
    pages = max(1, math.ceil(count / PER_PAGE))
    if page > pages:
        raise HTTPException(404)
    return await render(
        request,
        template,
        object_list=rows,
        count=count,
        page=page,
        pages=pages,
        page_links=page_links(page, pages),
        **context,
    )


def messages_query() -> peewee.ModelSelect:
    # Selecting the author with the message: a template reading
    # message.user.username must not trigger a (sync, hence refused) lazy load.
    return Message.select(Message, User).join(User).order_by(Message.pub_date.desc(), Message.id.desc())


async def form_fields(request: Request, *names: str) -> list[str]:
    form = await request.form()
    return [str(form.get(name) or "") for name in names]


# -- views -----------------------------------------------------------------


async def homepage(request: Request) -> Response:
    if await current_user(request) is not None:
        return await private_timeline(request)
    return await public_timeline(request)


@login_required
async def private_timeline(request: Request, user: User) -> Response:
    # The messages of the users I follow: user.following() becomes a subquery
    # selecting only User.id.
    query = messages_query().where(Message.user.in_(user.following()))
    return await object_list(request, "private_messages.html", query)


async def public_timeline(request: Request) -> Response:
    return await object_list(request, "public_messages.html", messages_query())


async def join(request: Request) -> Response:
    if request.method == "POST":
        username, password, email = await form_fields(request, "username", "password", "email")
        username, email = username.strip(), email.strip()
        error = None
        if not USERNAME.fullmatch(username):
            error = "Choose a username of 1 to 40 letters, digits, '_', '.' or '-'."
        elif len(password) < MIN_PASSWORD:
            error = f"Choose a password of at least {MIN_PASSWORD} characters."
        elif "@" not in email:
            error = "Give an email address."
        if error is None:
            # scrypt takes tens of milliseconds of CPU: off the event loop.
            hashed = await asyncio.to_thread(auth.hash_password, password)
            objects = manager(request)
            try:
                # The unique index on username refuses a taken name; atomic()
                # keeps the failed INSERT from spoiling an enclosing transaction.
                async with objects.atomic():
                    user = await objects.create(
                        User, username=username, password=hashed, email=email, join_date=utcnow()
                    )
            except peewee.IntegrityError:
                error = "That username is already taken."
            else:
                log_in(request, user)
                return redirect(request, "homepage")
        flash(request, error)
        return await render(request, "join.html", status_code=400, username=username, email=email)
    return await render(request, "join.html")


async def login(request: Request) -> Response:
    if request.method == "POST":
        username, password = await form_fields(request, "username", "password")
        try:
            user = await manager(request).get(User, username=username.strip())
            stored = user.password
        except User.DoesNotExist:
            user, stored = None, auth.DUMMY_HASH  # as slow as a real check
        valid = await asyncio.to_thread(auth.verify_password, password, stored)
        if user is not None and valid:
            log_in(request, user)
            return redirect(request, "homepage")
        flash(request, "The username or password is incorrect.")
        return await render(request, "login.html", status_code=400, username=username)
    return await render(request, "login.html")


async def logout(request: Request) -> Response:
    request.session.clear()
    flash(request, "You were logged out.")
    return redirect(request, "homepage")


@login_required
async def following(request: Request, user: User) -> Response:
    return await object_list(request, "user_list.html", user.following(), title="Following")


@login_required
async def followers(request: Request, user: User) -> Response:
    return await object_list(request, "user_list.html", user.followers(), title="Followers")


async def user_list(request: Request) -> Response:
    return await object_list(request, "user_list.html", User.select().order_by(User.username), title="Users")


async def user_detail(request: Request) -> Response:
    user = await get_object_or_404(request, User, username=request.path_params["username"])
    me = await current_user(request)
    objects = manager(request)

    async def is_followed() -> bool:
        return me is not None and await objects.count(me.is_following_query(user)) > 0

    followers_count, following_count, followed = await asyncio.gather(
        objects.count(user.followers()), objects.count(user.following()), is_followed()
    )
    return await object_list(
        request,
        "user_detail.html",
        messages_query().where(Message.user == user),
        user=user,
        followers_count=followers_count,
        following_count=following_count,
        is_following=followed,
    )


@login_required
async def user_follow(request: Request, me: User) -> Response:
    user = await get_object_or_404(request, User, username=request.path_params["username"])
    if user.id == me.id:
        flash(request, "You cannot follow yourself.")
    else:
        objects = manager(request)
        try:
            # The unique index on (from_user, to_user) refuses a second follow.
            async with objects.atomic():
                await objects.create(Relationship, from_user=me, to_user=user)
        except peewee.IntegrityError:
            pass
        flash(request, f"You are following {user.username}.")
    return redirect(request, "user_detail", username=user.username)


@login_required
async def user_unfollow(request: Request, me: User) -> Response:
    user = await get_object_or_404(request, User, username=request.path_params["username"])
    await manager(request).execute(
        Relationship.delete().where((Relationship.from_user == me) & (Relationship.to_user == user))
    )
    flash(request, f"You are no longer following {user.username}.")
    return redirect(request, "user_detail", username=user.username)


@login_required
async def create(request: Request, user: User) -> Response:
    if request.method == "POST":
        (content,) = await form_fields(request, "content")
        content = content.strip()
        if content and len(content) <= MAX_MESSAGE:
            await manager(request).create(Message, user=user, content=content, pub_date=utcnow())
            flash(request, "Your message has been created.")
            return redirect(request, "user_detail", username=user.username)
        flash(request, f"Write a message of 1 to {MAX_MESSAGE} characters.")
        return await render(request, "create.html", status_code=400, content=content)
    return await render(request, "create.html")


async def not_found(request: Request, exc: Exception) -> Response:
    return await render(request, "404.html", status_code=404)


# -- the application -------------------------------------------------------

routes = [
    Route("/", homepage, name="homepage"),
    Route("/private/", private_timeline, name="private_timeline"),
    Route("/public/", public_timeline, name="public_timeline"),
    Route("/join/", join, methods=["GET", "POST"], name="join"),
    Route("/login/", login, methods=["GET", "POST"], name="login"),
    Route("/logout/", logout, methods=["POST"], name="logout"),
    Route("/following/", following, name="following"),
    Route("/followers/", followers, name="followers"),
    Route("/users/", user_list, name="user_list"),
    Route("/users/{username}/", user_detail, name="user_detail"),
    Route("/users/{username}/follow/", user_follow, methods=["POST"], name="user_follow"),
    Route("/users/{username}/unfollow/", user_unfollow, methods=["POST"], name="user_unfollow"),
    Route("/create/", create, methods=["GET", "POST"], name="create"),
    Mount("/static", StaticFiles(directory=HERE / "static"), name="static"),
]


def create_app(database: peewee_async.AsyncDatabase, secret_key: str | None = None) -> Starlette:
    """The app on ``database``: its tables are created now, then sync queries are refused.

    ``secret_key`` signs the session cookie; by default ``$SECRET_KEY``, or a
    random key (sessions then end when the process does).
    """
    models.bind(database)
    models.create_tables(database)
    database.allow_sync = False
    objects = peewee_async.Manager(database)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        await objects.close()

    key = secret_key or os.environ.get("SECRET_KEY") or secrets.token_hex(32)
    app = Starlette(
        routes=routes,
        # A signed cookie; SameSite=lax keeps other sites from POSTing forms with it.
        middleware=[Middleware(SessionMiddleware, secret_key=key, session_cookie="tweepee", same_site="lax")],
        exception_handlers={404: not_found},
        lifespan=lifespan,
    )
    app.state.objects = objects
    return app


def default_url() -> str:
    return "sqlite:///" + str(Path(tempfile.gettempdir()) / "tweepee.db")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m examples.twitter", description=__doc__.splitlines()[0])
    parser.add_argument(
        "url",
        nargs="?",
        default=os.environ.get("DATABASE_URL") or default_url(),
        help="database URL, e.g. postgresql://user:password@host:5432/name or mysql://user@host/name "
        "(default: $DATABASE_URL, else SQLite in the temp folder)",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default: %(default)s)")
    parser.add_argument("--port", type=int, default=8000, help="port to listen on (default: %(default)s)")
    args = parser.parse_args(argv)
    try:
        database = peewee_async.db_url.connect(args.url, unquote_password=True)
    except ValueError as exc:
        parser.error(str(exc))
    app = create_app(database)
    print(f"tweepee on {database.describe()}: http://{args.host}:{args.port}/", flush=True)
    uvicorn.run(app, host=args.host, port=args.port)


if __name__ == "__main__":
    main()
