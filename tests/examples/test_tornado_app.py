"""examples/tornado_app.py served for real: the API reference's Tornado sample on Tornado 6."""

from collections.abc import Iterator
from pathlib import Path

import pytest

from .conftest import ExampleServer, drop_tables, query, serve_example

SCRIPT = "tornado_app.py"


def names(url: str, *ids: int) -> dict[int, str]:
    """``{id: name}`` of the rows in the database with those ids."""
    rows = query(url, f"SELECT id, name FROM testnamemodel WHERE id IN ({', '.join(map(str, ids))})")
    return dict(rows)


def ids_named(url: str, name: str) -> list[int]:
    return [row[0] for row in query(url, f"SELECT id FROM testnamemodel WHERE name = '{name}'")]


@pytest.fixture(scope="module")
def app(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ExampleServer]:
    drop_tables(database_url, "testnamemodel")
    with serve_example(SCRIPT, database_url, tmp_path_factory.mktemp("logs"), "/") as server:
        yield server


def test_seeds_three_rows_and_gets_them_by_id(app: ExampleServer, database_url: str) -> None:
    assert names(database_url, 1, 2, 3) == {i: f"TestNameModel id={i}" for i in (1, 2, 3)}
    response = app.client.get("/", params={"id": 2})
    assert response.status_code == 200
    assert response.json() == {"id": 2, "name": "TestNameModel id=2"}


def test_get_without_id_says_what_to_send(app: ExampleServer) -> None:
    response = app.client.get("/")
    assert response.status_code == 200
    assert response.text == "Please provide the 'id' query argument, i.e. ?id=1"


def test_get_of_a_missing_id_is_not_found(app: ExampleServer) -> None:
    response = app.client.get("/", params={"id": 4040})
    assert response.status_code == 404
    assert "<title>404: Not Found</title>" in response.text


def test_post_creates(app: ExampleServer, database_url: str) -> None:
    response = app.client.post("/", data={"name": "posted"})
    assert response.status_code == 200
    body = response.json()
    assert body["name"] == "posted"
    assert names(database_url, body["id"]) == {body["id"]: "posted"}


def test_create_runs_get_or_create_in_a_task_of_its_own(app: ExampleServer, database_url: str) -> None:
    response = app.client.get("/create", params={"id": 100})
    assert response.status_code == 200
    body = response.json()
    # Tornado 6 runs the handler in a task; the handler started a second one.
    assert isinstance(body["task1"], int)
    assert isinstance(body["task2"], int)
    assert body["task1"] != body["task2"]
    assert body["obj"] == "TestNameModel id=100"
    assert names(database_url, 100) == {100: "TestNameModel id=100"}

    again = app.client.get("/create", params={"id": 100}).json()
    assert again["obj"] == "TestNameModel id=100"
    assert ids_named(database_url, "TestNameModel id=100") == [100]


def test_batch_creates_every_name(app: ExampleServer, database_url: str) -> None:
    response = app.client.post("/batch", data={"name": ["first of batch", "second of batch"]})
    assert response.status_code == 200
    created = response.json()["created"]
    assert [row["name"] for row in created] == ["first of batch", "second of batch"]
    assert names(database_url, *(row["id"] for row in created)) == {row["id"]: row["name"] for row in created}


def test_batch_with_an_empty_name_rolls_back_the_names_before_it(
    app: ExampleServer, database_url: str
) -> None:
    response = app.client.post("/batch", data={"name": ["undone", ""]})
    assert response.status_code == 400
    assert "<title>400: Bad Request</title>" in response.text
    assert ids_named(database_url, "undone") == []
    # The transaction's connection was given back: the app goes on serving.
    assert app.client.post("/batch", data={"name": ["kept"]}).status_code == 200
    assert len(ids_named(database_url, "kept")) == 1


def test_stops_cleanly_and_closes_its_connections(database_url: str, tmp_path: Path) -> None:
    # A server of its own, given the URL in DATABASE_URL.
    with serve_example(SCRIPT, database_url, tmp_path, "/", via_environment=True) as server:
        assert server.client.get("/", params={"id": 1}).status_code == 200
        assert server.stop() == 0, server.logs()
    output = server.output()
    assert f"Serving on {server.base_url}/" in output
    assert output.rstrip().endswith("Server stopped, database connections closed"), server.logs()
