"""The tests of the accounts API that the aiohttp and the Starlette examples both serve.

A subclass names the script; each backend gets one server for the whole class,
and each test works on accounts of its own names.
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from .conftest import ExampleServer, drop_tables, query, serve_example


def balances(url: str, *names: str) -> dict[str, int]:
    """The balances in the database of the named accounts (missing accounts are left out)."""
    quoted = ", ".join(f"'{name}'" for name in names)
    return dict(query(url, f"SELECT name, balance FROM account WHERE name IN ({quoted})"))


class AccountsApiTests:
    script: str
    #: The exit codes that may follow SIGTERM and a graceful shutdown.
    stopped_codes = frozenset({0})

    @pytest.fixture(scope="class")
    @classmethod
    def app(cls, database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ExampleServer]:
        drop_tables(database_url, "account")
        log_dir = tmp_path_factory.mktemp("logs")
        with serve_example(cls.script, database_url, log_dir, "/accounts") as server:
            yield server

    def test_creates_accounts_and_lists_them(self, app: ExampleServer, database_url: str) -> None:
        response = app.client.post("/accounts", json=[{"name": "ann", "balance": 100}, {"name": "al"}])
        assert response.status_code == 201
        assert response.json() == [{"name": "ann", "balance": 100}, {"name": "al", "balance": 0}]

        listed = app.client.get("/accounts").json()
        assert {"name": "ann", "balance": 100} in listed
        assert {"name": "al", "balance": 0} in listed
        assert balances(database_url, "ann", "al") == {"ann": 100, "al": 0}

    def test_transfer_commits(self, app: ExampleServer, database_url: str) -> None:
        app.client.post("/accounts", json=[{"name": "bea", "balance": 100}, {"name": "bo"}])
        response = app.client.post("/transfers", json={"source": "bea", "target": "bo", "amount": 30})
        assert response.status_code == 200
        assert response.json() == {
            "source": {"name": "bea", "balance": 70},
            "target": {"name": "bo", "balance": 30},
        }
        assert balances(database_url, "bea", "bo") == {"bea": 70, "bo": 30}

    def test_raised_error_rolls_back_earlier_writes(self, app: ExampleServer, database_url: str) -> None:
        app.client.post("/accounts", json={"name": "cy", "balance": 100})
        # The debit runs, then the missing target raises a 404.
        response = app.client.post("/transfers", json={"source": "cy", "target": "nobody", "amount": 30})
        assert response.status_code == 404
        assert response.json() == {"error": "No account 'nobody'"}
        assert balances(database_url, "cy") == {"cy": 100}

    def test_returned_error_response_rolls_back(self, app: ExampleServer, database_url: str) -> None:
        app.client.post("/accounts", json=[{"name": "di", "balance": 10}, {"name": "dan", "balance": 5}])
        # Debit and credit both run; the handler then answers 400.
        response = app.client.post("/transfers", json={"source": "di", "target": "dan", "amount": 11})
        assert response.status_code == 400
        assert response.json() == {"error": "'di' cannot pay 11"}
        assert balances(database_url, "di", "dan") == {"di": 10, "dan": 5}

    def test_integrity_error_rolls_back_the_whole_batch(self, app: ExampleServer, database_url: str) -> None:
        assert app.client.post("/accounts", json={"name": "eve"}).status_code == 201
        response = app.client.post("/accounts", json=[{"name": "ed", "balance": 1}, {"name": "eve"}])
        assert response.status_code == 409
        assert response.json()["error"].startswith("Conflict: ")
        assert balances(database_url, "ed", "eve") == {"eve": 0}

    def test_unhandled_exception_rolls_back(self, app: ExampleServer, database_url: str) -> None:
        # The second item has no "name": a KeyError, an Internal Server Error.
        # (uvicorn drops the connection after an unhandled exception: don't keep it alive.)
        response = app.client.post(
            "/accounts", json=[{"name": "flo"}, {"title": "fay"}], headers={"Connection": "close"}
        )
        assert response.status_code == 500
        assert balances(database_url, "flo") == {}
        # The server goes on serving, its connection given back.
        assert app.client.post("/accounts", json={"name": "flo"}).status_code == 201

    def test_malformed_body_is_a_bad_request(self, app: ExampleServer) -> None:
        response = app.client.post("/accounts", content=b"not json")
        assert response.status_code == 400
        assert response.json() == {"error": "The request body must be JSON"}

    def test_concurrent_transfers_never_overdraw(self, app: ExampleServer, database_url: str) -> None:
        app.client.post("/accounts", json=[{"name": "gil", "balance": 50}, {"name": "gus"}])
        transfer = {"source": "gil", "target": "gus", "amount": 10}

        def post_transfer(_: int) -> int:
            return app.client.post("/transfers", json=transfer).status_code

        with ThreadPoolExecutor(max_workers=8) as pool:
            statuses = list(pool.map(post_transfer, range(8)))
        assert sorted(statuses) == [200] * 5 + [400] * 3
        assert balances(database_url, "gil", "gus") == {"gil": 0, "gus": 50}

    def test_stops_cleanly_and_closes_its_connections(self, database_url: str, tmp_path: Path) -> None:
        # A server of its own, given the URL in DATABASE_URL.
        with serve_example(self.script, database_url, tmp_path, "/accounts", via_environment=True) as server:
            assert server.client.get("/accounts").status_code == 200
            assert server.stop() in self.stopped_codes, server.logs()
        output = server.output()
        assert server.base_url in output
        assert output.rstrip().endswith("Database connections closed"), server.logs()
