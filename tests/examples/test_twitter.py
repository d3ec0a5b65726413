"""The twitter-like example app (examples/twitter), run as a real server and driven over HTTP.

Each backend test starts ``python -m examples.twitter URL --port N`` in a
subprocess, walks through the site with httpx clients (one cookie jar per
person), reads the parts of the HTML that matter, and checks the rows the app
wrote with sync peewee on the same database.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest

import peewee_async
from examples.twitter import auth
from examples.twitter.models import MODELS, Message, Relationship, User

from ..conftest import _require_server, server_settings, url_options
from ..servers import ROOT
from .conftest import TARGETS

PASSWORDS = {"alice": "alice-secret-1", "bob": "bob-secret-22"}
START_TIMEOUT = 30.0


# -- reading the HTML --------------------------------------------------------

VOID_TAGS = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "wbr"}


@dataclass
class Element:
    tag: str
    attrs: dict[str, str | None]
    parts: list[str] = field(default_factory=list)

    @property
    def text(self) -> str:
        return " ".join("".join(self.parts).split())

    @property
    def classes(self) -> list[str]:
        return (self.attrs.get("class") or "").split()


class Page(HTMLParser):
    """Every element of a page with its text, to pick out by tag, class or id."""

    def __init__(self, response: httpx.Response) -> None:
        super().__init__()
        self.response = response
        self.elements: list[Element] = []
        self._open: list[Element] = []
        self.feed(response.text)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        element = Element(tag, dict(attrs))
        self.elements.append(element)
        if tag not in VOID_TAGS:
            self._open.append(element)

    def handle_endtag(self, tag: str) -> None:
        for i in range(len(self._open) - 1, -1, -1):
            if self._open[i].tag == tag:
                del self._open[i:]
                return

    def handle_data(self, data: str) -> None:
        for element in self._open:
            element.parts.append(data)

    def texts(self, tag: str, cls: str) -> list[str]:
        return [e.text for e in self.elements if e.tag == tag and cls in e.classes]

    def by_id(self, id_: str) -> Element | None:
        return next((e for e in self.elements if e.attrs.get("id") == id_), None)

    def link(self, rel: str) -> str | None:
        return next(
            (e.attrs["href"] for e in self.elements if e.tag == "a" and e.attrs.get("rel") == rel), None
        )

    @property
    def flashes(self) -> list[str]:
        return self.texts("p", "flash")

    @property
    def messages(self) -> list[tuple[str, str]]:
        """(author, content) of each message shown, top to bottom."""
        return list(zip(self.texts("a", "author"), self.texts("p", "content"), strict=True))

    @property
    def usernames(self) -> list[str]:
        return self.texts("a", "username")

    def count(self, name: str) -> int:
        element = self.by_id(f"{name}-count")
        assert element is not None, f"no {name} count on {self.response.url}"
        return int(element.text)

    @property
    def logged_in_as(self) -> str | None:
        me = self.by_id("me")
        return me.text if me is not None else None


def get(client: httpx.Client, path: str, status: int = 200) -> Page:
    response = client.get(path)
    assert response.status_code == status, (path, response.status_code, response.text[:2000])
    return Page(response)


def post(client: httpx.Client, path: str, data: dict[str, str] | None = None, status: int = 200) -> Page:
    """POST a form and follow the redirect (303) to the page it leads to."""
    response = client.post(path, data=data or {})
    assert response.status_code == status, (path, response.status_code, response.text[:2000])
    return Page(response)


# -- the app under test -------------------------------------------------------


def database_url(target: str, tmp_path: Path) -> str:
    if target == "sqlite":
        return f"sqlite:///{tmp_path / 'tweepee.db'}"
    server, scheme = TARGETS[target]
    _require_server(server)
    settings = server_settings(server)
    credentials = quote(settings["user"], safe="")
    if settings["password"]:
        credentials += ":" + quote(settings["password"], safe="")
    where = f"{settings['host']}:{settings['port']}/{settings['database']}"
    return f"{scheme}+pool://{credentials}@{where}{url_options(server, 'max_connections=4')}"


def drop_tables(url: str) -> None:
    database = peewee_async.db_url.connect(url, unquote_password=True)
    with database.bind_ctx(MODELS):
        database.drop_tables(MODELS)
    database.close()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class RunningApp:
    url: str
    database_url: str
    log: Path

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, follow_redirects=True, timeout=10)

    def output(self) -> str:
        return self.log.read_text(errors="replace")


@pytest.fixture(params=["sqlite", *TARGETS])
def app(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[RunningApp]:
    url = database_url(request.param, tmp_path)
    drop_tables(url)  # a fresh start: the app creates its tables
    port = free_port()
    log = tmp_path / "server.log"
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "SECRET_KEY": "test-secret"}
    env.pop("DATABASE_URL", None)
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "examples.twitter", url, "--port", str(port)],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    running = RunningApp(f"http://127.0.0.1:{port}", url, log)
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if process.poll() is not None:
                pytest.fail(f"the app exited with {process.returncode}:\n{running.output()}")
            try:
                httpx.get(running.url + "/", timeout=1)
                break
            except httpx.TransportError:
                if time.monotonic() > deadline:
                    pytest.fail(f"the app did not answer within {START_TIMEOUT}s:\n{running.output()}")
                time.sleep(0.1)
        yield running
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        print(f"server output:\n{running.output()}")  # pytest shows it when the test fails
        drop_tables(url)


# -- tests ---------------------------------------------------------------------


def test_password_hashes() -> None:
    stored = auth.hash_password("correct horse")
    assert stored.startswith("scrypt$16384$8$1$") and "correct horse" not in stored
    assert auth.verify_password("correct horse", stored)
    assert not auth.verify_password("correct hors", stored)
    assert auth.hash_password("correct horse") != stored  # a new salt each time
    assert not auth.verify_password("correct horse", "5f4dcc3b5aa765d61d8327deb882cf99")  # md5: refused
    assert not auth.verify_password("x", "")


def test_page_links() -> None:
    from examples.twitter.app import page_links

    assert page_links(1, 1) == [1]
    assert page_links(2, 4) == [1, 2, 3, 4]
    assert page_links(5, 10) == [1, None, 3, 4, 5, 6, 7, None, 10]
    assert page_links(10, 10) == [1, None, 8, 9, 10]


def test_runs_as_a_file_and_explains_a_bad_url(tmp_path: Path) -> None:
    script = str(ROOT / "examples" / "twitter" / "app.py")
    shown = subprocess.run(
        [sys.executable, script, "--help"], cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert shown.returncode == 0, shown.stderr
    assert "DATABASE_URL" in shown.stdout and "--port" in shown.stdout
    refused = subprocess.run(
        [sys.executable, script, "oracle://db/x"], cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert refused.returncode == 2
    assert "Unsupported database URL scheme 'oracle'" in refused.stderr


def join(client: httpx.Client, username: str, status: int = 200, **fields: str) -> Page:
    data = {"username": username, "password": PASSWORDS.get(username, ""), "email": f"{username}@example.org"}
    return post(client, "/join/", {**data, **fields}, status=status)


def test_full_flow(app: RunningApp) -> None:
    with app.client() as alice, app.client() as bob, app.client() as visitor:
        # Join: two people, each logged in in their own browser.
        page = join(alice, "alice")
        assert page.flashes == ["You are logged in as alice."] and page.logged_in_as == "alice"
        assert join(bob, "bob").logged_in_as == "bob"
        assert join(visitor, "alice", password="another-pass-1", status=400).flashes == [
            "That username is already taken."
        ]
        assert join(visitor, "carol", password="short", status=400).flashes == [
            "Choose a password of at least 8 characters."
        ]

        # A wrong password or an unknown user is refused, and logs nobody in.
        for username, password in [("bob", "alice-secret-1"), ("nobody", "whatever-123")]:
            page = post(visitor, "/login/", {"username": username, "password": password}, status=400)
            assert page.flashes == ["The username or password is incorrect."]
            assert page.logged_in_as is None
        page = get(visitor, "/private/")
        assert page.response.url.path == "/login/" and page.flashes == ["Please log in first."]

        # Log in (bob's second browser from now on).
        page = post(visitor, "/login/", {"username": "bob", "password": PASSWORDS["bob"]})
        assert page.flashes == ["You are logged in as bob."] and page.logged_in_as == "bob"
        bob = visitor

        # Post: the text is shown escaped, on the author's page.
        page = post(alice, "/create/", {"content": "Hello from alice"})
        assert page.response.url.path == "/users/alice/"
        assert page.flashes == ["Your message has been created."]
        page = post(alice, "/create/", {"content": "<script>alert(1)</script>"})
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page.response.text
        assert "<script>" not in page.response.text
        assert page.messages == [("alice", "<script>alert(1)</script>"), ("alice", "Hello from alice")]
        assert post(alice, "/create/", {"content": "   "}, status=400).flashes == [
            "Write a message of 1 to 280 characters."
        ]

        # Follow: bob's private timeline shows alice's messages once he follows her.
        assert get(bob, "/").messages == []
        page = post(bob, "/users/alice/follow/")
        assert page.flashes == ["You are following alice."] and page.by_id("unfollow") is not None
        assert (page.count("followers"), page.count("following"), page.count("messages")) == (1, 0, 2)
        post(bob, "/users/alice/follow/")  # a second follow changes nothing
        assert post(bob, "/users/bob/follow/").flashes == ["You cannot follow yourself."]
        page = get(bob, "/users/bob/")
        assert (page.count("followers"), page.count("following")) == (0, 1)
        assert get(bob, "/following/").usernames == ["alice"]
        assert get(alice, "/followers/").usernames == ["bob"]
        assert get(alice, "/").messages == []  # alice follows nobody
        assert get(bob, "/").messages == [
            ("alice", "<script>alert(1)</script>"),
            ("alice", "Hello from alice"),
        ]

        # Pagination: 23 messages make two pages of the timelines, newest first.
        for n in range(1, 22):
            post(alice, "/create/", {"content": f"message {n}"})
        for path in ["/private/", "/public/"]:
            first = get(bob, path)
            assert first.messages == [("alice", f"message {n}") for n in range(21, 1, -1)]
            assert first.link("prev") is None and first.link("next") == "?page=2"
            second = get(bob, path + "?page=2")
            assert [content for _, content in second.messages] == [
                "message 1",
                "<script>alert(1)</script>",
                "Hello from alice",
            ]
            assert second.link("prev") == "?page=1" and second.link("next") is None
            get(bob, path + "?page=3", status=404)
        page = get(visitor, "/users/alice/?page=2")
        assert page.count("messages") == 23 and len(page.messages) == 3
        get(visitor, "/users/nobody/", status=404)

        # Unfollow: the private timeline empties and the counts drop.
        page = post(bob, "/users/alice/unfollow/")
        assert page.flashes == ["You are no longer following alice."] and page.by_id("follow") is not None
        assert (page.count("followers"), page.count("following")) == (0, 0)
        assert get(bob, "/").messages == []
        assert get(bob, "/following/").usernames == []

        # Log out.
        page = post(bob, "/logout/")
        assert page.flashes == ["You were logged out."] and page.logged_in_as is None
        assert get(bob, "/private/").response.url.path == "/login/"
        assert get(alice, "/").logged_in_as == "alice"  # another browser keeps its session

    # The rows the app wrote.
    database = peewee_async.db_url.connect(app.database_url, unquote_password=True)
    with database.bind_ctx(MODELS):
        users = {user.username: user for user in User.select()}
        assert sorted(users) == ["alice", "bob"]
        for name, user in users.items():
            assert user.password != PASSWORDS[name] and PASSWORDS[name] not in user.password
            assert re.fullmatch(r"scrypt\$16384\$8\$1\$[0-9a-f]{32}\$[0-9a-f]{64}", user.password)
            assert auth.verify_password(PASSWORDS[name], user.password)
            assert not auth.verify_password(PASSWORDS[name] + "x", user.password)
        assert users["alice"].password.split("$")[4] != users["bob"].password.split("$")[4]
        assert Message.select().where(Message.user == users["alice"]).count() == 23
        assert Message.select().where(Message.user == users["bob"]).count() == 0
        assert Relationship.select().count() == 0
    database.close()

    output = app.output()
    assert "Traceback" not in output and "ERROR" not in output, output
